"""What earlier imports got through: `<state dir>/import-state.json`, so a re-run reads only what is new.

```json
{"version": 1,
 "claude": {"/abs/path/session.jsonl": {"inode": 123, "size": 4096, "offset": 4096,
                                         "tail": "<crc32>", "prompt": "<last promptId before offset>", "at": 1795246120793}},
 "opencode": {"/abs/path/opencode.db": {"signature": [[ino, size, mtime_ns], ...], "updated": 1795246120793}}}
```

- claude: per transcript, the file's inode and size when last read, and `offset`: the end of the last
  complete line whose events the writer acknowledged (a torn last line is read again next time).
  A file whose inode changed or that shrank is read from the start; so is one whose bytes before
  `offset` are not the ones read there (`tail`: the CRC-32 of the 64 bytes before it; the file was
  rewritten in place). One whose inode and size are unchanged is not opened at all. `prompt` and `at` carry what later lines need from earlier ones
  (the current prompt id, the last record time).
- opencode: per database, `signature` (inode, size, mtime of the file and its WAL: unchanged means
  nothing to query) and `updated`, the newest `time_updated` seen across session, message and part.

Written atomically (a temporary file renamed over the old one), mode 0600. A missing or unreadable
file is an empty state: everything is read again, which is safe (events are deduplicated).

The daemon follows live Claude Code transcripts with the same reader and keeps its offsets in the
same format in `<state dir>/follow-state.json` (FOLLOW_FILE). Each file has one writer: the daemon
writes only follow-state.json, `agentd import` only import-state.json, so neither clobbers the
other's offsets. Each reads both and starts a transcript from the further of the two entries that
still apply (best_entry): an import skips what the daemon has read, and the other way round.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = [
    "ImportState",
    "STATE_FILE",
    "FOLLOW_FILE",
    "STATE_VERSION",
    "best_entry",
    "fits",
    "well_formed",
]

STATE_FILE = "import-state.json"
FOLLOW_FILE = "follow-state.json"  # the daemon's follower (agentd/follow.py)
STATE_VERSION = 1


class ImportState:
    def __init__(self, path: Path, data: dict[str, Any] | None = None) -> None:
        self.path = path
        data = data or {}
        # One section per agent (agents.py), each keyed by the file or database it read.
        # An entry that is not an object (a damaged file) is absent: that file is read again.
        self._sections: dict[str, dict[str, dict[str, Any]]] = {
            name: {k: e for k, e in section.items() if isinstance(e, dict)}
            for name, section in data.items()
            if isinstance(section, dict)
        }
        self.dirty = False

    @classmethod
    def load(cls, state_dir: Path, name: str = STATE_FILE) -> ImportState:
        path = state_dir / name
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls(path)
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            return cls(path)
        return cls(path, data)

    def entries(self, agent: str) -> dict[str, dict[str, Any]]:
        """What the imports of `agent` got through, by file or database (read it, don't change it)."""
        return self._sections.get(agent, {})

    def set(self, agent: str, key: str, entry: dict[str, Any]) -> None:
        section = self._sections.setdefault(agent, {})
        if section.get(key) != entry:
            section[key] = entry
            self.dirty = True

    def forget(self, agent: str, keys: list[str]) -> None:
        section = self._sections.get(agent, {})
        for key in keys:
            if section.pop(key, None) is not None:
                self.dirty = True

    def save(self) -> None:
        """Write the state if it changed (atomically)."""
        if not self.dirty:
            return
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = {"version": STATE_VERSION, **self._sections}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        text = json.dumps(data, separators=(",", ":"))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self.dirty = False


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def well_formed(entry: Any) -> bool:
    """A transcript entry whose fields have their types (a damaged one is treated as absent)."""
    return (
        isinstance(entry, dict)
        and _int(entry.get("inode"))
        and _int(entry.get("offset"))
        and _int(entry.get("size", 0))
        and isinstance(entry.get("tail", ""), str)
        and isinstance(entry.get("prompt", ""), str)
        and _int(entry.get("at", 0))
    )


def fits(entry: Any, st: os.stat_result) -> bool:
    """The entry still applies to the file as it is now: same inode, offset within its size,
    not shrunk since."""
    return (
        well_formed(entry)
        and entry["inode"] == st.st_ino
        and 0 <= entry["offset"] <= st.st_size
        and st.st_size >= (entry.get("size") or 0)
    )


def best_entry(st: os.stat_result, *entries: dict[str, Any] | None) -> dict[str, Any] | None:
    """Of a transcript's entries (import's, follower's), the one that reached furthest into the
    file as it is now (same inode, offset within its size); else any well-formed entry, so that
    the reader sees the file was replaced or shrank and reads it from the start; None when there
    is none (an entry of the wrong shape counts as none)."""
    fitting = [e for e in entries if e and fits(e, st)]
    if fitting:
        return max(fitting, key=lambda e: (e["offset"], e.get("size") or 0))
    return next((e for e in entries if e and well_formed(e)), None)
