"""What agentd trusts on a shared machine (docs/protocol.md, "Guarantees").

Another local user must not be able to make agentd write through a link they planted, nor receive
its events on a socket they planted. So:

- a directory agentd writes in is a real directory (not a symlink) owned by us, that group and
  others cannot write: private_dir() makes or checks one (and makes our own 0700 when others can
  only read it; one they can write in is refused, never chmodded);
- a file agentd creates or appends to is opened through open_private() with O_NOFOLLOW, mode 0600;
- a socket is only used when its directory passes check_dir() and, once connected, its peer runs
  as our uid (check_peer(): SO_PEERCRED).

Each check is a syscall or two, and this module imports only `os` (which has loaded `stat` and
`sys` already): the hook runs these checks on every tool call.
"""

from __future__ import annotations

import os
import stat
import sys

TYPE_CHECKING = False  # the idiom that spares importing `typing` at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "Untrusted",
    "check_dir",
    "private_dir",
    "open_private_dir",
    "open_private",
    "peer_uid",
    "check_peer",
]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Untrusted(PermissionError):
    """A path or peer agentd refuses to use. An OSError (EACCES) whose `filename` is the path and
    `strerror` the reason, so code that reports OSErrors reports this one clearly too."""

    def __init__(self, path: Any, reason: str) -> None:
        super().__init__(13, reason, os.fspath(path))

    def __str__(self) -> str:
        return f"refusing {self.filename}: {self.strerror}"


def _problem(st: os.stat_result) -> str | None:
    """Why a directory with this (l)stat is not ours to use, or None."""
    if stat.S_ISLNK(st.st_mode):
        return "it is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a directory"
    me = os.geteuid()
    if st.st_uid != me:
        return f"it is owned by uid {st.st_uid}, not by you (uid {me})"
    if st.st_mode & 0o022:
        mode = stat.S_IMODE(st.st_mode)
        return f"other users can write in it (mode {mode:04o}); it must be yours alone"
    return None


def check_dir(path: str) -> None:
    """Raise Untrusted unless `path` is a directory (not a symlink) of ours that group and others
    cannot write. FileNotFoundError when it is missing."""
    problem = _problem(os.lstat(path))
    if problem:
        raise Untrusted(path, problem)


def open_private_dir(path: str, *, tighten: bool = True) -> int:
    """An fd (O_NOFOLLOW) of directory `path`, made 0700 if missing. Untrusted unless it is ours
    and group and others cannot write in it; with `tighten`, an existing one of ours that they
    can read is made 0700 (it is agentd's own: the state or spool dir, left 0755 by an older
    agentd). One they can write in is refused, never chmodded: it is shared on purpose (a 1777
    /tmp given as AGENTD_HOME, say), and what others put there cannot be trusted anyway.
    Files are then made relative to the fd, so the directory checked is the one written in even
    if its path is swapped meanwhile."""
    try:
        fd = os.open(path, _DIR_FLAGS)
    except FileNotFoundError:
        os.makedirs(path, mode=0o700, exist_ok=True)
        fd = os.open(path, _DIR_FLAGS)
    except OSError as e:  # ELOOP: a symlink; ENOTDIR: not a directory
        raise Untrusted(path, _problem(os.lstat(path)) or e.strerror) from None
    try:
        st = os.fstat(fd)
        problem = _problem(st)
        if problem:
            raise Untrusted(path, problem)
        if tighten and stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    except BaseException:
        os.close(fd)
        raise
    return fd


def private_dir(path: str | os.PathLike[str], *, tighten: bool = True) -> None:
    """open_private_dir() for its checks only."""
    os.close(open_private_dir(os.fspath(path), tighten=tighten))


def open_private(path: str, flags: int, dir_fd: int | None = None) -> int:
    """os.open(path, flags | O_NOFOLLOW | O_CLOEXEC, 0o600): Untrusted for a symlink. A file of
    ours left looser by an older agentd is made 0600."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    except OSError as e:
        if e.errno != 40:  # ELOOP: the last component is a symlink
            raise
        raise Untrusted(path, "it is a symbolic link") from None
    try:
        st = os.fstat(fd)
        if st.st_uid == os.geteuid() and st.st_mode & 0o077:
            os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def peer_uid(sock: Any) -> int:
    """The uid of the process at the other end of a connected Unix socket (`socket` or
    `_socket`): struct ucred is three native ints, pid, uid, gid."""
    import _socket  # a C module the callers have loaded already

    creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
    return int.from_bytes(creds[4:8], sys.byteorder)


def check_peer(sock: Any, path: Any) -> None:
    """Raise Untrusted unless the socket's peer runs as our uid (what the daemon checks of us)."""
    uid, me = peer_uid(sock), os.geteuid()
    if uid != me:
        raise Untrusted(path, f"it is served by uid {uid}, not by you (uid {me})")
