"""The PostgreSQL side: connecting, and the schema (numbered migrations, applied by `--init`).

The tables mirror the local ones (docs/schema.md) in a schema of their own, `agentd`, with two
more columns on every row: `machine_id` and `user_name`. The key is (machine_id, id): each
machine owns its copy of a row, so one machine's prune never deletes another's (docs/team.md).
Migration 2 adds the team reports as SQL functions (push/reports_sql.py).
"""

from __future__ import annotations

import re
import time
from typing import Any, NamedTuple
from urllib.parse import unquote

import psycopg
from psycopg import conninfo as pg_conninfo

from agentd.errors import ConnectFailed, SchemaMissing
from agentd.push.reports_sql import REPORTS_SQL, TEAM_SUMMARY_SQL

__all__ = [
    "SERVER_MIGRATIONS",
    "connect",
    "init",
    "check_schema",
    "describe",
    "parse",
    "server_columns",
]

CONNECT_TIMEOUT_S = 5


class ServerMigration(NamedTuple):
    version: int
    name: str
    sql: str


# Each data table's columns as its CREATE TABLE declares them (expected_columns reads them).
_DECLARED: dict[str, str] = {}


def _table(name: str, columns: str, extra: str = "") -> str:
    _DECLARED[name] = columns
    return f"""
CREATE TABLE agentd.{name} (
    machine_id text NOT NULL,
    user_name text,
{columns},
    PRIMARY KEY (machine_id, id)
);{extra}"""


_TABLES = (
    """
CREATE SCHEMA IF NOT EXISTS agentd;
-- One row per machine that pushed: who, and when it last did.
CREATE TABLE agentd.machines (
    machine_id text PRIMARY KEY,
    user_name text,
    hostname text,
    content_level text,
    first_push_at bigint,
    last_push_at bigint
);
-- Per machine and local table: the local change sequence pushed so far (`seq`, committed with
-- the rows it covers), and during a table's first copy the local rowid copied up to.
CREATE TABLE agentd.push_state (
    machine_id text NOT NULL,
    table_name text NOT NULL,
    seq bigint NOT NULL,
    copy_after bigint,
    rows_pushed bigint NOT NULL DEFAULT 0,
    pushed_at bigint,
    PRIMARY KEY (machine_id, table_name)
);"""
    + _table(
        "sessions",
        """    id text NOT NULL, source text, parent_session_id text, title text, project_path text,
    project_name text, model text, provider text, status text, permission_mode text,
    end_reason text, prompt_tokens bigint, completion_tokens bigint, cache_read_tokens bigint,
    cache_write_tokens bigint, reasoning_tokens bigint, cost double precision,
    message_count bigint, prompt_count bigint, tool_call_count bigint, created_at bigint,
    updated_at bigint, ended_at bigint, redactions bigint, git_branch text""",
        "\nCREATE INDEX sessions_created_at ON agentd.sessions (created_at);",
    )
    + _table(
        "messages",
        """    id text NOT NULL, session_id text, source text, role text, model text, provider text,
    agent_id text, prompt_tokens bigint, completion_tokens bigint, cache_read_tokens bigint,
    cache_write_tokens bigint, reasoning_tokens bigint, cost double precision,
    created_at bigint, completed_at bigint, redactions bigint""",
        "\nCREATE INDEX messages_session ON agentd.messages (machine_id, session_id);",
    )
    + _table(
        "tools",
        """    id text NOT NULL, session_id text, source text, message_id text, agent_id text,
    tool_name text, tool_input text, tool_output text, file_path text, success bigint,
    error_message text, exit_code bigint, duration_ms bigint, started_at bigint,
    ended_at bigint, created_at bigint, interrupted bigint, redactions bigint""",
        "\nCREATE INDEX tools_session ON agentd.tools (machine_id, session_id);"
        "\nCREATE INDEX tools_created_at ON agentd.tools (created_at);",
    )
    + _table(
        "file_operations",
        """    id text NOT NULL, session_id text, source text, tool_id text, file_path text,
    operation_type text, lines_added bigint, lines_removed bigint, created_at bigint,
    redactions bigint""",
        "\nCREATE INDEX file_operations_session ON agentd.file_operations (machine_id, session_id);"
        "\nCREATE INDEX file_operations_path ON agentd.file_operations (file_path, created_at);",
    )
    + _table(
        "session_errors",
        """    id text NOT NULL, session_id text, source text, error_type text, error_message text,
    created_at bigint, status_code bigint, redactions bigint""",
        "\nCREATE INDEX session_errors_created_at ON agentd.session_errors (created_at);",
    )
    + _table(
        "compaction_events",
        """    id text NOT NULL, session_id text, source text, trigger text, tokens_before bigint,
    tokens_after bigint, messages_before bigint, messages_after bigint, created_at bigint,
    redactions bigint""",
        "\nCREATE INDEX compaction_events_session ON agentd.compaction_events (machine_id, session_id);",
    )
    + _table(
        "events",
        """    id text NOT NULL, source text, kind text, session_id text, received_at bigint,
    payload text, redactions bigint, redaction_version bigint, content_level text""",
        "\nCREATE INDEX events_received_at ON agentd.events (received_at);",
    )
)

# A session's outcome beside its status (local migration 0009), each with the time it was set.
_SESSION_OUTCOME = """
ALTER TABLE agentd.sessions ADD COLUMN status_at bigint;
ALTER TABLE agentd.sessions ADD COLUMN outcome text;
ALTER TABLE agentd.sessions ADD COLUMN outcome_at bigint;
ALTER TABLE agentd.sessions ADD COLUMN last_error text;
ALTER TABLE agentd.sessions ADD COLUMN last_error_at bigint;
"""

SERVER_MIGRATIONS: tuple[ServerMigration, ...] = (
    ServerMigration(1, "0001_tables", _TABLES),
    ServerMigration(2, "0002_reports", REPORTS_SQL),
    ServerMigration(3, "0003_session_outcome", _SESSION_OUTCOME),
    # The local migration 0011 (pricing/, docs/usage.md): the cost columns travel with the rows.
    ServerMigration(
        4,
        "0004_usage",
        """
ALTER TABLE agentd.sessions ADD COLUMN computed_cost double precision,
    ADD COLUMN unpriced_messages bigint;
ALTER TABLE agentd.messages ADD COLUMN cache_write_5m_tokens bigint,
    ADD COLUMN cache_write_1h_tokens bigint, ADD COLUMN speed text,
    ADD COLUMN computed_cost double precision, ADD COLUMN cost_source text,
    ADD COLUMN idle_ms bigint;""",
    ),
    # A btree row holds at most 2704 bytes, and a path may be 4096 (or more, as an agent sends
    # it): one long path failed its machine's every push. The ids are bounded by the push
    # (push/ids.py); the path index becomes a hash index, which keys on a 4-byte hash of any
    # length and still finds a path by `file_path = ...`, the lookup it is there for. And
    # team_summary lists only the machines that pushed (reports_sql.TEAM_SUMMARY_SQL).
    ServerMigration(
        5,
        "0005_push_hardening",
        """
DROP INDEX agentd.file_operations_path;
CREATE INDEX file_operations_path ON agentd.file_operations USING hash (file_path);"""
        + TEAM_SUMMARY_SQL,
    ),
)
LATEST = SERVER_MIGRATIONS[-1].version

_RECORD = """
CREATE SCHEMA IF NOT EXISTS agentd;
CREATE TABLE IF NOT EXISTS agentd.schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at bigint NOT NULL
)"""


def parse(conninfo: str) -> dict[str, str]:
    """The connection string's parameters, or ConnectFailed saying what is wrong with it.

    libpq's parse errors quote the string (a password in it too): only their wording is kept.
    """
    try:
        return pg_conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as e:
        raise ConnectFailed(
            f"not a valid PostgreSQL connection string ({_unquoted(e)}; the string is not"
            " shown, as it may hold a password)"
        ) from None


def _uri_password(conninfo: str) -> str | None:
    """The password a URI's author wrote (`postgresql://user:PASSWORD@host`), taken as the text
    between the user's `:` and the last `@`: a `/` or `@` in it, not percent-encoded, makes
    libpq read it as a port, a database or a host, where describe() would show it."""
    scheme, sep, rest = conninfo.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        return None
    userinfo, at, _ = rest.rpartition("@")
    user, colon, password = userinfo.partition(":")
    return password if at and colon and password else None


def _secrets(conninfo: str, params: dict[str, str]) -> list[str]:
    """What must never be shown: the password libpq parsed, the one the URI's author meant, and
    the pieces libpq may have made of the latter (a port, a host), longest first."""
    found = {params.get("password") or ""}
    if meant := _uri_password(conninfo):
        found |= {meant, unquote(meant), *re.split(r"[/@]", meant)}
    return sorted((s for s in found if len(s) >= 2), key=len, reverse=True)


def _masked(conninfo: str) -> str:
    """The connection string with the password its author meant replaced by ***."""
    meant = _uri_password(conninfo)
    if meant is None:
        return conninfo
    scheme, _, rest = conninfo.partition("://")
    userinfo, _, after = rest.rpartition("@")
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{after}"


def describe(conninfo: str) -> str:
    """The server as the user may see it: the connection string without its password."""
    try:
        params = pg_conninfo.conninfo_to_dict(_masked(conninfo))
    except psycopg.ProgrammingError:
        return "(an invalid connection string)"
    params.pop("password", None)
    keys = ("host", "port", "dbname", "user")
    return " ".join(f"{k}={params[k]}" for k in keys if params.get(k)) or "(libpq defaults)"


def connect(conninfo: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    """Open a connection, or raise ConnectFailed with one line saying why."""
    params = parse(conninfo)
    secrets = _secrets(conninfo, params)
    params.setdefault("connect_timeout", str(CONNECT_TIMEOUT_S))
    params.setdefault("application_name", "agentd push")
    try:
        return psycopg.connect(pg_conninfo.make_conninfo(**params), autocommit=autocommit)
    except psycopg.OperationalError as e:
        text = _reason(e)
        for secret in secrets:  # libpq names hosts and users; a mistyped URL can put one there
            text = text.replace(secret, "***")
        auth = any(
            hint in text
            for hint in (
                "password authentication failed",
                "no password supplied",
                "role",  # role "x" does not exist
                "pg_hba.conf",
                "permission denied",
            )
        )
        raise ConnectFailed(
            f"cannot connect to PostgreSQL ({describe(conninfo)}): {text}", auth=auth
        ) from None


# libpq's own quoted tokens in its parse errors (missing "=" after ...); any other quoted text
# is the user's.
_LIBPQ_TOKENS = ("=", "[", "]", "@", "/", ":")


def _unquoted(error: Exception) -> str:
    """libpq's first line with every quoted piece of the input replaced by "…"."""
    parts = _first_line(error).split('"')
    for i in range(1, len(parts), 2):
        if i < len(parts) - 1 and parts[i] not in _LIBPQ_TOKENS:
            parts[i] = "…"
    text = '"'.join(parts)
    if len(parts) % 2 == 0:  # an unbalanced quote: drop what follows it
        text = text.rsplit('"', 1)[0].rstrip(": ")
    return text or "libpq cannot parse it"


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _reason(error: Exception) -> str:
    """libpq's message without its preamble: 'password authentication failed for user "x"'."""
    text = " ".join(str(error).split())
    for marker in ("FATAL: ", "failed: "):
        if marker in text:
            text = text.rsplit(marker, 1)[1]
    return text.strip() or type(error).__name__


def applied(conn: psycopg.Connection[Any]) -> dict[int, str]:
    row = conn.execute("SELECT to_regclass('agentd.schema_migrations')").fetchone()
    if not row or row[0] is None:
        return {}
    return dict(conn.execute("SELECT version, name FROM agentd.schema_migrations").fetchall())


def init(conninfo: str) -> tuple[list[str], int, list[str]]:
    """Apply the server migrations not yet recorded, each with its record in one transaction,
    then add back any column of the data tables that is missing (dropped by hand, say).

    Returns (names applied, version now, columns added back). Safe to run again and from
    several machines at once: an advisory lock makes them take turns.
    """
    conn = connect(conninfo)
    names: list[str] = []
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('agentd push --init'))")
            conn.execute(_RECORD)
            done = applied(conn)
            for migration in SERVER_MIGRATIONS:
                if migration.version in done:
                    continue
                conn.execute(migration.sql)  # type: ignore[arg-type]  # our own constant SQL
                conn.execute(
                    "INSERT INTO agentd.schema_migrations (version, name, applied_at)"
                    " VALUES (%s, %s, %s)",
                    (migration.version, migration.name, int(time.time() * 1000)),
                )
                names.append(migration.name)
            repaired = _repair_columns(conn, conninfo)
        return names, max([*done, *(m.version for m in SERVER_MIGRATIONS)]), repaired
    except psycopg.Error as e:
        raise ConnectFailed(f"--init failed on {describe(conninfo)}: {_first_line(e)}") from None
    finally:
        conn.close()


def expected_columns() -> dict[str, list[tuple[str, str]]]:
    """Each data table's columns and types as the migrations make them (NOT NULL aside)."""
    tables: dict[str, list[tuple[str, str]]] = {}
    for table, declared in _DECLARED.items():
        cols = [("machine_id", "text"), ("user_name", "text")]
        cols += [_column(c) for c in declared.split(",")]
        tables[table] = cols
    for migration in SERVER_MIGRATIONS:
        for table, body in re.findall(r"ALTER TABLE agentd\.(\w+)\s+(.*?);", migration.sql, re.S):
            tables[table] += [_column(c) for c in body.split("ADD COLUMN")[1:]]
    return tables


def _column(text: str) -> tuple[str, str]:
    name, kind = text.strip().rstrip(",").split(None, 1)
    return name, kind.removesuffix(" NOT NULL").strip()


def _repair_columns(conn: psycopg.Connection[Any], conninfo: str) -> list[str]:
    """Add back the columns a data table lacks; a missing key column cannot be, and says so."""
    added = []
    for table, columns in expected_columns().items():
        have = set(server_columns(conn, table))
        for name, kind in columns:
            if name in have:
                continue
            if name in ("machine_id", "id"):
                raise SchemaMissing(
                    f"agentd.{table} on {describe(conninfo)} lacks its key column {name}: drop"
                    " the table (and its agentd.schema_migrations rows) and run --init again"
                )
            conn.execute(
                f"ALTER TABLE agentd.{table} ADD COLUMN IF NOT EXISTS {name} {kind}"  # type: ignore[arg-type]
            )
            added.append(f"{table}.{name}")
    return added


def check_schema(conn: psycopg.Connection[Any], conninfo: str) -> None:
    """Raise SchemaMissing unless the server has every migration this agentd knows."""
    done = applied(conn)
    conn.rollback()
    missing = [m.name for m in SERVER_MIGRATIONS if m.version not in done]
    if not done:
        raise SchemaMissing(
            f"{describe(conninfo)} has no agentd tables yet: run `agentd push --init URL` once"
        )
    if missing:
        raise SchemaMissing(
            f"the agentd tables on {describe(conninfo)} are older than this agentd (missing "
            f"{', '.join(missing)}): run `agentd push --init URL` to upgrade them"
        )


def server_columns(conn: psycopg.Connection[Any], table: str) -> list[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = 'agentd' AND table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return [r[0] for r in rows]
