"""The spool: where shims put events the daemon could not take (docs/protocol.md, "Spool").

Format: NDJSON files in `<state dir>/spool/`, one `ingest` params object per line:
`{"source": "claude", "payload": {...}, "received_at": 1763712000000}`.

Writers never share a file, so lines cannot interleave. A file is named
`<source>-<pid>-<unique>.ndjson`, and is only given that name, by an atomic rename, once its writer
has finished it. While a writer may still append, the name ends in `.ndjson.open`: the daemon leaves
such a file alone while the pid in its name is alive, and drains it (complete lines only) once that
process is gone.

`os` and `time` only: the hook writes here when the daemon is down, on an agent's hot path.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False  # the idiom that spares importing `typing` at run time
if TYPE_CHECKING:
    from os import PathLike

    StrPath = str | PathLike[str]

__all__ = ["write_file", "ready_files", "read_lines", "backlog", "READY", "OPEN"]

READY = ".ndjson"
OPEN = ".ndjson.open"


def write_file(spool_dir: StrPath, source: str, lines: list[bytes]) -> str:
    """Write complete lines (each ending in `\\n`) as one new spool file, atomically; its path."""
    spool_dir = os.fspath(spool_dir)
    os.makedirs(spool_dir, mode=0o700, exist_ok=True)
    unique = f"{os.getpid()}-{time.time_ns()}-{os.urandom(4).hex()}"
    tmp = os.path.join(spool_dir, f"{source}-{unique}{OPEN}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        data = b"".join(lines)
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    final = tmp[: -len(OPEN)] + READY
    os.rename(tmp, final)
    return final


def _writer_alive(name: str) -> bool:
    """Whether the writer of `<source>-<pid>-<unique>.ndjson.open` still runs."""
    parts = name.split("-", 2)
    if len(parts) < 3 or not parts[1].isdigit():
        return False  # not a name a writer made: nobody will finish it
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's process
    return True


def ready_files(spool_dir: StrPath) -> list[str]:
    """Files the daemon may drain now, oldest first: finished ones, and open ones whose writer died."""
    found = []
    try:
        entries = list(os.scandir(spool_dir))
    except FileNotFoundError:
        return []
    for entry in entries:
        name = entry.name
        if name.endswith(OPEN):
            if _writer_alive(name):
                continue
        elif not name.endswith(READY):
            continue
        try:
            found.append((entry.stat().st_mtime_ns, entry.path))
        except FileNotFoundError:
            continue
    return [path for _, path in sorted(found)]


def backlog(spool_dir: StrPath) -> tuple[int, int]:
    """(files, bytes) waiting in the spool, open files included."""
    files = size = 0
    try:
        for entry in os.scandir(spool_dir):
            if entry.name.endswith((READY, OPEN)):
                try:
                    size += entry.stat().st_size
                except FileNotFoundError:
                    continue
                files += 1
    except FileNotFoundError:
        pass
    return files, size


def read_lines(path: StrPath) -> tuple[list[bytes], int]:
    """The complete lines of a spool file, and the byte count of a torn last line (dropped)."""
    with open(path, "rb") as f:
        data = f.read()
    end = data.rfind(b"\n") + 1
    lines = [line for line in data[:end].split(b"\n") if line.strip()]
    return lines, len(data) - end
