"""`agentd query`: canned reports and read-only SQL over the agentd database.

The database is opened read-only by construction: a `mode=ro` connection (SQLite refuses every
write) with `PRAGMA query_only` (both from db/readonly.py), no room for attached databases, and an authorizer that refuses
ATTACH and state-changing PRAGMAs with a clear message. Nothing here filters SQL text. Rows are
streamed (`fetchmany`) in batches to the writers of output.py, so a result of any size runs in
bounded memory. The daemon need not run, and may be writing meanwhile: WAL readers see a
consistent snapshot. No click here: errors are QueryError, Interrupted and (a damaged file)
DatabaseUnusable, which the CLI maps.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from agentd.db import preflight, readonly
from agentd.errors import Interrupted, QueryError, TimedOut
from agentd.query.reports import Report, render
from agentd.query.window import window

__all__ = [
    "QueryError",
    "Interrupted",
    "TimedOut",
    "connect_readonly",
    "execute",
    "run_report",
    "limited",
]

FETCH_ROWS = 1000
# PRAGMAs that only read even when given an argument. Any other PRAGMA with an argument sets
# something, and the authorizer refuses it.
_READING_PRAGMAS = {
    "table_info",
    "table_xinfo",
    "table_list",
    "index_info",
    "index_xinfo",
    "index_list",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
}
_SIDE_EFFECT_PRAGMAS = {"wal_checkpoint", "optimize", "incremental_vacuum", "shrink_memory"}

Batches = Iterable[list[tuple[Any, ...]]]
_DAMAGED = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


class _Guard:
    """The connection's authorizer; remembers why it refused, for the error message."""

    def __init__(self) -> None:
        self.refused: str | None = None

    def __call__(self, action: int, arg1: str | None, arg2: str | None, *_: Any) -> int:
        if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            self.refused = "ATTACH, DETACH and VACUUM INTO are not allowed"
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_PRAGMA:
            name = (arg1 or "").lower()
            if name in _SIDE_EFFECT_PRAGMAS or (arg2 is not None and name not in _READING_PRAGMAS):
                self.refused = f"PRAGMA {name} is not allowed with an argument or side effects"
                return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK


class _Deadline:
    """The progress handler: a Python callback now and then lets Ctrl-C interrupt a long
    statement (see _error), and a non-zero answer after the deadline interrupts it too."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.at = time.monotonic() + timeout_s if timeout_s > 0 else None
        self.passed = False

    def __call__(self) -> int:
        if self.at is not None and time.monotonic() >= self.at:
            self.passed = True
            return 1
        return 0


class ReadOnlyConnection(sqlite3.Connection):
    db_path: Path
    guard: _Guard
    deadline: _Deadline


def connect_readonly(db_path: Path, timeout_s: float = 0) -> ReadOnlyConnection:
    """A connection that cannot change the database, whatever SQL it is given.

    Statements on it stop with TimedOut once `timeout_s` seconds have passed since it was opened
    (0: no limit).
    """
    conn = readonly.connect_existing(db_path, QueryError, timeout=10.0, factory=ReadOnlyConnection)
    conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    conn.db_path = db_path
    conn.guard = _Guard()
    conn.set_authorizer(conn.guard)
    conn.deadline = _Deadline(timeout_s)
    conn.set_progress_handler(conn.deadline, 100_000)
    return conn


def _error(conn: sqlite3.Connection, e: sqlite3.Error) -> Exception:
    message = str(e)
    refused = conn.guard.refused if isinstance(conn, ReadOnlyConnection) else None
    if message == "interrupted":
        deadline = conn.deadline if isinstance(conn, ReadOnlyConnection) else None
        if deadline is not None and deadline.passed:
            return TimedOut(
                f"stopped after {deadline.timeout_s:g} s (--timeout); give it more time with "
                "--timeout SECONDS, or --timeout 0 for no limit"
            )
        return Interrupted()
    if refused:
        return QueryError(f"refused: {refused}: agentd query only reads")
    code = getattr(e, "sqlite_errorcode", None)
    if isinstance(conn, ReadOnlyConnection) and code is not None and code & 0xFF in _DAMAGED:
        # The file, not the statement: said as every command says it of a damaged file.
        return preflight.unusable(conn.db_path, f"cannot be read ({message})")
    if "too many attached databases" in message:
        return QueryError(
            "refused: ATTACH and VACUUM INTO are not allowed: agentd query only reads"
        )
    if (getattr(e, "sqlite_errorname", "") or "").startswith("SQLITE_READONLY"):
        return QueryError(
            f"refused: the statement would write ({message}); agentd query opens the database "
            "read-only"
        )
    return QueryError(f"SQL error: {message}")


def execute(
    conn: sqlite3.Connection, sql: str, params: dict[str, Any]
) -> tuple[list[str], Iterator[list[tuple[Any, ...]]]]:
    """Run one statement; return its column names and its rows, in batches, as SQLite yields them."""
    try:
        cursor = conn.execute(sql, params)
    except sqlite3.Error as e:
        raise _error(conn, e) from None
    columns = _unique([d[0] for d in cursor.description or ()])

    def batches() -> Iterator[list[tuple[Any, ...]]]:
        try:
            while batch := cursor.fetchmany(FETCH_ROWS):
                yield batch
        except sqlite3.Error as e:
            raise _error(conn, e) from None
        finally:
            with contextlib.suppress(sqlite3.Error):  # the connection may be closed already
                cursor.close()

    return columns, batches()


def run_report(
    conn: sqlite3.Connection, report: Report, params: dict[str, Any]
) -> tuple[list[str], Iterator[list[tuple[Any, ...]]]]:
    """Execute a report; its rows stream, unless percentiles must be looked up and sorted.

    The window's stretches (query/window.py) are derived from :since and :until here unless
    the caller gave them."""
    params = {**window(params.get("since"), params.get("until")), **params}
    if not report.percentiles:
        return execute(conn, render(report.sql, params), params)
    # Only these reports load it (and json, the rollup's bucket math): `agentd query` starts lean.
    from agentd.query import percentiles

    conn.execute("BEGIN")  # one snapshot for the counts and the lookups, while the daemon writes
    try:
        columns, batches = execute(conn, render(report.sql, params), params)
        rows = [list(row) for batch in batches for row in batch]
        try:
            percentiles.fill(conn, report.percentiles, params, columns, rows)
        except sqlite3.Error as e:
            raise _error(conn, e) from None
    finally:
        conn.execute("COMMIT")
    if report.sort_by:
        key, name = columns.index(report.sort_by), columns.index("tool_name")
        rows.sort(key=lambda row: row[name] or "")
        rows.sort(key=lambda row: -1 if row[key] is None else row[key], reverse=True)
    if params["limit"] >= 0:
        rows = rows[: params["limit"]]
    return columns, iter([[tuple(row) for row in rows]])


def limited(batches: Batches, limit: int) -> Iterator[list[tuple[Any, ...]]]:
    """The first `limit` rows of `batches`, read no further."""
    left = limit
    for batch in batches:
        yield batch[:left]
        left -= len(batch)
        if left <= 0:
            return


def _unique(names: list[str]) -> list[str]:
    """Column names as object keys must differ: a repeated name gets _2, _3, ..."""
    seen: dict[str, int] = {}
    result = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        result.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return result
