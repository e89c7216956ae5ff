# Over 400 lines on purpose: the checks of a path a peer names, the schedule of reads and the reads themselves share one lifecycle.
"""Following live Claude Code transcripts: the daemon reads each session's transcript as it grows.

The hooks say what happened to tools; tokens, cost, the model of each message, retried API errors,
tool calls that fire no hook (an Edit whose old_string does not match, an unknown tool) and
compaction tokens are only in the transcript. The daemon reads it with the importer's own reader
(importers/claude.py, `TranscriptImport.read`) from the offset it reached, so the live database
holds what `agentd import claude` would give, and a later import finds nothing new
(importers/state.py: one state file per writer, each reader starts at the further offset).

When: a Claude hook event names the transcript (`transcript_path`). Stop, StopFailure,
SubagentStop, Pre/PostCompact and SessionEnd read it at once and twice more within
SETTLE_S (Claude writes the transcript asynchronously: the turn's last records may land just
after Stop); while a session is busy, every BUSY_POLL_S. The session's subagent transcripts
(`<session>/subagents/*.jsonl`) are read with it. A read whose file did not change costs a stat.

The path comes from a socket peer, so it is checked before anything is opened: an absolute
`.jsonl` path inside a Claude `projects/<project>/` directory (no `..`), opened without following
a symlink and without blocking (O_NOFOLLOW | O_NONBLOCK: a FIFO cannot stall the read), then it
must be a regular file owned by the peer's uid. The transport admits only peers of the daemon's
own uid (service/transport.py) and the spool is the daemon's private directory, so that uid is
os.getuid(). A refused path is logged once, with the reason.

Reads, record decoding and normalization run in a worker thread, at most STEP_BYTES per step (a
2 GB transcript is many steps, its events committed in between), so the event loop never waits
on a file. Sessions take turns: each due session reads one step of each of its files per round,
so a long backlog (a 2 GB transcript read from the start) does not hold up the others' turns.
A file that shrank, was replaced (new inode) or was rewritten in place (the bytes before the
offset differ) is read again from the start; the events it makes are the ones already stored
(same ids), so nothing is duplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentd.importers import Summary
from agentd.importers.claude import AGENT, TranscriptFile, TranscriptImport
from agentd.importers.state import FOLLOW_FILE, STATE_FILE, ImportState, best_entry
from agentd.ingest import PreparedEvent

__all__ = ["Follower", "transcript_problem", "open_transcript", "Refused"]

log = logging.getLogger(__name__)

BUSY_POLL_S = 3.0  # a busy session's transcript is read at least this often
SETTLE_S = (0.0, 0.4, 1.5)  # reads after an end-of-turn event, seconds after it
STEP_BYTES = 8 << 20  # read per worker-thread step
IDLE_FORGET_S = 3600.0  # a session not heard of for this long is dropped from memory
MAX_SESSIONS = 10_000  # sessions followed at once: a flood of new ids evicts the oldest
MAX_REFUSED = 4096  # refused paths remembered (each logged once): a flood of them stays bounded
SAVE_EVERY_S = 1.0
# Hook events after which the transcript holds the turn's records (or the compaction's).
TURN_END = frozenset(
    {"Stop", "StopFailure", "SubagentStop", "PreCompact", "PostCompact", "SessionEnd"}
)
# Hook events that mean the session is working: its transcript is growing.
BUSY = frozenset(
    {
        "UserPromptSubmit",
        "PreToolUse",
        "PostToolUse",
        "PostToolUseFailure",
        "PostToolBatch",
        "SubagentStart",
        "PreSkillShellCommand",
    }
)
MAX_PATH = 4096  # characters of a transcript_path followed; a longer one is refused


class Refused(Exception):
    """A transcript path the daemon will not read (the message says why)."""


def transcript_problem(path: str) -> str | None:
    """Why `path` is not a transcript the daemon reads, judged by its shape; None if it may be.

    Accepted: `.../projects/<project>/<name>.jsonl` and
    `.../projects/<project>/<session>/subagents/<name>.jsonl`, absolute and normalized.
    """
    if not path or "\0" in path:
        return "empty or not a path"
    try:
        os.fsencode(path)
    except UnicodeEncodeError:  # a lone surrogate no file name holds
        return "not a file name"
    if not os.path.isabs(path) or os.path.normpath(path) != path:
        return "not an absolute, normalized path"
    if not path.endswith(".jsonl"):
        return "not a .jsonl file"
    parts = path.split("/")
    if len(parts) >= 4 and parts[-3] == "projects" and parts[-2]:
        return None
    if len(parts) >= 6 and parts[-5] == "projects" and parts[-2] == "subagents":
        return None
    return "not inside a Claude projects/<project>/ directory"


def open_transcript(path: str, uid: int) -> tuple[int, os.stat_result]:
    """(fd, fstat) of a transcript fit to read; Refused otherwise. The caller closes the fd."""
    problem = transcript_problem(path)
    if problem:
        raise Refused(problem)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as e:
        if e.errno == 40:  # ELOOP: the last component is a symlink
            raise Refused("a symlink") from None
        raise Refused(e.strerror or str(e)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused("not a regular file")
        if st.st_uid != uid:
            raise Refused(f"owned by uid {st.st_uid}, not {uid}")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


class _Quiet:
    """The importer's progress interface, drawing nothing."""

    def advance(self, n: int) -> None:
        pass


@dataclass
class _Session:
    transcript: str
    busy: bool = False
    due: float | None = None  # monotonic time of the next read
    settle: list[float] = field(default_factory=list)  # further reads after a turn's end
    seen: float = 0.0


@dataclass
class _Step:
    events: list[PreparedEvent]
    entry: dict[str, Any] | None  # None: nothing read (unchanged, vanished or refused)
    more: bool = False  # stopped at STEP_BYTES: read on


class Follower:
    """Lifecycle: Follower(...) -> await start() -> observe(...) ... -> await close()."""

    def __init__(
        self,
        state_dir: Path,
        prepare: Callable[[str, bytes, int | None], PreparedEvent],
        submit: Callable[[PreparedEvent], Awaitable[None]],
        *,
        uid: int | None = None,
        step_bytes: int = STEP_BYTES,
        may_save: Callable[[], bool] | None = None,
    ) -> None:
        """`may_save()`: whether the state dir is still this daemon's (service.py): a daemon whose
        state dir was deleted or replaced must not write its offsets there, for they count what
        went into its deleted database, and the next daemon would skip it."""
        self.state_dir = state_dir
        self._prepare = prepare
        self._submit = submit
        self.uid = os.getuid() if uid is None else uid
        self.step_bytes = step_bytes
        self._may_save = may_save
        self.state = ImportState(state_dir / FOLLOW_FILE)
        self.files_read = 0  # read steps that found something new
        self.events_sent = 0
        self._sessions: dict[str, _Session] = {}
        self._refused: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._saved = 0.0
        self._imported_key: tuple[int, int, int] | None = None
        self._imported_entries: dict[str, dict[str, Any]] = {}
        self._idle = asyncio.Event()  # set while nothing is due (tests and close() wait on it)
        self._idle.set()

    async def start(self) -> None:
        self.state = await asyncio.to_thread(ImportState.load, self.state_dir, FOLLOW_FILE)
        self._task = asyncio.create_task(self._run(), name="agentd-follow")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._may_save is None or self._may_save():
            await asyncio.to_thread(self.state.save)

    def observe(self, kind: str, session_id: str | None, path: object) -> None:
        """A Claude hook event was stored: note its transcript (`path`: the payload's top-level
        `transcript_path` as sent, PreparedEvent.transcript_path) and schedule the reads it calls
        for. Cheap and never raises: it runs on every hook event."""
        if not session_id:
            return
        now = time.monotonic()
        session = self._sessions.get(session_id)
        if path is not None and not (isinstance(path, str) and 0 < len(path) <= MAX_PATH):
            self._refuse(
                "(unread)", f"transcript_path is not a JSON string of 1 to {MAX_PATH} characters"
            )
            path = None
        if isinstance(path, str) and (session is None or path != session.transcript):
            problem = transcript_problem(path)
            if problem:
                self._refuse(path, problem)
            elif session is None:
                if len(self._sessions) >= MAX_SESSIONS:
                    self._forget_oldest()
                session = self._sessions[session_id] = _Session(path)
            else:  # a later event names another file: the session's transcript is that one
                session.transcript = path
        if session is None:
            return
        session.seen = now
        if kind in TURN_END:
            session.busy = False
            session.settle = [now + s for s in SETTLE_S]
            session.due = session.settle.pop(0)
        elif kind in BUSY:
            session.busy = True
            if session.due is None:
                session.due = now + BUSY_POLL_S
        else:
            return
        self._idle.clear()
        self._wake.set()

    async def settled(self, timeout: float = 10.0) -> bool:
        """Wait until no read is due (True), or `timeout` s."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    # -- the loop --------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            due = [(sid, s) for sid, s in self._sessions.items() if s.due is not None]
            ready = [(sid, s) for sid, s in due if s.due is not None and s.due <= now]
            for sid, session in ready:
                more = False
                try:
                    more = await self._read_session(sid, session)
                except Exception:  # a bug here must not stop following the other sessions
                    log.exception("following the transcript of session %s failed", sid)
                if more:  # due again at once, after the other ready sessions' turns
                    session.due = time.monotonic()
                else:
                    self._reschedule(session)
            await self._save_if_due()
            self._forget_idle(now)
            waits = [s.due - time.monotonic() for s in self._sessions.values() if s.due]
            if not waits:
                self._idle.set()
            self._wake.clear()
            timeout = max(0.0, min(waits)) if waits else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    def _reschedule(self, session: _Session) -> None:
        if session.settle:
            session.due = session.settle.pop(0)
        elif session.busy:
            session.due = time.monotonic() + BUSY_POLL_S
        else:
            session.due = None

    def _forget_idle(self, now: float) -> None:
        stale = [
            sid
            for sid, s in self._sessions.items()
            if s.due is None and now - s.seen > IDLE_FORGET_S
        ]
        for sid in stale:
            del self._sessions[sid]

    def _forget_oldest(self) -> None:
        """Make room: the session heard of longest ago goes (a later event brings it back)."""
        oldest = min(self._sessions, key=lambda sid: self._sessions[sid].seen)
        del self._sessions[oldest]

    async def _read_session(self, session_id: str, session: _Session) -> bool:
        """One step of each of the session's files (its transcript, its subagents'); True when
        one of them has more to read."""
        paths = [session.transcript]
        subagents = os.path.join(session.transcript.removesuffix(".jsonl"), "subagents")
        found = await asyncio.to_thread(_subagent_transcripts, subagents)
        if found is None:
            self._refuse(subagents, "the subagents directory is a symbolic link")
        paths += found or []
        more = False
        for path in paths:
            step = await self._follow_step(path)
            more = more or step.more
        return more

    async def follow_file(self, path: str) -> int:
        """Read `path` from its offset to its end, in steps; store the events; return how many."""
        sent = 0
        while True:
            step = await self._follow_step(path)
            sent += len(step.events)
            if not step.more:
                return sent

    async def _follow_step(self, path: str) -> _Step:
        """Read the next step of `path` and store its events."""
        step = await asyncio.to_thread(self._step, path)
        if step.entry is None:
            return step
        # Committed before the offset moves: a crash in between means a re-read, not a loss.
        await asyncio.gather(*(self._submit(e) for e in step.events))
        self.state.set(AGENT, path, step.entry)
        self.events_sent += len(step.events)
        return step

    def _step(self, path: str) -> _Step:
        """In a worker thread: the next step of `path`, read, decoded and prepared."""
        try:
            fd, st = open_transcript(path, self.uid)
        except Refused as e:
            self._refuse(path, str(e))
            return _Step([], None)
        except FileNotFoundError:
            return _Step([], None)
        except OSError as e:
            log.warning("cannot read transcript %s: %s", path, e)
            return _Step([], None)
        with os.fdopen(fd, "rb") as handle:
            entry = self._entry(path, st)
            if entry and entry.get("inode") == st.st_ino and entry.get("size") == st.st_size:
                return _Step([], None)  # unchanged since the last read
            file = TranscriptFile(path, st, entry)
            summary = Summary(source=AGENT)
            reader = TranscriptImport(None, None, summary, _Quiet())  # type: ignore[arg-type]
            events = []
            for event in reader.read(file, handle, limit=self.step_bytes):
                try:
                    events.append(self._prepare(event.source, event.payload, event.received_at))
                except ValueError as e:  # not JSON after all: the importer counts the same
                    log.warning("transcript %s: a record could not be stored: %s", path, e)
        if entry is not None and not file.resumed:
            log.info(
                "transcript %s was replaced, shrank or was rewritten: reading it again from the "
                "start (what was stored is not stored twice)",
                path,
            )
        if summary.skipped.get("line over 64 MiB"):
            log.warning("transcript %s: a line over 64 MiB was skipped", path)
        assert file.entry is not None
        self.files_read += 1
        return _Step(events, file.entry, more=file.entry["size"] < st.st_size)

    def _entry(self, path: str, st: os.stat_result) -> dict[str, Any] | None:
        """Where to start: the further of this daemon's entry and an import's (state.py)."""
        own = self.state.entries(AGENT).get(path)
        if own and own.get("inode") == st.st_ino and own.get("size") == st.st_size:
            return own
        return best_entry(st, own, self._imported().get(path))

    def _imported(self) -> dict[str, dict[str, Any]]:
        """The import's entries, read again only when its state file changed."""
        path = self.state_dir / STATE_FILE
        try:
            st = path.stat()
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            return {}
        if key != self._imported_key:
            self._imported_key = key
            self._imported_entries = ImportState.load(self.state_dir, STATE_FILE).entries(AGENT)
        return self._imported_entries

    def _refuse(self, path: str, reason: str) -> None:
        if path in self._refused or len(self._refused) > MAX_REFUSED:
            return
        self._refused.add(path)  # logged once each, and at most MAX_REFUSED of them
        if len(self._refused) > MAX_REFUSED:
            log.warning("over %d transcript paths refused: no more are logged", MAX_REFUSED)
            return
        log.warning("not following transcript %r: %s", path[:300], reason)

    async def _save_if_due(self) -> None:
        now = time.monotonic()
        if self.state.dirty and now - self._saved >= SAVE_EVERY_S:
            self._saved = now
            if self._may_save is not None and not self._may_save():
                return
            try:
                await asyncio.to_thread(self.state.save)
            except OSError as e:
                log.warning("cannot save %s: %s", self.state.path, e)


def _subagent_transcripts(directory: str) -> list[str] | None:
    """The `*.jsonl` names in a session's subagents directory; None when it is a symlink (not
    followed)."""
    try:
        mode = os.lstat(directory).st_mode
        if stat.S_ISLNK(mode):
            return None
        if not stat.S_ISDIR(mode):
            return []
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    return [os.path.join(directory, n) for n in names if n.endswith(".jsonl")]
