"""Who is pushing: a machine id made once per machine, the user name from the OS, and the
machine's private key for the ids the push sends as digests (push/ids.py)."""

from __future__ import annotations

import contextlib
import getpass
import os
import secrets
import socket
import uuid
from collections.abc import Callable
from pathlib import Path

from agentd.errors import PushError

__all__ = ["machine_id", "id_key", "user_name", "hostname"]

_FILE = "machine-id"
_KEY_FILE = "push-id-key"


def machine_id(state_dir: Path) -> str:
    """This machine's id: a random UUID written once to `state_dir/machine-id` (mode 0600).

    Random rather than derived from /etc/machine-id or the host name: it must not change when the
    host is renamed, nor collide between containers cloned from one image that share both.
    """
    return _made_once(state_dir / _FILE, lambda: uuid.uuid4().hex)


def id_key(state_dir: Path) -> bytes:
    """The key of the push's id digests: 32 random bytes written once to `state_dir/push-id-key`
    (mode 0600, hex). It never leaves the machine: without it a digest of a path cannot be
    checked against guesses (an unkeyed hash of a path can)."""
    path = state_dir / _KEY_FILE
    try:
        key = bytes.fromhex(_made_once(path, lambda: secrets.token_hex(32)))
    except ValueError:  # not hex, or not text
        key = b""
    except OSError as e:  # a directory there, unreadable: one line, not a traceback
        raise PushError(f"cannot read the push id key {path}: {e.strerror}") from None
    if len(key) < 16:
        raise PushError(
            f"{path} is not a push id key (hex digits, 32 bytes or at least 16); see docs/team.md"
        )
    return key


def _made_once(path: Path, make: Callable[[], str]) -> str:
    with contextlib.suppress(FileNotFoundError):
        text = path.read_text().strip()
        if text:
            return text
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    new = make()
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(new + "\n")
    try:
        # link() fails if another process made the file first: then theirs is the one.
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
