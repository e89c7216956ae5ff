"""The dashboard's own token, kept in the state dir (`ui-token`) when none is given, so a
bookmarked `?token=` link and the browser's cookie keep working across restarts.

The file is made beside its final name, 0600 with O_EXCL, then linked (first start) or renamed
(a bad file) into place: a reader never sees half a token, and two `agentd ui` starting at once
agree on one. The directory is agentd's private state dir (0700, ours, checked by trust.py);
files are opened relative to its fd, without following symlinks.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from pathlib import Path

from agentd import trust

__all__ = ["TOKEN_FILE", "load_or_create", "valid"]

TOKEN_FILE = "ui-token"
# What a cookie value and a URL carry unquoted, and what `secrets.token_urlsafe` makes.
_VALID = re.compile(r"[A-Za-z0-9._~-]{16,512}")
_MAX_READ = 4096


def valid(token: str) -> bool:
    return _VALID.fullmatch(token) is not None


def _read(dir_fd: int) -> str | None:
    """The stored token, or None when it is missing, not ours, not private, or not a token."""
    try:
        fd = trust.open_private(TOKEN_FILE, os.O_RDONLY, dir_fd=dir_fd)
    except OSError:  # missing, a symlink, unreadable
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            return None
        text = os.read(fd, _MAX_READ).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    return text if valid(text) else None


def _write(dir_fd: int, token: str, *, replace: bool) -> None:
    tmp = f".{TOKEN_FILE}.{secrets.token_hex(8)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                 dir_fd=dir_fd)  # fmt: skip
    try:
        try:
            os.write(fd, f"{token}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, TOKEN_FILE, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        else:
            # link() fails when the name exists: another start made it first, and wins.
            with contextlib.suppress(FileExistsError):
                os.link(tmp, TOKEN_FILE, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)


def load_or_create(state_dir: Path) -> str:
    """The token in `state_dir/ui-token`; a new random one (stored there) when the file is
    missing or unusable. Raises OSError (trust.Untrusted) when the directory is not ours."""
    dir_fd = trust.open_private_dir(os.fspath(state_dir))
    try:
        token = _read(dir_fd)
        if token is not None:
            return token
        exists = True
        try:
            os.stat(TOKEN_FILE, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            exists = False
        _write(dir_fd, secrets.token_urlsafe(32), replace=exists)
        token = _read(dir_fd)
        if token is None:
            raise trust.Untrusted(state_dir / TOKEN_FILE, "the token just written cannot be read")
        return token
    finally:
        os.close(dir_fd)
