"""Ids as they go to the server: bounded in size, and free of paths where the level hides them.

Every id-like column (`id` and each `*_id`: session_id, tool_id, message_id, parent_session_id,
agent_id) goes as it is stored, except a value that

- is longer than MAX_ID_BYTES (ids are made of agent-supplied strings, and a file operation's id
  holds its path: PostgreSQL's btree keys, which the server's primary keys and session indexes
  are, hold at most 2704 bytes a row, and one row over it fails its whole batch, for good),
- holds a NUL (PostgreSQL text cannot: dropping it could make two ids one), or is not text,
- starts with DIGEST_PREFIX (so that a stored id can never pass for another one's digest),
- or embeds a path at a content level that keeps paths home (privacy.path_ids).

Such a value goes as DIGEST_PREFIX + HMAC-SHA256(machine key, value) in hex. The same function
runs for every id column, so a row and the rows that name it (tools.session_id and sessions.id)
still meet on the server; and it depends only on the value and the machine's key
(identity.id_key), so a row pushed again lands on its earlier copy. The digest is keyed: a plain
hash of a path could be checked against guesses by anyone who reads the server.

The test runs in SQLite, inside the SELECT that reads the rows: only the rare value that needs a
digest calls into Python.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from typing import Any

__all__ = ["MAX_ID_BYTES", "DIGEST_PREFIX", "is_id_column", "digest", "register", "expression"]

MAX_ID_BYTES = 2048
DIGEST_PREFIX = "~h:"
_FUNCTION = "agentd_id_digest"


def is_id_column(name: str) -> bool:
    return name == "id" or name.endswith("_id")


def digest(key: bytes, value: Any) -> str:
    """The digest form of an id (of its UTF-8 bytes, or its bytes for a blob)."""
    data = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")
    return DIGEST_PREFIX + hmac.new(key, data, hashlib.sha256).hexdigest()


def register(conn: sqlite3.Connection, key: bytes) -> None:
    """Make `digest` callable from SQL on `conn` (what `expression` calls)."""
    conn.create_function(
        _FUNCTION, 1, lambda v: None if v is None else digest(key, v), deterministic=True
    )


def expression(column: str, always: bool = False) -> str:
    """SQL giving `column`'s value as it goes to the server; `always`: a digest whatever it is."""
    if always:
        return f"CASE WHEN {column} IS NULL THEN NULL ELSE {_FUNCTION}({column}) END"
    raw = f"CAST({column} AS BLOB)"
    return (
        f"CASE WHEN {column} IS NULL THEN NULL"
        f" WHEN typeof({column}) = 'blob' OR length({raw}) > {MAX_ID_BYTES}"
        f" OR instr({raw}, x'00') > 0 OR substr({column}, 1, {len(DIGEST_PREFIX)})"
        f" = '{DIGEST_PREFIX}' THEN {_FUNCTION}({column}) ELSE CAST({column} AS TEXT) END"
    )
