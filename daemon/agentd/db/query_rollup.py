"""The query rollup: per-hour (and per-day) aggregates of `tools` that `agentd query`'s
tool-errors and top-sessions reports read instead of a row per call, kept by triggers in the
writer's transaction like db/rollup.py's (which this builds on: its `tool_stats_daily` is the
daily tier of the per-tool counts).

Tables (docs/schema.md). Hours are UTC epoch hours (created_at // 3 600 000), days as in
rollup.py; a row without created_at counts in hour -1 and day -1. A NULL tool_name or
project_path is stored as ''. `message` is a failure's error message as tool-errors shows it:
its first line, trimmed, cut at 80 characters, '(no message)' when empty.
- `tool_stats_hourly` (hour, tool_name, source, project_path): tool_stats_daily's counts per
  hour, for the hours at a window's edges.
- `tool_errors_daily`, `tool_errors_hourly` (day | hour, tool_name, source, project_path,
  message) -> failures.
- `tool_stats_total` (tool_name, source, project_path) -> calls, failures, and
  `tool_errors_total` (tool_name, source, project_path, message) -> failures: all time, for a
  window without bounds (`--since all`), which would otherwise read a group per day.
- `tool_session_hourly` (session_id, hour, tool_name, source) -> calls, failures: one session's
  calls (--session), and every session's calls in a window (top-sessions).
- `tool_session_errors` (session_id, hour, tool_name, source, message) -> failures.
- `session_hourly` (hour, session_id) -> calls, failures: every session's calls in a window
  (top-sessions).
- `tool_session_totals` (session_id) -> calls, failures over all time (top-sessions --since all).
- `tool_duration_hourly` (hour, tool_name, source, bucket_ms), `tool_duration_total` (tool_name,
  source, bucket_ms), `tool_duration_project` (project_path, tool_name, source, bucket_ms),
  `tool_duration_session` (session_id, tool_name, source, bucket_ms) -> calls: how many calls
  took how long (db/rollup.py's buckets), for slow-tools' percentiles (query/percentiles.py).
- `compaction_totals` (session_id, source) -> compactions and their sums over all time
  (compactions --since all), recomputed from a session's compaction_events when one changes;
  one inserted is added instead where that is exact (migration 0016, COMPACTIONS_ADDED_SQL).
- `file_session_edits` (session_id, hour, file_path) -> edits: the distinct files a session
  edited in a window (top-sessions' files_edited).

Exact under replay: the update triggers fire only when a column they count changed, and then
take the old row's contribution out and put the new one in. A group that drops to zero is
deleted, so every table equals a fresh aggregate of the rows (tests/test_query_rollup.py).
The project-keyed tables follow the session's project like tool_stats_daily does.
"""

from __future__ import annotations

from agentd.db import rollup

__all__ = ["MIGRATION_SQL", "MESSAGE", "COMPACTIONS_ADDED_SQL"]

_HOUR = "coalesce(CAST({x}.created_at / 3600000 AS INTEGER), -1)"
_DAY = "coalesce(CAST({x}.created_at / 86400000 AS INTEGER), -1)"
_PROJECT = "coalesce((SELECT s.project_path FROM sessions s WHERE s.id = {x}.session_id), '')"
# The message key, as query/reports.py's tool-errors always grouped failures.
MESSAGE = (
    "coalesce(nullif(substr(trim(substr({x}.error_message, 1, instr({x}.error_message || "
    "char(10), char(10)) - 1)), 1, 80), ''), '(no message)')"
)


_EDIT = "{x}.operation_type IN ('created', 'edited', 'deleted', 'moved')"


def _tables(origin: str = "tools") -> list[tuple[str, dict[str, str], dict[str, str], str, bool]]:
    """(table, key column -> expression, summed column -> expression, row condition, keyed by
    project) for each table kept from `origin`; `{x}` is the row (NEW, OLD, or t)."""
    if origin == "file_operations":
        return [
            ("file_session_edits",
             {"session_id": "coalesce({x}.session_id, '')", "hour": _HOUR,
              "file_path": "{x}.file_path"},
             {"edits": "1"}, f"{{x}}.file_path IS NOT NULL AND {_EDIT}", False),
        ]  # fmt: skip
    tool = "coalesce({x}.tool_name, '')"
    failed = "{x}.success IS 0"
    timed = "{x}.duration_ms IS NOT NULL"
    bucket = rollup.BUCKET_SQL
    return [
        ("tool_stats_hourly",
         {"hour": _HOUR, "tool_name": tool, "source": "{x}.source", "project_path": _PROJECT},
         {"calls": "1", "failures": failed, "unknown": "{x}.success IS NULL",
          "duration_count": "{x}.duration_ms IS NOT NULL",
          "duration_sum": "coalesce({x}.duration_ms, 0)"}, "1", True),
        *[(f"tool_errors_{table}",
           {period: expr, "tool_name": tool, "source": "{x}.source", "project_path": _PROJECT,
            "message": MESSAGE},
           {"failures": "1"}, failed, True)
          for period, table, expr in (("day", "daily", _DAY), ("hour", "hourly", _HOUR))],
        ("tool_stats_total", {"tool_name": tool, "source": "{x}.source", "project_path": _PROJECT},
         {"calls": "1", "failures": failed, "duration_count": timed}, "1", True),
        ("tool_errors_total",
         {"tool_name": tool, "source": "{x}.source", "project_path": _PROJECT, "message": MESSAGE},
         {"failures": "1"}, failed, True),
        ("tool_session_hourly",
         {"session_id": "coalesce({x}.session_id, '')", "hour": _HOUR, "tool_name": tool,
          "source": "{x}.source"},
         {"calls": "1", "failures": failed, "duration_count": timed}, "1", False),
        # Duration histograms (rollup.py's buckets): by hour for a window's edges, and over
        # all time in total, by project and by session.
        ("tool_duration_hourly",
         {"hour": _HOUR, "tool_name": tool, "source": "{x}.source", "bucket_ms": bucket},
         {"calls": "1"}, timed, False),
        ("tool_duration_total", {"tool_name": tool, "source": "{x}.source", "bucket_ms": bucket},
         {"calls": "1"}, timed, False),
        ("tool_duration_project",
         {"project_path": _PROJECT, "tool_name": tool, "source": "{x}.source",
          "bucket_ms": bucket},
         {"calls": "1"}, timed, True),
        ("tool_duration_session",
         {"session_id": "coalesce({x}.session_id, '')", "tool_name": tool,
          "source": "{x}.source", "bucket_ms": bucket},
         {"calls": "1"}, timed, False),
        ("tool_session_errors",
         {"session_id": "coalesce({x}.session_id, '')", "hour": _HOUR, "tool_name": tool,
          "source": "{x}.source", "message": MESSAGE},
         {"failures": "1"}, failed, False),
        ("session_hourly", {"hour": _HOUR, "session_id": "coalesce({x}.session_id, '')"},
         {"calls": "1", "failures": failed}, "1", False),
        ("tool_session_totals", {"session_id": "coalesce({x}.session_id, '')"},
         {"calls": "1", "failures": failed}, "1", False),
    ]  # fmt: skip


def _change(
    x: str, sign: str, origin: str = "tools", only: str | None = None, guard: str = "1"
) -> list[str]:
    """Statements adding (sign '+') or taking out ('-') one `origin` row x (NEW or OLD), in
    every table kept from it or `only` one, where `guard` holds."""
    out = []
    for table, keys, sums, when, _ in _tables(origin):
        if only is not None and table != only:
            continue
        out += rollup.delta(table, keys, sums, x, sign, f"{guard} AND {when.format(x=x)}")
    return out


# What places a tools row in its group in every table but for the message and duration keys.
_BASE = ("hour", "tool_name", "source", "session_id", "project_path", "day")
_SAME_BASE = (
    f"{_HOUR.format(x='OLD')} = {_HOUR.format(x='NEW')} AND OLD.tool_name IS NEW.tool_name "
    "AND OLD.source IS NEW.source AND OLD.session_id IS NEW.session_id"
)


def _update_in_place() -> list[str]:
    """An UPDATE of a tools row that keeps its hour, tool, source and session (the usual one: a
    Post event giving its Pre row an outcome and a duration), table by table: where the row
    stays in its group, one UPDATE of the group's sums if one changed; where it enters or
    leaves the table (a failure, a first duration) or changes group by its message or
    duration bucket, its old contribution out and its new one in."""
    out = []
    for table, keys, sums, when, _ in _tables():
        changed = " OR ".join(
            f"({e.format(x='OLD')}) IS NOT ({e.format(x='NEW')})" for e in sums.values()
        )
        deltas = ", ".join(
            f"{c} = {c} + ({e.format(x='NEW')}) - ({e.format(x='OLD')})" for c, e in sums.items()
        )
        match = " AND ".join(f"{k} = {e.format(x='NEW')}" for k, e in keys.items())
        extra = [f"{e.format(x='OLD')} IS {e.format(x='NEW')}" for k, e in keys.items()
                 if k not in _BASE]  # fmt: skip
        if when == "1" and not extra:
            out.append(f"UPDATE {table} SET {deltas} WHERE ({changed}) AND {match};")
            continue
        stays = " AND ".join([f"({when.format(x='OLD')})", f"({when.format(x='NEW')})", *extra])
        out.append(f"UPDATE {table} SET {deltas} WHERE {stays} AND ({changed}) AND {match};")
        out += _change("NEW", "+", "tools", only=table, guard=f"NOT ({stays})")
        out += _change("OLD", "-", "tools", only=table, guard=f"NOT ({stays})")
    return out


def _move(session: str, old: str, new: str) -> list[str]:
    """Move one session's calls from project `old` to `new` in the project-keyed tables."""
    out = []
    for table, keys, sums, when, by_project in _tables():
        if not by_project:
            continue
        other = [k for k in keys if k != "project_path"]
        exprs = {k: keys[k].format(x="t") for k in other}
        columns = ", ".join([*other, "project_path", *sums])
        groups = ", ".join(str(i + 1) for i in range(len(other)))
        for project, s in ((new, ""), (old, "-")):
            summed = ", ".join(f"{s}sum({e.format(x='t')})" for e in sums.values())
            out.append(
                f"INSERT INTO {table} ({columns}) SELECT {', '.join(exprs.values())}, "
                f"{project}, {summed} FROM tools t WHERE t.session_id = {session} "
                f"AND {when.format(x='t')} GROUP BY {groups} ON CONFLICT ({', '.join(keys)}) "
                f"DO UPDATE SET {', '.join(f'{c} = {c} + excluded.{c}' for c in sums)};"
            )
        out.append(
            f"DELETE FROM {table} WHERE {next(iter(sums))} = 0 AND ({', '.join(other)}, "
            f"project_path) IN (SELECT {', '.join(exprs.values())}, {old} FROM tools t "
            f"WHERE t.session_id = {session} AND {when.format(x='t')});"
        )
    return out


def _backfill() -> list[str]:
    out = []
    for origin, table, keys, sums, when, by_project in _all():
        exprs = [e.format(x="t") for e in keys.values()]
        if by_project:  # one join instead of a lookup per row
            exprs = [
                "coalesce(s.project_path, '')" if k == "project_path" else e
                for k, e in zip(keys, exprs, strict=True)
            ]
        join = " LEFT JOIN sessions s ON s.id = t.session_id" if by_project else ""
        groups = ", ".join(str(i + 1) for i in range(len(keys)))
        summed = ", ".join(f"sum({e.format(x='t')})" for e in sums.values())
        out.append(
            f"INSERT INTO {table} ({', '.join([*keys, *sums])}) SELECT {', '.join(exprs)}, "
            f"{summed} FROM {origin} t{join} WHERE {when.format(x='t')} GROUP BY {groups};"
        )
    return out


def _all() -> list[tuple[str, str, dict[str, str], dict[str, str], str, bool]]:
    return [(o, *t) for o in ("tools", "file_operations") for t in _tables(o)]


def _create() -> list[str]:
    out = []
    for _, table, keys, sums, _, _ in _all():
        ints = ("hour", "day", "bucket_ms")
        columns = [f"{k} {'INTEGER' if k in ints else 'TEXT'} NOT NULL" for k in keys]
        columns += [f"{c} INTEGER NOT NULL" for c in sums]
        out.append(
            f"CREATE TABLE {table} (\n    "
            + ",\n    ".join([*columns, f"PRIMARY KEY ({', '.join(keys)})"])
            + "\n) WITHOUT ROWID;"
        )
    return out


# compactions over all time: a session's row recomputed from its (few) compaction_events
# whenever one is written or deleted, so max(created_at) stays exact too.
_RECOMPUTE = """
    DELETE FROM compaction_totals WHERE session_id = coalesce({x}.session_id, '');
    INSERT INTO compaction_totals SELECT coalesce(c.session_id, ''), c.source, count(*),
        count(c.trigger), sum(c.trigger IS 'auto'), sum(c.trigger IS 'manual'), total(c.tokens_before),
        count(c.tokens_before), total(c.tokens_after), count(c.tokens_after), max(c.created_at)
    FROM compaction_events c WHERE c.session_id IS {x}.session_id GROUP BY 1, 2;"""
_COMPACTIONS = f"""
CREATE TABLE compaction_totals (
    session_id TEXT NOT NULL,
    source TEXT NOT NULL,
    compactions INTEGER NOT NULL,
    triggers INTEGER NOT NULL,
    auto INTEGER NOT NULL,
    manual INTEGER NOT NULL,
    tokens_before_sum REAL NOT NULL,
    tokens_before_count INTEGER NOT NULL,
    tokens_after_sum REAL NOT NULL,
    tokens_after_count INTEGER NOT NULL,
    last_at INTEGER,
    PRIMARY KEY (session_id, source)
) WITHOUT ROWID;
CREATE TRIGGER compactions_query_rollup_insert AFTER INSERT ON compaction_events BEGIN
    {_RECOMPUTE.format(x="NEW")}
END;
CREATE TRIGGER compactions_query_rollup_update AFTER UPDATE ON compaction_events
WHEN OLD.session_id IS NOT NEW.session_id OR OLD.source IS NOT NEW.source
    OR OLD.trigger IS NOT NEW.trigger OR OLD.tokens_before IS NOT NEW.tokens_before
    OR OLD.tokens_after IS NOT NEW.tokens_after OR OLD.created_at IS NOT NEW.created_at BEGIN
    {_RECOMPUTE.format(x="OLD")}
    {_RECOMPUTE.format(x="NEW")}
END;
CREATE TRIGGER compactions_query_rollup_delete AFTER DELETE ON compaction_events BEGIN
    {_RECOMPUTE.format(x="OLD")}
END;
INSERT INTO compaction_totals SELECT coalesce(c.session_id, ''), c.source, count(*),
    count(c.trigger), sum(c.trigger IS 'auto'), sum(c.trigger IS 'manual'), total(c.tokens_before),
    count(c.tokens_before), total(c.tokens_after), count(c.tokens_after), max(c.created_at)
FROM compaction_events c GROUP BY 1, 2;
"""

# Migration 0016: a compaction inserted is added to its row, not recomputed from all of its
# session's compaction_events (a followed session has one per turn's copy: hundreds). Exact where
# the sum cannot round: every token value of the row's group a non-negative integer and the sums
# below 2^53 (then a float sum is exact in any order, so total() over the rows gives the same).
# Any other insert recomputes as before: a row whose values can round (the partial index finds
# them at once), a session id NULL or '' (whose row the recompute also keys as ''), or a sum
# grown to 2^53, recomputed after the addition that reached it.
_ROUNDS = ("(typeof(tokens_before) NOT IN ('integer', 'null') OR tokens_before < 0"
           " OR typeof(tokens_after) NOT IN ('integer', 'null') OR tokens_after < 0)")  # fmt: skip
_EXACT = (
    "NEW.session_id IS NOT NULL AND NEW.session_id != '' AND NOT EXISTS (SELECT 1 FROM"
    " compaction_events WHERE session_id = NEW.session_id AND source = NEW.source"
    f" AND {_ROUNDS})"
)
_KEY = "coalesce(NEW.session_id, '')"
COMPACTIONS_ADDED_SQL = f"""
CREATE INDEX compaction_events_rounding ON compaction_events (session_id, source)
    WHERE {_ROUNDS};
DROP TRIGGER compactions_query_rollup_insert;
CREATE TRIGGER compactions_query_rollup_insert AFTER INSERT ON compaction_events BEGIN
    INSERT INTO compaction_totals SELECT NEW.session_id, NEW.source, 1, NEW.trigger IS NOT NULL,
        NEW.trigger IS 'auto', NEW.trigger IS 'manual', coalesce(NEW.tokens_before, 0),
        NEW.tokens_before IS NOT NULL, coalesce(NEW.tokens_after, 0), NEW.tokens_after IS NOT NULL,
        NEW.created_at
    WHERE {_EXACT}
    ON CONFLICT (session_id, source) DO UPDATE SET compactions = compactions + 1,
        triggers = triggers + excluded.triggers, auto = auto + excluded.auto,
        manual = manual + excluded.manual,
        tokens_before_sum = tokens_before_sum + excluded.tokens_before_sum,
        tokens_before_count = tokens_before_count + excluded.tokens_before_count,
        tokens_after_sum = tokens_after_sum + excluded.tokens_after_sum,
        tokens_after_count = tokens_after_count + excluded.tokens_after_count,
        last_at = CASE WHEN excluded.last_at IS NULL THEN last_at WHEN last_at IS NULL
            THEN excluded.last_at ELSE max(last_at, excluded.last_at) END;
    DELETE FROM compaction_totals WHERE session_id = {_KEY} AND (NOT ({_EXACT})
        OR EXISTS (SELECT 1 FROM compaction_totals WHERE session_id = {_KEY}
            AND (tokens_before_sum >= 9007199254740992 OR tokens_after_sum >= 9007199254740992)));
    INSERT INTO compaction_totals SELECT coalesce(c.session_id, ''), c.source, count(*),
        count(c.trigger), sum(c.trigger IS 'auto'), sum(c.trigger IS 'manual'), total(c.tokens_before),
        count(c.tokens_before), total(c.tokens_after), count(c.tokens_after), max(c.created_at)
    FROM compaction_events c WHERE c.session_id IS NEW.session_id
        AND NOT EXISTS (SELECT 1 FROM compaction_totals WHERE session_id = {_KEY}) GROUP BY 1, 2;
END;
"""

_COUNTED = ("created_at", "tool_name", "source", "session_id", "success", "duration_ms",
            "error_message")  # fmt: skip
_CHANGED = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in _COUNTED)
_STEP = "\n    "

MIGRATION_SQL = f"""
-- The query rollup (db/query_rollup.py, docs/schema.md): what `agentd query tool-errors` and
-- `top-sessions` read instead of a row per call. Triggers keep it in the writer's transaction;
-- the statements after them fill it from the rows already stored.
{chr(10).join(_create())}
-- top-sessions over all time: the busiest sessions first.
CREATE INDEX tool_session_totals_calls ON tool_session_totals (calls DESC, session_id);

CREATE TRIGGER tools_query_rollup_insert AFTER INSERT ON tools BEGIN
    {_STEP.join(_change("NEW", "+"))}
END;
CREATE TRIGGER tools_query_rollup_delete AFTER DELETE ON tools BEGIN
    {_STEP.join(_change("OLD", "-"))}
END;
-- The store's upsert sets every column: only a change of a counted one does anything, so a
-- replay is free. A row that keeps its hour, tool, source and session is updated in place
-- where it stays in its group; otherwise NEW goes in before OLD comes out, so that a shared
-- group never empties on the way.
CREATE TRIGGER tools_query_rollup_update_in_place AFTER UPDATE OF {", ".join(_COUNTED)} ON tools
WHEN {_SAME_BASE} AND ({_CHANGED}) BEGIN
    {_STEP.join(_update_in_place())}
END;
CREATE TRIGGER tools_query_rollup_update AFTER UPDATE OF {", ".join(_COUNTED)} ON tools
WHEN NOT ({_SAME_BASE}) BEGIN
    {_STEP.join(_change("NEW", "+") + _change("OLD", "-"))}
END;
CREATE TRIGGER file_operations_query_rollup_insert AFTER INSERT ON file_operations
WHEN NEW.file_path IS NOT NULL AND {_EDIT.format(x="NEW")} BEGIN
    {_STEP.join(_change("NEW", "+", "file_operations"))}
END;
CREATE TRIGGER file_operations_query_rollup_delete AFTER DELETE ON file_operations
WHEN OLD.file_path IS NOT NULL AND {_EDIT.format(x="OLD")} BEGIN
    {_STEP.join(_change("OLD", "-", "file_operations"))}
END;
CREATE TRIGGER file_operations_query_rollup_update
AFTER UPDATE OF session_id, created_at, file_path, operation_type ON file_operations
WHEN OLD.session_id IS NOT NEW.session_id OR OLD.created_at IS NOT NEW.created_at
    OR OLD.file_path IS NOT NEW.file_path OR OLD.operation_type IS NOT NEW.operation_type BEGIN
    {_STEP.join(_change("NEW", "+", "file_operations") + _change("OLD", "-", "file_operations"))}
END;
{_COMPACTIONS}
{rollup.session_project_triggers("sessions_query_rollup", lambda *a: _STEP.join(_move(*a)))}

{chr(10).join(_backfill())}
"""
