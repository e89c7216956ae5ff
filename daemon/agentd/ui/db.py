"""The dashboard's read-only connection to the agentd database, and its change detector.

`connect` is the one place the UI opens the database, through db/readonly.py (`mode=ro`, SQLite
refuses every write, plus `PRAGMA query_only`). The daemon keeps writing meanwhile (WAL): each
read sees a consistent snapshot.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agentd.db import readonly
from agentd.errors import UIError

__all__ = ["UIError", "connect", "columns", "Watcher"]


def connect(db_path: Path) -> sqlite3.Connection:
    """A read-only connection; rows come back as sqlite3.Row."""
    # check_same_thread=False: used by one request at a time, from the thread pool.
    conn = readonly.connect_existing(db_path, UIError, timeout=5.0, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    return conn


def columns(conn: sqlite3.Connection, table: str) -> set[str]:
    """The columns a table has: views use optional columns (e.g. `outcome`) when they exist."""
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


class Watcher:
    """Tells whether the database changed since the last look, for the live views.

    `PRAGMA data_version` changes when another connection commits: one cheap call, no table
    read. It is per connection, so the watcher keeps its own. A change of the file's WAL size
    would miss a checkpoint-only commit; data_version does not.
    """

    def __init__(self, db_path: Path) -> None:
        self._db_path = db_path
        self._conn: sqlite3.Connection | None = None
        self.version = 0  # counts the changes seen; what the page's event stream sends
        self._last: int | None = None

    def poll(self) -> bool:
        """True when the database changed since the previous poll."""
        try:
            if self._conn is None:
                self._conn = connect(self._db_path)
            (value,) = self._conn.execute("PRAGMA data_version").fetchone()
        except (sqlite3.Error, UIError):
            self.close()  # the file may have been replaced; reopen next time
            return False
        changed = self._last is not None and value != self._last
        self._last = value
        if changed:
            self.version += 1
        return changed

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
