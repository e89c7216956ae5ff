"""OpenCode's JSON storage, from the versions before its SQLite database (up to 1.1.x).

Those versions kept each session as JSON files under `~/.local/share/opencode/storage/`
(tests/test_import_opencode_legacy.py makes one with the real OpenCode 1.1.65):

```
session/<projectID>/<sessionID>.json     the Session
message/<sessionID>/<messageID>.json     a Message (with its id and sessionID)
part/<messageID>/<partID>.json           a Part (with its id, messageID and sessionID)
```

OpenCode 1.2 to 1.15 copied them into opencode.db on first start (under the same ids) and left
the files as they were; 1.16 dropped that step, so for someone who upgraded past it the files are
the only record of those sessions. The importer sends every session as the bus events the plugin
would have sent (the same shapes as importers/opencode.py sends for database rows), so a session
found in both places lands on the same rows.

Incremental per session: its entry in the import state (section `opencode`, keyed by the session
file) holds a digest of the names, sizes and mtimes of all its files; a session whose files are
unchanged is not read again.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from agentd.importers._opencode_turns import (
    EventSender,
    is_typed,
    snapshot_lines,
    wanted_part,
)
from agentd.importers.state import ImportState
from agentd.importers.writer import Pipeline
from agentd.protocol import MAX_DEPTH, TooDeep, check_depth

__all__ = ["StorageImport", "is_storage", "storage_dir"]

AGENT = "opencode"
MAX_FILE = 64 << 20  # a bigger file is skipped (and counted), as a transcript line over 64 MiB


def storage_dir(data_dir: Path) -> Path:
    return data_dir / "storage"


def is_storage(path: Path) -> bool:
    """A legacy storage directory: it has a `session` folder."""
    return (path / "session").is_dir()


def _listing(directory: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as it:
            return sorted((e for e in it if e.name.endswith(".json")), key=lambda e: e.name)
    except OSError:
        return []


def _load(path: str) -> dict[str, Any] | str:
    """The JSON object in a file, else why not (a short reason, counted by the caller).

    Only a regular file is read, at most MAX_FILE bytes: the tree is someone's home directory, and
    a FIFO named `*.json` would block a plain open() forever, a link to /dev/zero fill memory.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        return "a symlink" if e.errno == errno.ELOOP else "unreadable"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        if st.st_size > MAX_FILE:
            return f"over {MAX_FILE >> 20} MiB"
        chunks, size = [], 0
        while chunk := os.read(fd, MAX_FILE + 1 - size):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_FILE:  # grew since the fstat
                return f"over {MAX_FILE >> 20} MiB"
    except OSError:
        return "unreadable"
    finally:
        os.close(fd)
    data = b"".join(chunks)
    try:
        check_depth(data)  # before json.loads recurses
        value = json.loads(data)
    except TooDeep:
        return f"nested deeper than {MAX_DEPTH} levels"
    except ValueError:  # not JSON, not UTF-8
        return "not JSON"
    return value if isinstance(value, dict) else "not a JSON object"


class _Session:
    """One session's files: the session file, its messages, their parts."""

    def __init__(self, storage: Path, entry: os.DirEntry[str]) -> None:
        self.path = entry.path
        self.id = entry.name[: -len(".json")]
        self.messages = _listing(storage / "message" / self.id)
        self.parts = {
            m.name[: -len(".json")]: _listing(storage / "part" / m.name[: -len(".json")])
            for m in self.messages
        }

    def signature(self) -> str:
        digest = hashlib.sha256()
        for entry in [
            self.path,
            *(m.path for m in self.messages),
            *(p.path for ps in self.parts.values() for p in ps),
        ]:
            try:
                st = os.stat(entry)
            except OSError:
                continue
            digest.update(f"{entry}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return digest.hexdigest()


class StorageImport(EventSender):
    def __init__(self, pipeline: Pipeline, state: ImportState, summary: Any, progress: Any) -> None:
        self.pipeline = pipeline
        self.state = state
        self.summary = summary
        self.progress = progress

    async def run(self, storages: list[Path]) -> None:
        todo = []
        for storage in storages:
            if not is_storage(storage):
                self.summary.files_unreadable += 1
                self.summary.errors.append(f"{storage}: not an OpenCode storage directory")
                continue
            for project in sorted(p for p in (storage / "session").iterdir() if p.is_dir()):
                for entry in _listing(project):
                    session = _Session(storage, entry)
                    self.summary.files += 1
                    signature = session.signature()
                    known = self.state.entries(AGENT).get(session.path) or {}
                    if known.get("signature") == signature:
                        self.summary.files_unchanged += 1
                        continue
                    todo.append((session, signature))
        self.progress.start(len(todo), 0)
        for session, signature in todo:
            await self._import(session, signature)
            self.progress.file_done()
        await self.pipeline.finish()

    async def _import(self, session: _Session, signature: str) -> None:
        summary = self.summary
        info = _load(session.path)
        if isinstance(info, str) or not isinstance(info.get("id"), str):
            why = info if isinstance(info, str) else "no session id"
            summary.files_unreadable += 1
            summary.errors.append(f"{session.path}: unreadable session file ({why})")
            return
        summary.files_read += 1
        sid = info["id"]
        updated = _time(info, "updated") or _time(info, "created")
        await self._emit("session.updated", {"sessionID": sid, "info": info}, updated)
        messages: list[dict[str, Any]] = []
        parts: dict[str, list[dict[str, Any]]] = {}
        for entry in session.messages:
            message = _load(entry.path)
            if isinstance(message, str) or not isinstance(message.get("id"), str):
                why = message if isinstance(message, str) else "no message id"
                summary.skip(f"message: unreadable file ({why})")
                continue
            messages.append(message)
            parts[message["id"]] = []
            for part_entry in session.parts.get(entry.name[: -len(".json")], []):
                part = _load(part_entry.path)
                if isinstance(part, str):
                    summary.skip(f"part: unreadable file ({part})")
                else:
                    parts[message["id"]].append(part)
        users = {m["id"]: m for m in messages if m.get("role") == "user"}
        lines: dict[str, dict[str, int]] = {}
        for user_id, user in users.items():
            turn = [p for m in messages if m.get("parentID") == user_id for p in parts[m["id"]]]
            lines.update(snapshot_lines(user, turn))
        for message in messages:
            mid = message["id"]
            at = _time(message, "completed") or _time(message, "created") or updated
            await self._emit("message.updated", {"sessionID": sid, "info": message}, at)
            if message.get("role") == "user" and is_typed(parts[mid]):
                await self._chat(sid, message, at)
            for part in parts[mid]:
                if not wanted_part(part):
                    summary.records += 1
                    summary.skip("part (not tool, compaction or retry)")
                    continue
                seen = _part_time(part) or at
                props: dict[str, Any] = {"sessionID": sid, "part": part, "time": seen}
                if part.get("id") in lines:
                    props["agentd_snapshot_diff"] = lines[part["id"]]
                await self._emit("message.part.updated", props, _part_end(part) or seen)
        done = {"signature": signature}
        self.pipeline.mark(lambda: self.state.set(AGENT, session.path, done))


def _time(obj: dict[str, Any], key: str) -> int | None:
    times = obj.get("time")
    value = times.get(key) if isinstance(times, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _part_time(part: dict[str, Any]) -> int | None:
    """When a part was first there: its tool state's start, else its own time (a part file has no
    creation time)."""
    state = part.get("state")
    start = _time(state, "start") if isinstance(state, dict) else None
    return start or _time(part, "start") or _time(part, "created")


def _part_end(part: dict[str, Any]) -> int | None:
    state = part.get("state")
    return (_time(state, "end") if isinstance(state, dict) else None) or _time(part, "end")
