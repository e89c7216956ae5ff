"""Writing into the agents' configuration directories: atomically, through a symlink (dotfiles
setups keep their link), keeping the file's mode; and the directories agentd had to create,
recorded so that an uninstall removes them again once they are empty (and no others)."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from agentd.installers import InstallError

__all__ = ["replace", "make_parents", "remove_created_parents", "CREATED_DIRS_FILE"]

# In the file's directory, while agentd's file is there: the directories agentd created for it,
# innermost first, one a line. Agents load `*.ts` / `settings.json` only: this name is ignored.
CREATED_DIRS_FILE = ".agentd-created-dirs"


def replace(path: Path, data: bytes, mode_of: Path | None = None, new_mode: int = 0o600) -> None:
    """Write `data` as `path` atomically (a watcher or a starting agent never sees half a file),
    through a symlink, keeping the file's mode (or that of `mode_of`); a new file gets
    `new_mode` (settings may hold secrets: 0600 by default)."""
    real = Path(os.path.realpath(path))
    try:
        mode = stat.S_IMODE(os.stat(mode_of or real).st_mode)
    except FileNotFoundError:
        mode = new_mode
    tmp = real.with_name(f".{real.name}.agentd-{os.getpid()}")
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)  # the umask may have narrowed it
        os.replace(tmp, real)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise InstallError(f"cannot write {real}: {e.strerror}") from None


def make_parents(path: Path) -> None:
    """Create `path`'s missing parent directories, and record them beside `path`."""
    parent = path.parent
    missing = []
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    if not missing:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        record = "".join(f"{d.name}\n" for d in missing)
        (path.parent / CREATED_DIRS_FILE).write_text(record, encoding="utf-8")
    except OSError as e:
        raise InstallError(f"cannot create {path.parent}: {e.strerror}") from None


def remove_created_parents(path: Path) -> list[Path]:
    """After `path` was removed: remove the directories make_parents recorded for it, innermost
    first, as long as each is empty. Returns those removed."""
    record = path.parent / CREATED_DIRS_FILE
    try:
        names = record.read_text(encoding="utf-8").split()
    except OSError:
        return []
    record.unlink(missing_ok=True)
    removed = []
    directory = path.parent
    for name in names:
        if directory.name != name:  # moved or renamed since: not ours to judge
            break
        with contextlib.suppress(OSError):
            directory.rmdir()  # only if empty
        if directory.exists():
            break
        removed.append(directory)
        directory = directory.parent
    return removed
