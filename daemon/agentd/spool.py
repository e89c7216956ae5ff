"""The spool: where shims put events the daemon could not take (docs/protocol.md, "Spool").

Format: NDJSON files in `<state dir>/spool/`, one `ingest` params object per line:
`{"source": "claude", "payload": {...}, "received_at": 1763712000000}`.

Writers never share a file, so lines cannot interleave. A file is named
`<source>-<pid>-<unique>.ndjson`, and is only given that name, by an atomic rename, once its writer
has finished it. While a writer may still append, the name ends in `.ndjson.open`: the daemon leaves
such a file alone while the pid in its name is alive, and drains it (complete lines only) once that
process is gone. Stdlib only: the hook writes here.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["write_file", "ready_files", "read_lines", "SpoolFile", "backlog"]

READY = ".ndjson"
OPEN = ".ndjson.open"
_NAME = re.compile(r"^(?P<source>[A-Za-z0-9_]+)-(?P<pid>\d+)-[A-Za-z0-9_.-]+$")


def write_file(spool_dir: Path, source: str, lines: list[bytes]) -> Path:
    """Write complete lines (each ending in `\\n`) as one new spool file, atomically."""
    spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    unique = f"{os.getpid()}-{time.time_ns()}-{os.urandom(4).hex()}"
    tmp = spool_dir / f"{source}-{unique}{OPEN}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        data = b"".join(lines)
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    final = tmp.with_name(tmp.name[: -len(OPEN)] + READY)
    os.rename(tmp, final)
    return final


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class SpoolFile:
    path: Path
    size: int


def ready_files(spool_dir: Path) -> list[SpoolFile]:
    """Files the daemon may drain now, oldest first: finished ones, and open ones whose writer died."""
    found = []
    try:
        entries = list(os.scandir(spool_dir))
    except FileNotFoundError:
        return []
    for entry in entries:
        name = entry.name
        if name.endswith(OPEN):
            match = _NAME.match(name[: -len(OPEN)])
            if match and _pid_alive(int(match["pid"])):
                continue
        elif not name.endswith(READY):
            continue
        try:
            stat = entry.stat()
        except FileNotFoundError:
            continue
        found.append((stat.st_mtime_ns, SpoolFile(Path(entry.path), stat.st_size)))
    return [f for _, f in sorted(found, key=lambda pair: pair[0])]


def backlog(spool_dir: Path) -> tuple[int, int]:
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


def read_lines(path: Path) -> tuple[list[bytes], int]:
    """The complete lines of a spool file, and the byte count of a torn last line (dropped)."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    lines = [line for line in data[:end].split(b"\n") if line.strip()]
    return lines, len(data) - end
