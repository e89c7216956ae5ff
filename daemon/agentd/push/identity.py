"""Who is pushing: a machine id made once per machine, and the user name from the OS."""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import uuid
from pathlib import Path

__all__ = ["machine_id", "user_name", "hostname"]

_FILE = "machine-id"


def machine_id(state_dir: Path) -> str:
    """This machine's id: a random UUID written once to `state_dir/machine-id` (mode 0600).

    Random rather than derived from /etc/machine-id or the host name: it must not change when the
    host is renamed, nor collide between containers cloned from one image that share both.
    """
    path = state_dir / _FILE
    with contextlib.suppress(FileNotFoundError):
        text = path.read_text().strip()
        if text:
            return text
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    new = uuid.uuid4().hex
    tmp = path.with_name(f"{_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(new + "\n")
    try:
        # link() fails if another process made the id first: then theirs is the one.
        os.link(tmp, path)
    except FileExistsError:
        return path.read_text().strip()
    finally:
        tmp.unlink()
    return new


def user_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers) and no $USER
        return str(os.getuid())


def hostname() -> str:
    return socket.gethostname()
