"""The one read-only SQLite connect: agentd's database for query, doctor and import, OpenCode's own.

`mode=ro` makes SQLite refuse every write and never create the file, and `PRAGMA query_only`
refuses writes even where `mode=ro` would not apply. The path goes into a `file:` URI quoted: `?`,
`#` and `%` in a path would otherwise start the URI's query, its fragment or an escape, and SQLite
would open (and create) another file than the one named.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from agentd.errors import no_database

__all__ = ["connect", "connect_existing", "uri"]

C = TypeVar("C", bound=sqlite3.Connection)


def uri(path: Path, *, immutable: bool = False) -> str:
    """The read-only `file:` URI of `path`."""
    return f"file:{quote(str(path))}?mode=ro" + ("&immutable=1" if immutable else "")


def connect(
    path: Path,
    *,
    timeout: float = 5.0,
    factory: type[C] = sqlite3.Connection,  # type: ignore[assignment]
    immutable_fallback: bool = False,
    check_same_thread: bool = True,
) -> C:
    """A connection to `path` that cannot change it (autocommit; `timeout`: how long a statement
    waits for a writer's lock). Raises sqlite3.Error when it cannot be opened.

    `immutable_fallback`, for a database of another program in a directory we cannot write: a WAL
    reader must create the -shm file beside it, so when the first read fails, open it immutable
    (SQLite then assumes nobody changes it meanwhile). Never for agentd's own database, which the
    daemon may be writing.
    """
    try:
        return _open(uri(path), timeout, factory, probe=immutable_fallback, same=check_same_thread)
    except sqlite3.OperationalError:
        if not immutable_fallback:
            raise
    return _open(uri(path, immutable=True), timeout, factory, probe=False, same=check_same_thread)


def connect_existing(
    path: Path,
    error: Callable[[str], Exception],
    *,
    timeout: float,
    factory: type[C] = sqlite3.Connection,  # type: ignore[assignment]
    check_same_thread: bool = True,
) -> C:
    """connect() to agentd's own database for a command that reads it (query, the dashboard):
    `error(message)` when there is none yet, or it cannot be opened."""
    if not path.exists():
        raise error(no_database(path))
    try:
        return connect(path, timeout=timeout, factory=factory, check_same_thread=check_same_thread)
    except sqlite3.Error as e:
        raise error(f"cannot open {path}: {e}") from None


def _open(target: str, timeout: float, factory: type[C], *, probe: bool, same: bool) -> C:
    conn = sqlite3.connect(
        target,
        uri=True,
        isolation_level=None,
        timeout=timeout,
        factory=factory,
        check_same_thread=same,  # False for a server handing one connection to a thread pool
    )
    try:
        if probe:  # the first read is what fails in a directory we cannot write
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        conn.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return conn
