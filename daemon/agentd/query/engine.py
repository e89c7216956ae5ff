"""`agentd query`: canned reports and read-only SQL over the agentd database.

The database is opened read-only by construction: a `mode=ro` connection (SQLite refuses every
write) with `PRAGMA query_only` (both from db/readonly.py), no room for attached databases, and an authorizer that refuses
ATTACH and state-changing PRAGMAs with a clear message. Nothing here filters SQL text. Rows are
streamed (`fetchmany`) straight to the output, so a result of any size runs in bounded memory.
The daemon need not run, and may be writing meanwhile: WAL readers see a consistent snapshot.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

import click
import msgspec

from agentd.db import readonly
from agentd.query.reports import (
    PERCENTILE_SQL,
    Report,
    nearest_rank,
    render,
)

__all__ = ["QueryError", "connect_readonly", "execute", "run_report", "write", "FORMATS"]

FORMATS = ("table", "json", "ndjson", "csv")
FETCH_ROWS = 1000
TABLE_SAMPLE_ROWS = 1000  # rows the table reads ahead to size its columns; later rows reuse them
MAX_CELL = 60
NUMERIC_KINDS = {"int", "pct", "cost", "duration"}
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


class QueryError(Exception):
    """A problem the user can fix; the CLI prints it as `Error: ...` and exits 1."""


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


class ReadOnlyConnection(sqlite3.Connection):
    guard: _Guard


def connect_readonly(db_path: Path) -> ReadOnlyConnection:
    """A connection that cannot change the database, whatever SQL it is given."""
    if not db_path.exists():
        raise QueryError(
            f"no database at {db_path}: nothing has been captured yet.\n"
            "Start capturing with `agentd start`, then use Claude Code or OpenCode as usual."
        )
    try:
        conn = readonly.connect(db_path, timeout=10.0, factory=ReadOnlyConnection)
    except sqlite3.Error as e:
        raise QueryError(f"cannot open {db_path}: {e}") from None
    conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    conn.guard = _Guard()
    conn.set_authorizer(conn.guard)
    # A Python callback now and then lets Ctrl-C interrupt a long statement (see _error).
    conn.set_progress_handler(lambda: 0, 100_000)
    return conn


def _error(conn: sqlite3.Connection, e: sqlite3.Error) -> Exception:
    message = str(e)
    refused = conn.guard.refused if isinstance(conn, ReadOnlyConnection) else None
    if message == "interrupted":
        return click.Abort()
    if refused:
        return QueryError(f"refused: {refused}: agentd query only reads")
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
    """Execute a report; its rows stream, unless percentiles must be looked up and sorted."""
    if not report.percentiles:
        return execute(conn, render(report.sql, params), params)
    conn.execute("BEGIN")  # one snapshot for the counts and the lookups, while the daemon writes
    try:
        columns, batches = execute(conn, render(report.sql, params), params)
        rows = [list(row) for batch in batches for row in batch]
        ascending = render(PERCENTILE_SQL, params)
        descending = ascending.replace("ORDER BY t.duration_ms", "ORDER BY t.duration_ms DESC")
        name, calls = columns.index("tool_name"), columns.index("calls")
        for row in rows:
            for column, fraction in report.percentiles:
                rank, lookup = nearest_rank(fraction, row[calls]), ascending
                if rank > (row[calls] + 1) // 2:  # nearer the top: count from there
                    rank, lookup = row[calls] - rank + 1, descending
                values = {**params, "tool_name": row[name], "rank": rank}
                try:
                    found = conn.execute(lookup, values).fetchone()
                except sqlite3.Error as e:
                    raise _error(conn, e) from None
                row[columns.index(column)] = found[0] if found else None
    finally:
        conn.execute("COMMIT")
    if report.sort_by:
        key = columns.index(report.sort_by)
        rows.sort(key=lambda row: row[name] or "")
        rows.sort(key=lambda row: -1 if row[key] is None else row[key], reverse=True)
    if params["limit"] >= 0:
        rows = rows[: params["limit"]]
    return columns, iter([[tuple(row) for row in rows]])


def _unique(names: list[str]) -> list[str]:
    """Column names as object keys must differ: a repeated name gets _2, _3, ..."""
    seen: dict[str, int] = {}
    result = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        result.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return result


# --- output ---------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    return base64.b64encode(value).decode() if isinstance(value, bytes) else value


# Each writer makes one string per batch and writes it at once: one system call per batch
# even when stdout is unbuffered (PYTHONUNBUFFERED).


def _write_csv(out: TextIO, columns: list[str], batches: Batches) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for batch in batches:
        if any(isinstance(v, bytes) for row in batch for v in row):
            batch = [tuple(_plain(v) for v in row) for row in batch]
        writer.writerows(batch)
        out.write(buffer.getvalue())
        buffer.seek(0)
        buffer.truncate()
    out.write(buffer.getvalue())


def _write_ndjson(out: TextIO, columns: list[str], batches: Batches) -> None:
    encoder = msgspec.json.Encoder()
    for batch in batches:
        objects = [dict(zip(columns, row, strict=True)) for row in batch]
        out.write(encoder.encode_lines(objects).decode())


def _write_json(out: TextIO, columns: list[str], batches: Batches) -> None:
    encoder = msgspec.json.Encoder()
    first = True
    for batch in batches:
        text = b",\n".join(encoder.encode(dict(zip(columns, row, strict=True))) for row in batch)
        out.write(("[\n" if first else ",\n") + text.decode())
        first = False
    out.write("[]\n" if first else "\n]\n")


def _duration(ms: float) -> str:
    if ms < 0:
        return f"{ms:.0f}ms"
    if ms < 1000:
        return f"{ms:.0f}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    minutes, seconds = divmod(int(ms // 1000), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def _cell(value: Any, kind: str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if kind == "time":
            return time.strftime("%Y-%m-%d %H:%M", time.localtime(value / 1000))
        if kind == "duration":
            return _duration(value)
        if kind == "cost":
            return f"{value:.4f}"
        if kind == "pct":
            return f"{value:.1f}%"
        return str(value)
    text = str(_plain(value))
    return text.translate(_FLAT) if any(c in text for c in "\n\r\t") else text


_FLAT = str.maketrans({"\n": " ", "\r": " ", "\t": " "})


def _fit(text: str, width: int, kind: str | None) -> str:
    if len(text) <= width:
        return text
    # Paths keep their end (the file name), everything else its beginning.
    return "…" + text[-(width - 1) :] if kind == "path" else text[: width - 1] + "…"


def _write_table(
    out: TextIO, columns: list[str], batches: Batches, kinds: list[str | None]
) -> None:
    batches = iter(batches)
    sample: list[tuple[Any, ...]] = []
    for batch in batches:
        sample.extend(batch)
        if len(sample) >= TABLE_SAMPLE_ROWS:
            break
    cells = [[_cell(v, k) for v, k in zip(row, kinds, strict=True)] for row in sample]
    widths = [
        min(MAX_CELL, max([len(name)] + [len(r[i]) for r in cells]))
        for i, name in enumerate(columns)
    ]
    right = [
        kind in NUMERIC_KINDS
        or (
            kind is None
            and any(row[i] is not None for row in sample)
            and all(isinstance(row[i], int | float | None) for row in sample)
        )
        for i, kind in enumerate(kinds)
    ]

    def line(texts: list[str]) -> str:
        padded = [
            t.rjust(w) if r else _fit(t, w, k).ljust(w)  # numbers overflow, never cut
            for t, w, k, r in zip(texts, widths, kinds, right, strict=True)
        ]
        return "  ".join(padded).rstrip() + "\n"

    head = [line(columns), line(["-" * w for w in widths])]
    out.write("".join(head + [line(texts) for texts in cells]))
    for batch in batches:  # the rest, in the widths the sample set
        out.write(
            "".join(line([_cell(v, k) for v, k in zip(row, kinds, strict=True)]) for row in batch)
        )


def write(
    out: TextIO,
    fmt: str,
    columns: list[str],
    batches: Batches,
    kinds: list[str | None] | None = None,
) -> int:
    """Write rows in `fmt`; return how many were written."""
    count = 0

    def counted(source: Batches) -> Iterator[list[tuple[Any, ...]]]:
        nonlocal count
        for batch in source:
            count += len(batch)
            yield batch

    if fmt == "table":
        _write_table(out, columns, counted(batches), kinds or [None] * len(columns))
    else:
        writers: dict[str, Callable[[TextIO, list[str], Batches], None]] = {
            "csv": _write_csv,
            "json": _write_json,
            "ndjson": _write_ndjson,
        }
        writers[fmt](out, columns, counted(batches))
    return count


def _limited(batches: Batches, limit: int) -> Iterator[list[tuple[Any, ...]]]:
    left = limit
    for batch in batches:
        yield batch[:left]
        left -= len(batch)
        if left <= 0:
            return


# --- the command ----------------------------------------------------------------------------
