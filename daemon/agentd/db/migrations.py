"""Schema migrations: numbered, named, plain SQL, each applied atomically with its record.

An old database is upgraded in place, never dropped. Append new migrations at the end of
MIGRATIONS; never edit one that has shipped. docs/schema.md describes every table and column.
"""

from __future__ import annotations

import sqlite3
import time
from typing import NamedTuple

from agentd.db import file_rollup, query_rollup, rollup, session_totals

__all__ = ["Migration", "MIGRATIONS", "migrate", "applied_versions"]


class Migration(NamedTuple):
    version: int
    name: str
    sql: str


_INITIAL = """
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    parent_session_id TEXT,
    title TEXT,
    project_path TEXT,
    project_name TEXT,
    model TEXT,
    provider TEXT,
    status TEXT,
    permission_mode TEXT,
    end_reason TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cache_read_tokens INTEGER,
    cache_write_tokens INTEGER,
    reasoning_tokens INTEGER,
    cost REAL,
    message_count INTEGER,
    prompt_count INTEGER,
    tool_call_count INTEGER,
    created_at INTEGER,
    updated_at INTEGER,
    ended_at INTEGER
);
CREATE TABLE tools (
    id TEXT PRIMARY KEY,
    session_id TEXT,
    source TEXT NOT NULL,
    message_id TEXT,
    agent_id TEXT,
    tool_name TEXT,
    tool_input TEXT,
    tool_output TEXT,
    file_path TEXT,
    success INTEGER,
    error_message TEXT,
    exit_code INTEGER,
    duration_ms INTEGER,
    started_at INTEGER,
    ended_at INTEGER,
    created_at INTEGER
);
CREATE TABLE file_operations (
    id TEXT PRIMARY KEY,
    session_id TEXT,
    source TEXT NOT NULL,
    tool_id TEXT,
    file_path TEXT,
    operation_type TEXT,
    lines_added INTEGER,
    lines_removed INTEGER,
    created_at INTEGER
);
CREATE TABLE session_errors (
    id TEXT PRIMARY KEY,
    session_id TEXT,
    source TEXT NOT NULL,
    error_type TEXT,
    error_message TEXT,
    created_at INTEGER
);
CREATE TABLE compaction_events (
    id TEXT PRIMARY KEY,
    session_id TEXT,
    source TEXT NOT NULL,
    trigger TEXT,
    tokens_before INTEGER,
    tokens_after INTEGER,
    messages_before INTEGER,
    messages_after INTEGER,
    created_at INTEGER
);
CREATE TABLE events (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    kind TEXT,
    session_id TEXT,
    received_at INTEGER NOT NULL,
    payload TEXT NOT NULL
);
"""

_MESSAGES_AND_INDEXES = """
-- One row per agent message: the per-message facts (tokens, cost) that session totals are
-- summed from, so a message reported many times is counted once.
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    session_id TEXT,
    source TEXT NOT NULL,
    role TEXT,
    model TEXT,
    provider TEXT,
    agent_id TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cache_read_tokens INTEGER,
    cache_write_tokens INTEGER,
    reasoning_tokens INTEGER,
    cost REAL,
    created_at INTEGER,
    completed_at INTEGER
);
ALTER TABLE tools ADD COLUMN interrupted INTEGER;
ALTER TABLE session_errors ADD COLUMN status_code INTEGER;

CREATE INDEX sessions_created_at ON sessions (created_at);
CREATE INDEX sessions_project_path ON sessions (project_path);
CREATE INDEX sessions_parent ON sessions (parent_session_id);
CREATE INDEX messages_session ON messages (session_id);
CREATE INDEX tools_session ON tools (session_id);
CREATE INDEX tools_name_created ON tools (tool_name, created_at);
CREATE INDEX tools_created_at ON tools (created_at);
CREATE INDEX tools_file_path ON tools (file_path) WHERE file_path IS NOT NULL;
CREATE INDEX file_operations_session ON file_operations (session_id);
CREATE INDEX file_operations_path ON file_operations (file_path, operation_type);
CREATE INDEX file_operations_created_at ON file_operations (created_at);
CREATE INDEX session_errors_session ON session_errors (session_id);
CREATE INDEX session_errors_created_at ON session_errors (created_at);
CREATE INDEX compaction_events_session ON compaction_events (session_id, created_at);
CREATE INDEX events_session ON events (session_id);
CREATE INDEX events_received_at ON events (received_at);
CREATE INDEX events_kind ON events (source, kind);
"""

_PRIVACY = """
-- How many secrets were redacted from each row (docs/privacy.md), and for the raw log, under
-- which rule set version and at which content level its payload was stored.
ALTER TABLE sessions ADD COLUMN redactions INTEGER;
ALTER TABLE messages ADD COLUMN redactions INTEGER;
ALTER TABLE tools ADD COLUMN redactions INTEGER;
ALTER TABLE file_operations ADD COLUMN redactions INTEGER;
ALTER TABLE session_errors ADD COLUMN redactions INTEGER;
ALTER TABLE compaction_events ADD COLUMN redactions INTEGER;
ALTER TABLE events ADD COLUMN redactions INTEGER;
ALTER TABLE events ADD COLUMN redaction_version INTEGER;
ALTER TABLE events ADD COLUMN content_level TEXT;
"""

_PUSH_LOG = """
-- `agentd push` (push/, docs/team.md): every change to a pushed table, in commit order, so a
-- push can send exactly what changed since its watermark (rows are merged in place, so their
-- rowid says nothing about updates). The triggers do nothing until a push target is registered:
-- a machine that never pushes pays one EXISTS lookup per written row, and its log stays empty.
-- A push trims the log up to the lowest watermark of its targets, keeping that last entry, so
-- `seq` (max + 1) only ever grows.
CREATE TABLE push_log (
    seq INTEGER PRIMARY KEY,
    tbl TEXT NOT NULL,
    row_id TEXT NOT NULL,
    deleted INTEGER NOT NULL
);
CREATE TABLE push_targets (
    target TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    registered_at INTEGER NOT NULL,
    pushed_at INTEGER
);
CREATE TRIGGER push_log_sessions_insert AFTER INSERT ON sessions WHEN EXISTS (SELECT 1 FROM push_targets)
    BEGIN INSERT INTO push_log (tbl, row_id, deleted) VALUES ('sessions', NEW.id, 0); END;
CREATE TRIGGER push_log_sessions_update AFTER UPDATE ON sessions WHEN EXISTS (SELECT 1 FROM push_targets)
    BEGIN INSERT INTO push_log (tbl, row_id, deleted) VALUES ('sessions', NEW.id, 0); END;
CREATE TRIGGER push_log_sessions_delete AFTER DELETE ON sessions WHEN EXISTS (SELECT 1 FROM push_targets)
    BEGIN INSERT INTO push_log (tbl, row_id, deleted) VALUES ('sessions', OLD.id, 1); END;
CREATE TRIGGER push_log_messages_insert AFTER INSERT ON messages WHEN EXISTS (SELECT 1 FROM push_targets)
    BEGIN INSERT INTO push_log (tbl, row_id, deleted) VALUES ('messages', NEW.id, 0); END;
CREATE TRIGGER push_log_messages_update AFTER UPDATE ON messages WHEN EXISTS (SELECT 1 FROM push_targets)
    BEGIN INSERT INTO push_log (tbl, row_id, deleted) VALUES ('messages', NEW.id, 0); END;
CREATE TRIGGER push_log_messages_delete AFTER DELETE ON messages WHEN EXISTS (SELECT 1 FROM push_targets)
    BEGIN INSERT INTO push_log (tbl, row_id, deleted) VALUES ('messages', OLD.id, 1); END;
CREATE TRIGGER push_log_tools_insert AFTER INSERT ON tools WHEN EXISTS (SELECT 1 FROM push_targets)
    BEGIN INSERT INTO push_log (tbl, row_id, deleted) VALUES ('tools', NEW.id, 0); END;
CREATE TRIGGER push_log_tools_update AFTER UPDATE ON tools WHEN EXISTS (SELECT 1 FROM push_targets)
    BEGIN INSERT INTO push_log (tbl, row_id, deleted) VALUES ('tools', NEW.id, 0); END;
CREATE TRIGGER push_log_tools_delete AFTER DELETE ON tools WHEN EXISTS (SELECT 1 FROM push_targets)
    BEGIN INSERT INTO push_log (tbl, row_id, deleted) VALUES ('tools', OLD.id, 1); END;
CREATE TRIGGER push_log_file_operations_insert AFTER INSERT ON file_operations WHEN EXISTS (SELECT 1 FROM push_targets)
    BEGIN INSERT INTO push_log (tbl, row_id, deleted) VALUES ('file_operations', NEW.id, 0); END;
CREATE TRIGGER push_log_file_operations_update AFTER UPDATE ON file_operations WHEN EXISTS (SELECT 1 FROM push_targets)
    BEGIN INSERT INTO push_log (tbl, row_id, deleted) VALUES ('file_operations', NEW.id, 0); END;
CREATE TRIGGER push_log_file_operations_delete AFTER DELETE ON file_operations WHEN EXISTS (SELECT 1 FROM push_targets)
    BEGIN INSERT INTO push_log (tbl, row_id, deleted) VALUES ('file_operations', OLD.id, 1); END;
CREATE TRIGGER push_log_session_errors_insert AFTER INSERT ON session_errors WHEN EXISTS (SELECT 1 FROM push_targets)
    BEGIN INSERT INTO push_log (tbl, row_id, deleted) VALUES ('session_errors', NEW.id, 0); END;
CREATE TRIGGER push_log_session_errors_update AFTER UPDATE ON session_errors WHEN EXISTS (SELECT 1 FROM push_targets)
    BEGIN INSERT INTO push_log (tbl, row_id, deleted) VALUES ('session_errors', NEW.id, 0); END;
CREATE TRIGGER push_log_session_errors_delete AFTER DELETE ON session_errors WHEN EXISTS (SELECT 1 FROM push_targets)
    BEGIN INSERT INTO push_log (tbl, row_id, deleted) VALUES ('session_errors', OLD.id, 1); END;
CREATE TRIGGER push_log_compaction_events_insert AFTER INSERT ON compaction_events WHEN EXISTS (SELECT 1 FROM push_targets)
    BEGIN INSERT INTO push_log (tbl, row_id, deleted) VALUES ('compaction_events', NEW.id, 0); END;
CREATE TRIGGER push_log_compaction_events_update AFTER UPDATE ON compaction_events WHEN EXISTS (SELECT 1 FROM push_targets)
    BEGIN INSERT INTO push_log (tbl, row_id, deleted) VALUES ('compaction_events', NEW.id, 0); END;
CREATE TRIGGER push_log_compaction_events_delete AFTER DELETE ON compaction_events WHEN EXISTS (SELECT 1 FROM push_targets)
    BEGIN INSERT INTO push_log (tbl, row_id, deleted) VALUES ('compaction_events', OLD.id, 1); END;
CREATE TRIGGER push_log_events_insert AFTER INSERT ON events WHEN EXISTS (SELECT 1 FROM push_targets)
    BEGIN INSERT INTO push_log (tbl, row_id, deleted) VALUES ('events', NEW.id, 0); END;
CREATE TRIGGER push_log_events_update AFTER UPDATE ON events WHEN EXISTS (SELECT 1 FROM push_targets)
    BEGIN INSERT INTO push_log (tbl, row_id, deleted) VALUES ('events', NEW.id, 0); END;
CREATE TRIGGER push_log_events_delete AFTER DELETE ON events WHEN EXISTS (SELECT 1 FROM push_targets)
    BEGIN INSERT INTO push_log (tbl, row_id, deleted) VALUES ('events', OLD.id, 1); END;
"""

# usage_hourly's sums: column -> its value for one message row (`r` stands for NEW or OLD).
_COST = "coalesce(CASE r.cost_source WHEN 'agent' THEN r.cost WHEN 'computed' THEN r.computed_cost END, 0)"
# A response after an idle gap (in its thread) longer than the 5-minute cache lifetime writes
# its context again.
_IDLE = "r.idle_ms >= 300000 AND r.cache_write_tokens > 0"
_ROLLUP_SUMS = {
    "messages": "1",
    "responses": "r.role IS 'assistant'",
    **{
        c: f"coalesce(r.{c}, 0)"
        for c in (
            "prompt_tokens",
            "completion_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "cache_write_5m_tokens",
            "cache_write_1h_tokens",
            "reasoning_tokens",
        )
    },  # fmt: skip
    "cost": _COST,
    "unpriced": "r.cost_source IS 'unknown'",
    "idle_rebuilds": f"coalesce({_IDLE}, 0)",
    "idle_rebuild_tokens": f"CASE WHEN {_IDLE} THEN r.cache_write_tokens ELSE 0 END",
    "idle_rebuild_cost": f"CASE WHEN {_IDLE} THEN {_COST} ELSE 0 END",
}


def _rollup(row: str, sign: str) -> str:
    """One trigger statement: add (+) or take out (-) message `row` (NEW / OLD) in its bucket."""
    values = ", ".join(f"({e})".replace("r.", f"{row}.") for e in _ROLLUP_SUMS.values())
    last = f"{row}.created_at" if sign == "+" else "NULL"
    sets = ", ".join(f"{c} = {c} {sign} excluded.{c}" for c in _ROLLUP_SUMS)
    if sign == "+":
        sets += ", last_at = max(coalesce(last_at, 0), excluded.last_at)"
    return (
        f"INSERT INTO usage_hourly (hour, session_id, source, model, agent_id,"
        f" {', '.join(_ROLLUP_SUMS)}, last_at)\n"
        f"SELECT {row}.created_at / 3600000 * 3600000, coalesce({row}.session_id, ''), {row}.source,"
        f" coalesce({row}.model, ''), coalesce({row}.agent_id, ''), {values}, {last}\n"
        f"WHERE {row}.created_at IS NOT NULL\n"
        f"ON CONFLICT (hour, session_id, model, agent_id) DO UPDATE SET {sets};\n"
    )


_USAGE = (
    """
-- Usage and cost (pricing/, docs/usage.md). `messages.cost` stays the agent's own figure;
-- `computed_cost` is priced from the message's tokens at its own time (NULL: no known price),
-- and `cost_source` says which of the two a report uses: `agent`, `computed` or `unknown`.
-- Claude reports cache writes by lifetime (5 minutes, 1 hour), priced apart.
ALTER TABLE messages ADD COLUMN cache_write_5m_tokens INTEGER;
ALTER TABLE messages ADD COLUMN cache_write_1h_tokens INTEGER;
ALTER TABLE messages ADD COLUMN speed TEXT;  -- Claude's usage.speed: `fast` mode is priced higher
ALTER TABLE messages ADD COLUMN computed_cost REAL;
ALTER TABLE messages ADD COLUMN cost_source TEXT;
-- For a response: milliseconds since the previous response of the same thread (the session's
-- main thread, or one subagent: each has its own prompt cache), when it was first stored.
-- Both capture paths store a thread's responses in order, so live capture and import agree.
ALTER TABLE messages ADD COLUMN idle_ms INTEGER;
-- Messages stored before pricing: the agent's figure, where it gave one, is all there is.
UPDATE messages SET cost_source = 'agent' WHERE cost > 0;
-- Replaces (session_id), its prefix: finds a thread's previous response in one step.
DROP INDEX messages_session;
CREATE INDEX messages_thread ON messages (session_id, agent_id, created_at);
CREATE TRIGGER messages_idle AFTER INSERT ON messages
    WHEN NEW.role = 'assistant' AND NEW.created_at IS NOT NULL
    BEGIN UPDATE messages SET idle_ms = NEW.created_at - (
        SELECT p.created_at FROM messages p
        WHERE p.session_id = NEW.session_id AND p.agent_id IS NEW.agent_id
          AND p.created_at < NEW.created_at AND p.role = 'assistant'
        ORDER BY p.created_at DESC LIMIT 1)
    WHERE id = NEW.id; END;
-- A response seen again with an earlier start (its first block read later) is measured again.
CREATE TRIGGER messages_idle_moved AFTER UPDATE OF created_at ON messages
    WHEN NEW.role = 'assistant' AND NEW.created_at IS NOT OLD.created_at
    BEGIN UPDATE messages SET idle_ms = NEW.created_at - (
        SELECT p.created_at FROM messages p
        WHERE p.session_id = NEW.session_id AND p.agent_id IS NEW.agent_id
          AND p.created_at < NEW.created_at AND p.role = 'assistant'
        ORDER BY p.created_at DESC LIMIT 1)
    WHERE id = NEW.id; END;
-- The session's sum of its messages' computed costs and the count of messages whose cost is
-- unknown, kept by the triggers below: the old and new value of each written message row,
-- in the same transaction, so a replayed message (same values) changes nothing.
ALTER TABLE sessions ADD COLUMN computed_cost REAL;
ALTER TABLE sessions ADD COLUMN unpriced_messages INTEGER;
CREATE TRIGGER usage_messages_insert AFTER INSERT ON messages
    WHEN NEW.computed_cost IS NOT NULL OR NEW.cost_source IS 'unknown'
    BEGIN UPDATE sessions SET
        computed_cost = CASE WHEN NEW.computed_cost IS NULL THEN computed_cost
            ELSE coalesce(computed_cost, 0) + NEW.computed_cost END,
        unpriced_messages = CASE WHEN NEW.cost_source IS 'unknown'
            THEN coalesce(unpriced_messages, 0) + 1 ELSE unpriced_messages END
    WHERE id = NEW.session_id; END;
CREATE TRIGGER usage_messages_update AFTER UPDATE OF computed_cost, cost_source ON messages
    WHEN NEW.computed_cost IS NOT OLD.computed_cost OR NEW.cost_source IS NOT OLD.cost_source
    BEGIN UPDATE sessions SET
        computed_cost = CASE WHEN NEW.computed_cost IS NULL AND OLD.computed_cost IS NULL THEN computed_cost
            ELSE coalesce(computed_cost, 0) + coalesce(NEW.computed_cost, 0) - coalesce(OLD.computed_cost, 0) END,
        unpriced_messages = CASE WHEN (NEW.cost_source IS 'unknown') = (OLD.cost_source IS 'unknown')
            THEN unpriced_messages
            ELSE coalesce(unpriced_messages, 0) + (NEW.cost_source IS 'unknown') - (OLD.cost_source IS 'unknown') END
    WHERE id = NEW.session_id; END;
CREATE TRIGGER usage_messages_delete AFTER DELETE ON messages
    WHEN OLD.computed_cost IS NOT NULL OR OLD.cost_source IS 'unknown'
    BEGIN UPDATE sessions SET
        computed_cost = computed_cost - coalesce(OLD.computed_cost, 0),
        unpriced_messages = unpriced_messages - (OLD.cost_source IS 'unknown')
    WHERE id = OLD.session_id; END;
-- `agentd query usage / blocks / cache` (query/usage_reports.py) read this hourly rollup of
-- `messages`, never the messages themselves: a month is a few thousand rollup rows however many
-- messages it had. The triggers keep it exact: each written message row takes its old values
-- out of its (old) bucket and puts its new ones in, in the same transaction. Hours are UTC
-- epoch hours, so a local day or week is whole hours (for whole-hour time zones).
CREATE TABLE usage_hourly (
    hour INTEGER NOT NULL,
    session_id TEXT NOT NULL,
    source TEXT NOT NULL,
    model TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    messages INTEGER NOT NULL,
    responses INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    cache_write_5m_tokens INTEGER NOT NULL,
    cache_write_1h_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cost REAL NOT NULL,
    unpriced INTEGER NOT NULL,
    idle_rebuilds INTEGER NOT NULL,
    idle_rebuild_tokens INTEGER NOT NULL,
    idle_rebuild_cost REAL NOT NULL,
    last_at INTEGER,
    PRIMARY KEY (hour, session_id, model, agent_id)
);
CREATE INDEX usage_hourly_session ON usage_hourly (session_id, hour);
"""
    + "INSERT INTO usage_hourly (hour, session_id, source, model, agent_id, "
    + ", ".join(_ROLLUP_SUMS)
    + ", last_at)\nSELECT created_at / 3600000 * 3600000, coalesce(session_id, ''), min(source),"
    " coalesce(model, ''), coalesce(agent_id, ''), "
    + ", ".join(f"sum({e})".replace("r.", "") for e in _ROLLUP_SUMS.values())
    + ", max(created_at)\nFROM messages WHERE created_at IS NOT NULL GROUP BY 1, 2, 4, 5;\n"
    + """"""
    + "".join(
        f"CREATE TRIGGER usage_hourly_{when.lower()} AFTER {when} ON messages BEGIN\n{body}END;\n"
        for when, body in (
            ("INSERT", _rollup("NEW", "+")),
            ("UPDATE", _rollup("OLD", "-") + _rollup("NEW", "+")),
            ("DELETE", _rollup("OLD", "-")),
        )
    )
    + """
-- `agentd statusline` samples (Claude Code's statusLine stdin), copied out of the raw log
-- (`events`, source `claude_statusline`) as they are stored: rate limits, context, cost.
-- Claude sends `resets_at` in epoch seconds; stored here in epoch ms like every time.
CREATE TABLE statusline_samples (
    event_id TEXT PRIMARY KEY,
    session_id TEXT,
    received_at INTEGER NOT NULL,
    model TEXT,
    context_used_pct REAL,
    context_window_size INTEGER,
    total_cost_usd REAL,
    five_hour_used_pct REAL,
    five_hour_resets_at INTEGER,
    seven_day_used_pct REAL,
    seven_day_resets_at INTEGER
);
CREATE INDEX statusline_samples_session ON statusline_samples (session_id, received_at);
CREATE INDEX statusline_samples_time ON statusline_samples (received_at);
CREATE TRIGGER usage_statusline_sample AFTER INSERT ON events WHEN NEW.source = 'claude_statusline'
    AND json_valid(NEW.payload)
    BEGIN INSERT OR IGNORE INTO statusline_samples VALUES (
        NEW.id, NEW.session_id, NEW.received_at,
        coalesce(json_extract(NEW.payload, '$.model.id'), json_extract(NEW.payload, '$.model.display_name')),
        json_extract(NEW.payload, '$.context_window.used_percentage'),
        json_extract(NEW.payload, '$.context_window.context_window_size'),
        json_extract(NEW.payload, '$.cost.total_cost_usd'),
        json_extract(NEW.payload, '$.rate_limits.five_hour.used_percentage'),
        CAST(json_extract(NEW.payload, '$.rate_limits.five_hour.resets_at') * 1000 AS INTEGER),
        json_extract(NEW.payload, '$.rate_limits.seven_day.used_percentage'),
        CAST(json_extract(NEW.payload, '$.rate_limits.seven_day.resets_at') * 1000 AS INTEGER));
    END;
CREATE TRIGGER usage_statusline_sample_delete AFTER DELETE ON events WHEN OLD.source = 'claude_statusline'
    BEGIN DELETE FROM statusline_samples WHERE event_id = OLD.id; END;
"""
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "0001_initial", _INITIAL),
    Migration(2, "0002_messages_and_indexes", _MESSAGES_AND_INDEXES),
    Migration(
        3,
        "0003_query_indexes",
        """
-- Covering indexes for `agentd query` (query/reports.py): a report reads index entries, never the
-- wide tool rows (input, output). bench/query times every report on a million tool rows.
CREATE INDEX tools_query_name
    ON tools (tool_name, duration_ms, success, source, created_at, session_id);
CREATE INDEX tools_query_session
    ON tools (session_id, created_at, tool_name, success, duration_ms, source, error_message);
CREATE INDEX tools_query_failed
    ON tools (tool_name, error_message, success, created_at, source, session_id)
    WHERE success = 0;
CREATE INDEX file_operations_query_path ON file_operations
    (file_path, operation_type, lines_added, lines_removed, session_id, source, created_at);
CREATE INDEX file_operations_query_session
    ON file_operations (session_id, created_at, operation_type, file_path);
""",
    ),
    Migration(4, "0004_privacy", _PRIVACY),
    Migration(
        5,
        "0005_drop_prefix_indexes",
        """
-- Each is a leading prefix of a covering index of 0003, which serves the same lookups; every
-- index is maintained on every write, so these only cost.
DROP INDEX tools_session;
DROP INDEX file_operations_session;
DROP INDEX file_operations_path;
""",
    ),
    Migration(
        6,
        "0006_sessions_git_branch",
        "ALTER TABLE sessions ADD COLUMN git_branch TEXT;  -- from Claude transcripts (gitBranch)\n",
    ),
    Migration(
        7,
        "0007_ui_time_index",
        """
-- `agentd ui` (ui/views.py) reads tool calls by time window: this covering index serves those
-- reads as one contiguous range. It replaces tools_created_at, its leading prefix, so writes
-- keep the same number of indexes. bench/ui times the views on a million tool rows.
CREATE INDEX tools_ui_time
    ON tools (created_at, success, source, tool_name, duration_ms, session_id);
DROP INDEX tools_created_at;
""",
    ),
    Migration(8, "0008_push_log", _PUSH_LOG),
    Migration(
        9,
        "0009_session_outcome",
        """
-- Whether a session went well, beside what it is doing: outcome (ok, error, interrupted; NULL
-- while unknown) and the last error, readable without a join. status, outcome and last_error
-- follow the events' own time (rows.py MERGE_POLICY "newest by"): the *_at columns say when each
-- was set. Claude's StopFailure used to set status 'error': it is an outcome now.
ALTER TABLE sessions ADD COLUMN status_at INTEGER;
ALTER TABLE sessions ADD COLUMN outcome TEXT;
ALTER TABLE sessions ADD COLUMN outcome_at INTEGER;
ALTER TABLE sessions ADD COLUMN last_error TEXT;
ALTER TABLE sessions ADD COLUMN last_error_at INTEGER;
UPDATE sessions SET status = 'idle', outcome = 'error'
    WHERE status = 'error' AND source = 'claude';
""",
    ),
    # SQL in db/rollup.py: the tables, their triggers and the backfill change together.
    Migration(10, "0010_tool_rollup", rollup.MIGRATION_SQL),
    Migration(11, "0011_usage", _USAGE),
    # SQL in db/query_rollup.py, like 0010's.
    Migration(12, "0012_query_rollup", query_rollup.MIGRATION_SQL),
    # SQL in db/file_rollup.py: hot-files' per-file aggregates.
    Migration(13, "0013_file_rollup", file_rollup.MIGRATION_SQL),
    Migration(
        14,
        "0014_session_totals_index",
        """
-- The store's session refresh (db/store.py) sums a session's messages once per commit: from
-- this index alone, not a table row per message (a long session has thousands).
CREATE INDEX messages_session_totals ON messages (session_id, role, prompt_tokens,
    completion_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, cost);
""",
    ),
    Migration(
        15,
        "0015_drop_unused_tool_indexes",
        """
-- No statement of the reports (every filter combination), the dashboard, the push, the importers
-- or the store plans through either of these (EXPLAIN QUERY PLAN): the covering indexes of 0003
-- and 0007 and the rollups serve those reads. Every index is written on every tool upsert, and
-- a commit of a few events writes a page of each.
DROP INDEX tools_name_created;
DROP INDEX tools_file_path;
""",
    ),
    # SQL in db/session_totals.py (per-session sums of messages, kept by triggers, backfilled)
    # and db/query_rollup.py (a compaction inserted is added to its row, not recomputed).
    Migration(
        16,
        "0016_incremental_totals",
        session_totals.MIGRATION_SQL + query_rollup.COMPACTIONS_ADDED_SQL,
    ),
)

_RECORD_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at INTEGER NOT NULL
)
"""


def applied_versions(conn: sqlite3.Connection) -> set[int]:
    conn.execute(_RECORD_TABLE)
    return {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}


def migrate(conn: sqlite3.Connection, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[str]:
    """Apply every migration not yet recorded, in order; return the names applied.

    Safe beside another migrator of the same file (a daemon and an import, two imports, starting
    on a new database together): each migration begins with its own record, inside BEGIN
    IMMEDIATE. The first to take the write lock applies it; the other, once it has the lock, finds
    the record there (the primary key refuses a second), applies nothing of it and goes on.
    """
    done = applied_versions(conn)
    applied = []
    for migration in migrations:
        if migration.version in done:
            continue
        record = (
            "INSERT INTO schema_migrations (version, name, applied_at) "
            f"VALUES ({migration.version}, '{migration.name}', {int(time.time() * 1000)});"
        )
        # executescript commits any open transaction first; BEGIN IMMEDIATE..COMMIT makes the
        # record and the migration one atomic unit under the write lock: if a statement fails,
        # nothing of it stays.
        try:
            conn.executescript(f"BEGIN IMMEDIATE;\n{record}\n{migration.sql}\nCOMMIT;")
        except sqlite3.Error as e:
            if conn.in_transaction:
                conn.rollback()
            if isinstance(e, sqlite3.IntegrityError) and migration.version in applied_versions(
                conn
            ):
                continue  # recorded meanwhile by another migrator, which applied all of it
            raise
        applied.append(migration.name)
    return applied
