"""The SQLite side of a push: what changed (the push_log that migration 0008's triggers fill),
the rows as they may leave the machine, and the push targets that keep the log trimmed.

The push reads through its own connection and writes only two small things: its target's row
in push_targets (which turns the triggers on) and the trim of push_log after a server commit.
Both are short transactions; the daemon's writer waits at most for one of them.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentd.db.store import connect_sync
from agentd.privacy import apply_to_rows, path_ids
from agentd.push import ids
from agentd.rows import Row

__all__ = ["TABLES", "RAW_TABLE", "Local", "Change"]

# Parents first: a reader of the server sees a session before its tools.
TABLES = ("sessions", "messages", "tools", "file_operations", "session_errors", "compaction_events")
RAW_TABLE = "events"

Change = tuple[int, str, str, int]  # seq, table, row id, deleted
TRIM_BATCH = 20_000


def dropped_columns(table: str, columns: list[str], level: str) -> set[str]:
    """The columns `level` does not let leave the machine, as privacy.apply_to_rows decides."""
    row = Row(table, dict.fromkeys(columns, "x"))
    apply_to_rows([row], level)
    return set(columns) - set(row.values)


class Local:
    """One read connection to the local database, plus the push's own small writes."""

    def __init__(self, db_path: Path, id_key: bytes | None = None) -> None:
        if not db_path.exists():
            raise FileNotFoundError(db_path)
        # Applies any pending migration (0008 adds the log), as the daemon would at start.
        connect_sync(db_path).close()
        self.conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA busy_timeout = 2000")
        # Without the machine's key (a benchmark's baseline), digests are of a throwaway one.
        ids.register(self.conn, id_key if id_key is not None else os.urandom(32))
        self._types = {
            table: [(r[1], (r[2] or "").upper()) for r in self.conn.execute(
                f"PRAGMA table_info({table})"
            )]
            for table in (*TABLES, RAW_TABLE)
        }  # fmt: skip

    def close(self) -> None:
        self.conn.close()

    def columns(self, table: str) -> list[str]:
        return [name for name, _ in self._types[table]]

    def select_list(self, table: str, level: str) -> str:
        """The SELECT list of a table's rows as PostgreSQL will take them.

        SQLite stores any value in any column; the server's columns are typed. A value of
        another type than its column's becomes NULL here (in C, per row, cheaper than checking
        in Python), NUL characters, which PostgreSQL text cannot hold, are dropped, the
        columns the push's content level withholds are sent as NULL, and ids go in the form
        push/ids.py gives them.
        """
        dropped = dropped_columns(table, self.columns(table), level)
        hidden = path_ids(table, level)
        parts = []
        for name, kind in self._types[table]:
            if name in dropped:
                parts.append(f"NULL AS {name}")
            elif ids.is_id_column(name):
                parts.append(ids.expression(name, always=name in hidden))
            elif kind == "INTEGER":
                parts.append(
                    f"CASE typeof({name}) WHEN 'integer' THEN {name}"
                    f" WHEN 'real' THEN CAST({name} AS INTEGER) END"
                )
            elif kind == "REAL":
                parts.append(f"CASE WHEN typeof({name}) IN ('integer', 'real') THEN {name} END")
            else:
                parts.append(
                    f"CASE typeof({name}) WHEN 'blob' THEN NULL"
                    f" ELSE replace({name}, char(0), '') END"
                )
        return ", ".join(parts)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction: everything read inside sees the same committed state."""
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")

    def last_seq(self) -> int:
        row = self.conn.execute("SELECT max(seq) FROM push_log").fetchone()
        return int(row[0] or 0)

    def changes(self, after: int, limit: int) -> list[Change]:
        return self.conn.execute(
            "SELECT seq, tbl, row_id, deleted FROM push_log WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        ).fetchall()

    def rows_after(self, table: str, select: str, rowid: int, limit: int) -> list[tuple[Any, ...]]:
        """Rows in rowid order after `rowid`, each as (rowid, *columns)."""
        return self.conn.execute(
            f"SELECT rowid, {select} FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (rowid, limit),
        ).fetchall()

    # Ids are bound as parameters, never through JSON (json_each): SQLite's JSON functions cut a
    # string at a NUL, and an id is anything a payload said (a NUL in one made the push update no
    # row and delete another's); a non-text id cannot be JSON at all.
    def rows_by_id(self, table: str, select: str, row_ids: list[Any]) -> list[tuple[Any, ...]]:
        """The rows of these (local) ids, each as (local id, *columns)."""
        rows: list[tuple[Any, ...]] = []
        for chunk in _chunks(row_ids):
            marks = ", ".join("?" * len(chunk))
            rows += self.conn.execute(
                f"SELECT id, {select} FROM {table} WHERE id IN ({marks})", chunk
            ).fetchall()
        return rows

    def wire_ids(self, table: str, level: str, row_ids: list[Any]) -> list[Any]:
        """These local ids of `table` as the server knows them (select_list's form), in order."""
        expr = ids.expression("value", always="id" in path_ids(table, level))
        wired: list[Any] = []
        for chunk in _chunks(row_ids):
            values = ", ".join(["(?)"] * len(chunk))
            wired += [
                r[0]
                for r in self.conn.execute(
                    f"SELECT {expr} FROM (SELECT column1 AS value FROM (VALUES {values}))", chunk
                )
            ]
        return wired

    # The push's writes -------------------------------------------------------------------

    def is_registered(self, target: str) -> bool:
        row = self.conn.execute("SELECT 1 FROM push_targets WHERE target = ?", (target,))
        return row.fetchone() is not None

    def register(self, target: str) -> None:
        """Turn the change log on for `target` (from now on every change is logged)."""
        self.conn.execute(
            "INSERT OR IGNORE INTO push_targets (target, seq, registered_at) VALUES (?, 0, ?)",
            (target, int(time.time() * 1000)),
        )

    def acknowledge(self, target: str, seq: int) -> None:
        """Record what the server has committed, and trim the log below every target's mark.

        The trim goes in short transactions of at most TRIM_BATCH entries, so that the daemon's
        writer never waits long behind it (after a large prune the log can hold millions).
        Best effort: if the database is busy, the next push trims (the server's watermark, not
        this row, is what a push trusts).
        """
        try:
            self.conn.execute(
                "UPDATE push_targets SET seq = max(seq, ?), pushed_at = ? WHERE target = ?",
                (seq, int(time.time() * 1000), target),
            )
            while True:
                # `<`, not `<=`: the entry at the mark stays, so max(seq) + 1 never goes back.
                cur = self.conn.execute(
                    "DELETE FROM push_log WHERE seq < (SELECT min(seq) FROM push_targets)"
                    " AND seq <= (SELECT min(seq) FROM push_log) + ?",
                    (TRIM_BATCH,),
                )
                if cur.rowcount < TRIM_BATCH:
                    break
        except sqlite3.OperationalError:
            pass


def _chunks(values: list[Any], size: int = 500) -> list[list[Any]]:
    """Pieces of at most `size`: under SQLite's bound-parameter limit."""
    return [values[i : i + size] for i in range(0, len(values), size)]
