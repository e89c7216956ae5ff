"""What both OpenCode importers (opencode.db, and the JSON storage of versions up to 1.1) send for
a message and its parts, and what they work out from a whole turn.

- `event()` / `chat_message()`: the payloads, in the plugin's own shapes (docs/opencode.md).
- `is_typed()`: a user message is a prompt a person typed unless one of its parts marks it as
  OpenCode's own (a compaction request, the "Continue" after an automatic compaction). Live, the
  plugin's chat.message says so (OpenCode calls it for prompts only); an import sends a
  chat.message for exactly the typed user messages, so both give the same `role`.
- `wanted_part()`: the parts a normalizer reads (tools, compactions, retries, those markers).
- `snapshot_lines()`: a `write` over an existing file reports no line counts; OpenCode's snapshot
  diff of the turn (the user message's `summary.diffs`, per file) does. It is the write's own
  change when that write is the only call of the turn that changed the file.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from agentd.importers.writer import Event
from agentd.normalizers._opencode import is_machine_prompt_part
from agentd.protocol import MAX_DEPTH, json_depth

__all__ = [
    "SOURCE",
    "EventSender",
    "DatabaseTurns",
    "chat_message",
    "event",
    "is_typed",
    "loads",
    "parts_of",
    "snapshot_lines",
    "wanted_part",
]

SOURCE = "opencode"  # the plugin's own source: imported events are normalized as live ones

_CHANGES_FILES = frozenset({"write", "edit", "multiedit", "apply_patch", "patch"})


def _dumps(value: Any) -> bytes:
    # ASCII escapes: a lone surrogate (JavaScript wrote half an emoji) stays a valid JSON escape,
    # which the store turns into U+FFFD.
    # No NaN or Infinity (ValueError): JSON has no such numbers and the writer refuses them.
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def event(etype: str, properties: dict[str, Any]) -> bytes:
    """A bus event as the plugin forwards it."""
    return _dumps({"kind": "event", "event": {"type": etype, "properties": properties}})


def chat_message(session: str, info: dict[str, Any]) -> bytes:
    """The plugin's chat.message callback for a typed prompt (its parts are not needed)."""
    return _dumps(
        {
            "kind": "chat.message",
            "input": {"sessionID": session},
            "output": {"message": info, "parts": []},
        }
    )


def is_typed(parts: list[dict[str, Any]]) -> bool:
    return not any(is_machine_prompt_part(p) for p in parts)


def wanted_part(part: dict[str, Any]) -> bool:
    return part.get("type") in ("tool", "compaction", "retry") or is_machine_prompt_part(part)


def _changed_paths(part: dict[str, Any]) -> list[str]:
    """The files a completed tool call changed, by its arguments and metadata."""
    if part.get("type") != "tool" or part.get("tool") not in _CHANGES_FILES:
        return []
    state = part.get("state") if isinstance(part.get("state"), dict) else {}
    if state.get("status") != "completed":
        return []
    metadata = state.get("metadata") if isinstance(state.get("metadata"), dict) else {}
    files = metadata.get("files")
    if isinstance(files, list):
        return [
            p
            for f in files
            if isinstance(f, dict)
            for p in (f.get("filePath"), f.get("movePath"))
            if isinstance(p, str)
        ]
    args = state.get("input") if isinstance(state.get("input"), dict) else {}
    path = args.get("filePath") or metadata.get("filepath")
    return [path] if isinstance(path, str) else []


def _same_file(absolute: str, diff_file: str) -> bool:
    # summary.diffs names files relative to the project's worktree (absolute in some versions).
    return absolute == diff_file or absolute.endswith("/" + diff_file.lstrip("./"))


def snapshot_lines(
    user_info: dict[str, Any], turn_parts: list[dict[str, Any]]
) -> dict[str, dict[str, int]]:
    """part id -> {additions, deletions} for each write over an existing file in the turn whose
    lines the turn's snapshot diff gives unambiguously."""
    summary = user_info.get("summary") if isinstance(user_info.get("summary"), dict) else {}
    listed = summary.get("diffs")
    diffs = [d for d in listed if isinstance(d, dict)] if isinstance(listed, list) else []
    if not diffs:
        return {}
    touched: dict[str, int] = {}
    for part in turn_parts:
        for path in _changed_paths(part):
            touched[path] = touched.get(path, 0) + 1
    out: dict[str, dict[str, int]] = {}
    for part in turn_parts:
        paths = _changed_paths(part)
        if part.get("tool") != "write" or len(paths) != 1 or touched[paths[0]] != 1:
            continue
        metadata = part["state"].get("metadata")
        if (
            not isinstance(metadata, dict)
            or metadata.get("exists") is not True
            or metadata.get("filediff")
        ):
            continue
        matches = [
            d for d in diffs if isinstance(d.get("file"), str) and _same_file(paths[0], d["file"])
        ]
        if len(matches) != 1:
            continue
        added, removed = matches[0].get("additions"), matches[0].get("deletions")
        if isinstance(added, int) and isinstance(removed, int) and isinstance(part.get("id"), str):
            out[part["id"]] = {"additions": added, "deletions": removed}
    return out


def loads(text: Any) -> Any:
    """The JSON value of a column, None when it is none (not text, not JSON, nested deeper than
    the daemon's MAX_DEPTH: checked before json.loads recurses)."""
    if not isinstance(text, str):
        return None
    if text.count("[") + text.count("{") > MAX_DEPTH and json_depth(text.encode()) > MAX_DEPTH:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def parts_of(conn: sqlite3.Connection, message: str) -> list[dict[str, Any]]:
    parts = (
        loads(r[0]) for r in conn.execute("SELECT data FROM part WHERE message_id = ?", (message,))
    )
    return [p for p in parts if isinstance(p, dict)]


class DatabaseTurns:
    """opencode.db: the snapshot-diff line counts of the turn a write belongs to (each turn read
    once)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.cache: dict[str, dict[str, dict[str, int]]] = {}

    def lines(self, part: dict[str, Any]) -> dict[str, int] | None:
        if part.get("tool") != "write":  # the only tool whose lines may come from the turn
            return None
        row = self.conn.execute(
            "SELECT session_id, data FROM message WHERE id = ?", (part["messageID"],)
        ).fetchone()
        message = loads(row[1]) if row else None
        user = message.get("parentID") if isinstance(message, dict) else None
        if not isinstance(user, str):
            return None
        if user not in self.cache:
            self.cache[user] = self._turn(row[0], user)
        return self.cache[user].get(part["id"])

    def _turn(self, session: str, user: str) -> dict[str, dict[str, int]]:
        found = self.conn.execute("SELECT data FROM message WHERE id = ?", (user,)).fetchone()
        info = loads(found[0]) if found else None
        if not isinstance(info, dict):
            return {}
        parts = []
        for part_id, data in self.conn.execute(
            "SELECT p.id, p.data FROM message m JOIN part p ON p.message_id = m.id"
            " WHERE m.session_id = ? AND json_valid(m.data)"
            " AND json_extract(m.data, '$.parentID') = ?",
            (session, user),
        ):
            part = loads(data)
            if isinstance(part, dict):
                parts.append({"id": part_id, **part})
        return snapshot_lines(info, parts)


class EventSender:
    """What both OpenCode importers (opencode.db and the 1.1 JSON storage) do with an event: count
    it, and hand it to the pipeline at its own time (now, when the record has none). Needs
    `summary`, `progress` and `pipeline` attributes."""

    summary: Any
    progress: Any
    pipeline: Any

    async def _emit(self, etype: str, properties: dict[str, Any], at: Any) -> None:
        self.summary.records += 1
        payload = self._encode(etype, event, etype, properties)
        if payload is not None:
            self.summary.ingested[etype] += 1
            await self._send(payload, at)

    def _encode(self, what: str, make: Any, *args: Any) -> bytes | None:
        """make(*args), or None (skipped and counted) for a value JSON cannot carry: NaN,
        Infinity or a number beyond a double (OpenCode's JSON parser takes them, the writer does
        not), or bytes (a BLOB where OpenCode keeps text)."""
        try:
            return make(*args)
        except ValueError:
            self.summary.skip(f"{what}: NaN or an infinite number")
        except TypeError:
            self.summary.skip(f"{what}: a BLOB value")
        return None

    async def _chat(self, session: Any, info: dict[str, Any], at: Any) -> None:
        payload = self._encode("chat.message", chat_message, session, info)
        if payload is not None:
            await self._send(payload, at)

    async def _send(self, payload: bytes, at: Any) -> None:
        self.summary.bytes_read += len(payload)
        self.progress.advance(len(payload))
        if not isinstance(at, int) or isinstance(at, bool) or at <= 0:
            at = int(time.time() * 1000)
        await self.pipeline.add(Event(SOURCE, payload, at))
