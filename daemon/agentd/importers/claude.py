# Over 400 lines on purpose: one reader with its skip rules, which change together.
"""`agentd import claude`: Claude Code transcripts -> `ingest` events (source `claude-transcript`).

Reads every `*.jsonl` under the root (default `~/.claude/projects`: `<project>/<session>.jsonl` and
`<project>/<session>/subagents/agent-<id>.jsonl`), from where the previous import stopped, and
sends each record a normalizer reads (normalizers/claude_transcript.py) as it is. Per line:

1. Records whose `type` comes first and is not read (api-request, api-request-blob,
   api-request-shape: up to ~77 KB a line, queue-operation, last-prompt, ...) and attachments
   (their `attachment` key comes first) are skipped on a look at the first bytes, never decoded.
2. The rest is decoded into a few header fields (msgspec skips the others). Records no
   normalizer reads are skipped too: system records other than compact_boundary and api_error,
   user records that are neither a prompt nor a tool result. A session's first record is always
   sent (its cwd is the session's project).
3. An API response is written one line per content block, each repeating the response's usage:
   a text or thinking block followed by another block of the same response is not sent (the
   later block carries the same usage; tool_use blocks are always sent). The file's last
   `cost-state` (cumulative) is sent when the file is done.
4. A `compact_boundary` is held back until the next record carrying a prompt id and sent with it
   as `promptId`; an API-error assistant record gets the prompt id before it (see the
   normalizer's docstring for why).

A corrupt line, a record of an unknown type, an over-long line: skipped and counted. A torn last
line (no newline yet) is left for the next run. A file's offset advances only once the events up
to it are acknowledged, and never past a boundary still waiting for its prompt id.
"""

from __future__ import annotations

import json
import os
import re
import stat
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from agentd.errors import ImportFailed
from agentd.importers.state import FOLLOW_FILE, ImportState, best_entry, fits
from agentd.importers.writer import Event, Pipeline
from agentd.installers.claude import config_dir
from agentd.normalizers.claude_transcript import has_tool_results, is_prompt, timestamp_ms
from agentd.protocol import MAX_DEPTH, TooDeep, check_depth, replace_lone_surrogates

__all__ = [
    "SOURCE",
    "WHAT",
    "TranscriptFile",
    "TranscriptImport",
    "default_root",
    "default_paths",
    "transcript_files",
    "run",
]

AGENT = "claude"  # its section of the import state
WHAT = "Claude Code transcripts"
PATH_OPTION = (
    "--path",
    "A transcript directory or .jsonl file (repeatable; default: ~/.claude/projects, "
    "or $CLAUDE_CONFIG_DIR/projects).",
)
IMPORT_HELP = """Import Claude Code transcripts (sessions, tools, file operations, tokens, cost, compactions).

    Reads every *.jsonl below the directory, subagent transcripts included, each from where the
    last import stopped. A torn last line waits for the next run; corrupt lines and unknown
    record types are skipped and counted in the summary.

    \b
    Example:
      agentd import claude
      agentd import claude --path ~/backup/claude-projects --json
    """

SOURCE = "claude-transcript"
CHUNK = 1 << 20
# The state keeps a checksum of the TAIL bytes before a file's offset: a file truncated and
# written again in place (same inode) that ends up larger than before is told from one that grew.
TAIL = 64
MAX_LINE = 64 << 20  # a longer line is skipped (and counted) without being held in memory
_TYPE_FIRST = re.compile(rb'\{\s*"type"\s*:\s*"([^"\\]{1,64})"')
_FIRST = re.compile(rb'\{\s*"parentUuid"\s*:\s*null\b')
# Record types normalizers/claude_transcript.py reads.
_READ = frozenset(
    {
        "user",
        "assistant",
        "system",
        "attachment",
        "custom-title",
        "ai-title",
        "summary",
        "permission-mode",
        "cost-state",
        "host-row",  # Claude Code 2.1.332: a call made by a script (stored raw, see the normalizer)
    }
)
_SYSTEM_READ = frozenset({"compact_boundary", "api_error"})


class _Head(msgspec.Struct):
    """The fields the importer looks at; the rest of a record is skipped by the decoder."""

    type: Any = None
    subtype: Any = None
    timestamp: Any = None
    sessionId: Any = None
    promptId: Any = None
    parentUuid: Any = msgspec.UNSET
    isSidechain: Any = None
    agentId: Any = None
    isMeta: Any = None
    isCompactSummary: Any = None
    isVisibleInTranscriptOnly: Any = None
    isApiErrorMessage: Any = None
    message: msgspec.Raw = msgspec.Raw(b"null")  # undecoded: only a user record's is looked into


class _Message(msgspec.Struct):
    content: Any = None


class _Block(msgspec.Struct):
    type: Any = None


class _Response(msgspec.Struct):
    """An assistant record's message: its id and the types of its content blocks."""

    id: Any = None
    content: list[_Block] = []


_head_decoder = msgspec.json.Decoder(_Head)
_message_decoder = msgspec.json.Decoder(_Message | None)
_response_decoder = msgspec.json.Decoder(_Response)


def default_root(env: Mapping[str, str] | None = None) -> Path:
    """`$CLAUDE_CONFIG_DIR/projects`, else `~/.claude/projects`."""
    return config_dir(os.environ if env is None else env) / "projects"


def default_paths(env: Mapping[str, str] | None = None) -> list[Path]:
    """What `agentd import` reads without --path: the projects directory, if there is one."""
    root = default_root(env)
    return [root] if root.exists() else []


def not_found(env: Mapping[str, str] | None = None) -> str:
    return f"No Claude Code transcripts at {default_root(env)}."


def resolve_paths(given: list[Path]) -> list[Path]:
    """The --path values (else the default root), absolute; ImportFailed for one that is missing."""
    roots = [p.expanduser() for p in given] or [default_root()]
    for root in roots:
        if not root.exists():
            raise ImportFailed(f"{root} does not exist")
        if not root.is_dir() and not root.is_file():  # a device, a FIFO: nothing to import
            raise ImportFailed(f"{root} is neither a directory nor a regular file")
    return [root.absolute() for root in roots]


def transcript_files(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """(absolute path, stat) of every regular `*.jsonl` under root (or root itself), sorted.

    Directory links are not descended (as os.walk); a link to a regular file counts. Walked with
    scandir and joined onto the absolute root (names hold no `/`, `.` or `..`): a re-run over an
    unchanged tree of thousands of files is mostly this walk.
    """
    if root.is_file():
        yield os.path.abspath(root), root.stat()
        return
    found = []
    todo = [os.path.abspath(root)]
    while todo:
        directory = todo.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    todo.append(entry.path)
                    continue
            except OSError:
                continue
            if not entry.name.endswith(".jsonl"):
                continue
            try:
                st = os.stat(entry.path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                found.append((entry.path, st))
    found.sort()
    yield from found


def _record_type(line: bytes) -> str | None:
    match = _TYPE_FIRST.match(line, 0, 96)
    return match.group(1).decode("utf-8", "replace") if match else None


def _response(head: _Head) -> tuple[str | None, bool]:
    """(message id, whether it holds a tool_use block) of an assistant record."""
    try:
        message = _response_decoder.decode(head.message)
    except ValueError:  # DecodeError; invalid UTF-8 is a UnicodeDecodeError before msgspec 0.23
        return None, True
    message_id = message.id if isinstance(message.id, str) and message.id else None
    return message_id, any(b.type == "tool_use" for b in message.content)


def _is_attachment(line: bytes) -> bool:
    """An attachment record that is not a session's first, told from its first bytes: its
    `attachment` key comes before any `type` key (a user record's type comes before its message)."""
    at = line.find(b'"attachment":', 0, 320)
    return at > 0 and line.find(b'"type"', 0, at) < 0 and not _FIRST.match(line)


def _with_prompt(line: bytes, prompt: str) -> bytes:
    """The record with `"promptId": prompt` added (it has none of its own)."""
    return line.rstrip()[:-1] + b',"promptId":' + json.dumps(prompt).encode() + b"}"


@dataclass
class _Cursor:
    """Where a file's import stands: what the state keeps once acknowledged."""

    offset: int
    prompt: str | None
    at: int | None  # the last record time, epoch ms
    stamp: str | None = None  # the last record's timestamp, not parsed yet

    def received(self, fallback: int) -> int:
        """When the record being read happened: its timestamp, else the last one before it."""
        if self.stamp is not None:
            at = timestamp_ms(self.stamp)
            self.stamp = None
            if at is not None:
                self.at = at
        return self.at or fallback

    def snapshot(self) -> _Cursor:
        self.received(0)
        return _Cursor(self.offset, self.prompt, self.at)


class TranscriptFile:
    """One transcript to read: where from (its state entry, if it still applies)."""

    def __init__(self, path: str, st: os.stat_result, entry: dict[str, Any] | None) -> None:
        self.path = path
        self.st = st
        resume = entry is not None and fits(entry, st)
        self.start = int(entry["offset"]) if resume and entry else 0
        self.cursor = _Cursor(
            self.start,
            entry.get("prompt") if resume and entry else None,
            entry.get("at") if resume and entry else None,
        )
        self.mtime_ms = int(st.st_mtime * 1000)
        self.resumed = resume  # False: read from the start (new, replaced, shrunk or rewritten)
        self._tail = entry.get("tail") if resume and entry else None
        self.entry: dict[str, Any] | None = None  # set once read() is exhausted

    def check_tail(self, handle: Any) -> None:
        """Read from the start if the bytes before the offset are not the ones read there (the
        file was rewritten in place); an entry without a checksum (older state) is trusted."""
        if not self.resumed or not isinstance(self._tail, str):
            return
        if _tail_sum(handle, self.start) != self._tail:
            self.start = 0
            self.cursor = _Cursor(0, None, None)
            self.resumed = False


def _tail_sum(handle: Any, offset: int) -> str:
    """The checksum of the TAIL bytes before `offset` (fewer at a file's start)."""
    size = min(offset, TAIL)
    return f"{zlib.crc32(os.pread(handle.fileno(), size, offset - size)):08x}"


class TranscriptImport:
    def __init__(self, pipeline: Pipeline, state: ImportState, summary: Any, progress: Any) -> None:
        self.pipeline = pipeline
        self.state = state
        self.summary = summary
        self.progress = progress
        self._eof = 0
        self._cost_state: Event | None = None
        self._held: tuple[str, Event] | None = None  # a response's last block so far, unsent
        # Records met before any record time (a legacy `summary` at the top of a file): sent with
        # the first time that follows, so that a re-read gives them the same event id.
        self._timeless: list[tuple[bytes, str]] = []

    async def run(self, roots: list[Path]) -> None:
        todo: list[TranscriptFile] = []
        # What the daemon's follower has read: skipped here (importers/state.py).
        followed = ImportState.load(self.state.path.parent, FOLLOW_FILE).entries(AGENT)
        for root in roots:
            seen: set[str] = set()
            for path, st in transcript_files(root):
                seen.add(path)
                self.summary.files += 1
                entry = best_entry(st, self.state.entries(AGENT).get(path), followed.get(path))
                if entry and entry.get("inode") == st.st_ino and entry.get("size") == st.st_size:
                    self.summary.files_unchanged += 1
                    continue
                todo.append(TranscriptFile(path, st, entry))
            if root.is_dir():  # transcripts Claude Code deleted: forget their offsets
                prefix = os.path.abspath(root).rstrip("/") + "/"
                known = self.state.entries(AGENT)
                gone = [k for k in known if k.startswith(prefix) and k not in seen]
                self.state.forget(AGENT, gone)
        self.progress.start(len(todo), sum(f.st.st_size - f.start for f in todo))
        for file in todo:
            await self.import_file(file)
            self.progress.file_done()
        await self.pipeline.finish()

    async def import_file(self, file: TranscriptFile) -> None:
        summary = self.summary
        try:
            handle = open(file.path, "rb")  # noqa: SIM115 (closed in finally)
        except FileNotFoundError:
            summary.files_vanished += 1
            return
        except OSError as e:
            summary.files_unreadable += 1
            summary.errors.append(f"{file.path}: {e.strerror}")
            return
        summary.files_read += 1
        try:
            for event in self.read(file, handle, max_event=self.pipeline.sink.max_event_bytes):
                await self.pipeline.add(event)
        finally:
            handle.close()
        key, entry = file.path, file.entry
        self.pipeline.mark(lambda: self.state.set(AGENT, key, entry))

    def read(
        self,
        file: TranscriptFile,
        handle: Any,
        limit: int | None = None,
        max_event: int | None = None,
    ) -> Iterator[Event]:
        """The events of `file` from where its entry stopped: the one reader that both
        `agentd import claude` and the daemon's follower (agentd/follow.py) use.

        With `limit`, stops at the first line end `limit` bytes or more past the start (the
        follower reads a big file in steps). With `max_event` (an import through the daemon,
        whose protocol takes lines up to a size), the offset kept stays before the first record
        bigger than that, so that a later import without the daemon stores it. Once exhausted,
        `file.entry` is what the state keeps for the file: store it only after the events are
        acknowledged.
        """
        summary = self.summary
        file.check_tail(handle)
        cursor = file.cursor
        pending: list[tuple[bytes, int]] = []  # boundaries waiting for a prompt id: (line, at)
        held: _Cursor | None = None  # where to resume while a boundary waits: before it
        too_big: _Cursor | None = None  # where to resume for a record that could not be sent
        end = file.start
        stopped = False
        self._eof = file.start
        try:
            for line, end in self._lines(handle, file.start):
                before = cursor.offset
                events = self._events(line, cursor, pending, file)
                if (
                    max_event is not None
                    and too_big is None
                    and events  # most lines make none
                    and any(len(e.payload) > max_event for e in events)
                ):
                    too_big = _Cursor(before, cursor.prompt, cursor.at)
                yield from events
                cursor.offset = end
                if not pending:
                    held = None
                elif held is None:
                    held = _Cursor(before, cursor.prompt, cursor.at)
                if limit is not None and end - file.start >= limit:
                    stopped = True
                    break
            yield from self._flush_timeless(cursor.received(file.mtime_ms))
            if self._held is not None:
                summary.ingested["assistant"] += 1
                yield self._held[1]
            if self._cost_state is not None:
                summary.ingested["cost-state"] += 1
                yield self._cost_state
        finally:
            self._cost_state = None
            self._held = None
            self._timeless.clear()
        safe = held or cursor.snapshot()
        # Stopped early: the size read so far, so that the file does not look done.
        size = end if stopped else max(self._eof, end)
        if too_big is not None and too_big.offset < safe.offset:
            safe = too_big
            size = too_big.offset  # the file must not look done: read again from there
        entry: dict[str, Any] = {"inode": file.st.st_ino, "size": size, "offset": safe.offset}
        if safe.offset:
            entry["tail"] = _tail_sum(handle, safe.offset)
        if safe.prompt:
            entry["prompt"] = safe.prompt
        if safe.at:
            entry["at"] = safe.at
        file.entry = entry

    def _lines(self, handle: Any, start: int) -> Iterator[tuple[bytes, int]]:
        """(line without its newline, offset just past it) of each complete line from `start`."""
        handle.seek(start)
        pos = start
        rest: list[bytes] = []
        rest_len = 0
        oversize = False
        while True:
            chunk = handle.read(CHUNK)
            if not chunk:
                break
            self.summary.bytes_read += len(chunk)
            self.progress.advance(len(chunk))
            pieces = chunk.split(b"\n")
            last = pieces.pop()
            for piece in pieces:
                if rest:
                    piece = b"".join(rest) + piece
                    rest.clear()
                    rest_len = 0
                pos += len(piece) + 1
                if oversize:
                    oversize = False
                    self.summary.skip("line over 64 MiB")
                    continue
                yield piece, pos
            if last:
                if oversize:
                    pos += len(last)
                    continue
                rest.append(last)
                rest_len += len(last)
                if rest_len > MAX_LINE:  # do not hold it: skip to its end
                    pos += rest_len
                    rest.clear()
                    rest_len = 0
                    oversize = True
        self._eof = pos + rest_len
        if rest_len or oversize:
            self.summary.skip("torn last line (read again next time)")

    def _events(
        self, line: bytes, cursor: _Cursor, pending: list[tuple[bytes, int]], file: TranscriptFile
    ) -> list[Event]:
        """The events one line makes: none, the record, or boundaries it resolves and the record."""
        summary = self.summary
        if line[:1] != b"{" and not line.strip():
            return []
        summary.records += 1
        rtype = _record_type(line)
        if rtype is not None and rtype not in _READ:
            summary.skip(rtype)
            return []
        if rtype is None and _is_attachment(line):
            summary.skip("attachment")
            return []
        try:
            # Before the decoder recurses: the daemon refuses such a payload anyway (MAX_DEPTH).
            check_depth(line)
        except TooDeep:
            summary.skip(f"nested deeper than {MAX_DEPTH} levels")
            return []
        try:
            head = _head_decoder.decode(line)
        except ValueError:  # DecodeError; or UnicodeDecodeError before msgspec 0.23
            repaired = replace_lone_surrogates(line)
            try:
                head = _head_decoder.decode(repaired)
            except ValueError:
                summary.skip("corrupt line")
                return []
            line = repaired
        rtype = head.type if isinstance(head.type, str) else None
        events = []
        if isinstance(head.timestamp, str):
            cursor.stamp = head.timestamp  # parsed only for what is sent
            if self._timeless:
                events += self._flush_timeless(cursor.received(file.mtime_ms))
        prompt = head.promptId if isinstance(head.promptId, str) and head.promptId else None
        if prompt and pending:
            # The boundaries before this record belong to its prompt.
            for boundary, boundary_at in pending:
                summary.ingested["system.compact_boundary"] += 1
                events.append(Event(SOURCE, _with_prompt(boundary, prompt), boundary_at))
            pending.clear()
        reason = self._skip_reason(head, rtype)
        if reason is None and (not isinstance(head.sessionId, str) or not head.sessionId):
            reason = "no sessionId"
        if reason is None and rtype == "user":
            reason = self._user_reason(head)
        if reason is not None:
            if prompt:
                cursor.prompt = prompt
            summary.skip(reason)
            return events
        if cursor.at is None and cursor.stamp is None and rtype != "cost-state":
            self._timeless.append((line, rtype or "unknown"))  # no time known yet
            return events
        received = cursor.received(file.mtime_ms)
        if rtype == "system" and head.subtype == "compact_boundary" and prompt is None:
            pending.append((line, received))
            return events
        if (
            rtype == "assistant"
            and head.isApiErrorMessage is True
            and prompt is None
            and cursor.prompt
            and head.isSidechain is not True
        ):
            line = _with_prompt(line, cursor.prompt)
        if prompt:
            cursor.prompt = prompt
        if rtype == "cost-state":
            # Cumulative: only the file's last one counts, sent when the file is done.
            self._cost_state = Event(SOURCE, line, received)
            return events
        event = Event(SOURCE, line, received)
        message_id = None
        if rtype == "assistant" and head.isApiErrorMessage is not True:
            message_id, tool_use = _response(head)
            if self._held is not None and self._held[0] == message_id:
                # An earlier block of this API response: the usage it repeats is in this one.
                summary.skip("assistant (earlier content block of a response)")
                self._held = None
        if self._held is not None:
            summary.ingested["assistant"] += 1
            events.append(self._held[1])
            self._held = None
        if message_id is not None and not tool_use:
            # Text or thinking only: sent unless a later block of the same response follows.
            self._held = (message_id, event)
            return events
        summary.ingested[f"system.{head.subtype}" if rtype == "system" else rtype] += 1
        events.append(event)
        return events

    def _flush_timeless(self, at: int) -> list[Event]:
        for _, kind in self._timeless:
            self.summary.ingested[kind] += 1
        events = [Event(SOURCE, line, at) for line, _ in self._timeless]
        self._timeless.clear()
        return events

    @staticmethod
    def _skip_reason(head: _Head, rtype: str | None) -> str | None:
        if rtype is None:
            return "no type"
        if rtype not in _READ:
            return rtype
        first = head.parentUuid is None and head.isSidechain is not True
        if rtype == "system":
            return None if head.subtype in _SYSTEM_READ else f"system.{head.subtype}"
        if rtype == "attachment":
            return None if first else "attachment"
        return None

    @staticmethod
    def _user_reason(head: _Head) -> str | None:
        """Why a user record makes no row (None: it does): neither a tool result nor a prompt
        (meta records, compact summaries, slash-command echoes, a subagent's task), and not the
        session's first record."""
        if head.parentUuid is None and head.isSidechain is not True:
            return None
        record = msgspec.structs.asdict(head)
        try:
            message = _message_decoder.decode(head.message)
        except ValueError:  # as in _response(); the event it makes is refused, and counted
            return None
        record["message"] = {"content": message.content} if message else None
        if has_tool_results(record) or is_prompt(record):
            return None
        return "user (no prompt, no tool result)"


async def run(
    roots: list[Path], pipeline: Pipeline, state: ImportState, summary: Any, progress: Any
) -> None:
    await TranscriptImport(pipeline, state, summary, progress).run(roots)
