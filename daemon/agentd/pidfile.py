"""Pid-file locks: a file holding the pid of whoever holds its exclusive lock.

`agentd.pid`: whoever holds it is the database's only writer. The daemon holds it for its whole
life; a command that writes the database directly while no daemon runs (prune, vacuum, import)
holds it too, so that no daemon can start meanwhile. `import.lock`: one import at a time.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from agentd import trust
from agentd.errors import Locked

__all__ = ["Locked", "acquire", "release", "held"]


def acquire(path: Path) -> int:
    """Take the lock without waiting and write our pid; the fd to pass to release()."""
    trust.private_dir(path.parent)  # ours alone (trust.Untrusted, an OSError, if not)
    fd = trust.open_private(str(path), os.O_RDWR | os.O_CREAT)  # 0600, never through a link
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.read(fd, 32).decode(errors="replace").strip()
        os.close(fd)
        raise Locked(int(text) if text.isdigit() else None) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def release(path: Path, fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    os.close(fd)  # closing drops the lock


@contextlib.contextmanager
def held(path: Path) -> Iterator[None]:
    fd = acquire(path)
    try:
        yield
    finally:
        release(path, fd)
