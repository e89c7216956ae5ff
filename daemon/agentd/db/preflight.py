"""Checks before agentd writes to a database file: is it one, is it whole, is it agentd's, and not
from a newer agentd? Each refusal is a DatabaseUnusable whose one-line message names the file and
says what to do; the file is never changed. (Deep damage inside a whole file is SQLite's to find:
`PRAGMA quick_check` reads every page, too slow for every start.)
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agentd.errors import DatabaseUnusable

__all__ = ["check_file", "check_schema", "unusable"]

_MAGIC = b"SQLite format 3\x00"
_HEADER_BYTES = 100


def unusable(db_path: Path, problem: str) -> DatabaseUnusable:
    return DatabaseUnusable(
        f"the database {db_path} {problem}: move it away (or restore a backup) and start again, "
        "or point AGENTD_DB at another file; agentd leaves it as it is"
    )


def check_file(db_path: Path) -> None:
    """From the header alone: an SQLite file, and no shorter than its header says (truncated)."""
    try:
        with db_path.open("rb") as f:
            header = f.read(_HEADER_BYTES)
            size = f.seek(0, 2)
    except FileNotFoundError:
        return
    except IsADirectoryError:
        raise unusable(db_path, "is a directory") from None
    except OSError as e:
        raise unusable(db_path, f"cannot be read ({e.strerror})") from None
    if size == 0:
        return  # a new database
    if len(header) < _HEADER_BYTES or not header.startswith(_MAGIC):
        raise unusable(db_path, "is not an SQLite database (damaged, or another kind of file)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The page count is valid when "version valid for" matches the change counter.
    valid = header[92:96] == header[24:28]
    # A WAL or a hot rollback journal may still hold pages the file lacks: SQLite's recovery's.
    journals = (db_path.with_name(db_path.name + s) for s in ("-wal", "-journal"))
    pending = any(j.exists() and j.stat().st_size > 0 for j in journals)
    if valid and not pending and size < pages * page_size:
        raise unusable(db_path, f"is truncated ({size} of {pages * page_size} bytes)")


def check_schema(conn: sqlite3.Connection, db_path: Path, known_versions: set[int]) -> None:
    """An SQLite database of another program, or of a newer agentd, is refused, not migrated."""
    tables = {
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    }
    if not tables:
        return  # empty: a new database
    if "schema_migrations" not in tables:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise unusable(db_path, f"is not agentd's (it has tables {shown} and no schema_migrations)")
    try:
        rows = dict(conn.execute("SELECT version, name FROM schema_migrations"))
    except sqlite3.OperationalError:  # other columns: another program's table of that name
        rows = {0: ""}
    if rows and rows.get(1) != "0001_initial":
        raise unusable(db_path, "is not agentd's (its schema_migrations are another program's)")
    newer = sorted(set(rows) - known_versions)
    if newer:
        raise DatabaseUnusable(
            f"the database {db_path} has schema version {max(newer)}, newer than this agentd "
            f"knows (up to {max(known_versions)}): upgrade agentd to use it; it is left as it is"
        )
