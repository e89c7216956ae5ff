"""The tool-call rollup: per-day counts and log-bucketed duration histograms of `tools`, kept
by SQLite triggers in the same transaction as the rows, and read back for a time window.

Why triggers: the store upserts rows (a replay or a Post event UPDATEs a row a Pre event
INSERTed), prune DELETEs them, imports go through the same store. A trigger sees the OLD and the
NEW values of every such change, so the rollup moves a row's contribution exactly, with no
change to the writer, and rolls back with it.

Tables (docs/schema.md):
- `tool_stats_daily` (day, tool_name, source, project_path) -> calls, failures, unknown,
  duration_count, duration_sum. `project_path` is the session's; the session triggers move a
  session's contribution when its project becomes known or changes.
- `tool_duration_daily` (day, tool_name, source, bucket_ms) -> calls, and
  `tool_duration_weekly` (week, ...) the same per 7-day block: a 30-day window reads four weeks
  and at most six days of buckets instead of a row per call.
- `tool_duration_buckets` (lo_ms, hi_ms): the bucket bounds. A duration d (whole ms) below 1 is
  its own bucket; above, buckets grow by 2% (next lo = ceil(1.02 * lo)), so hi_ms < 1.02 * lo_ms
  and every integer in [lo_ms, hi_ms] is within 1% of sqrt(lo_ms * hi_ms), the estimate a
  percentile read from the histogram gets. Up to 50 ms every bucket holds one value: exact.

Days are UTC (created_at // 86 400 000), weeks day // 7; a row without created_at is day -1.
A NULL tool_name or project_path is stored as '' (key columns cannot be NULL).
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Callable
from functools import cache

__all__ = [
    "delta",
    "key_match",
    "MIGRATION_SQL",
    "DAY_MS",
    "BUCKET_SQL",
    "bucket_bounds",
    "bucket_of",
    "estimate",
    "session_project_triggers",
    "window_days",
]

DAY_MS = 86_400_000
_TOP = 9_000_000_000_000_000_000  # the last bucket starts below this (int64 ends at 9.22e18)


@cache
def bucket_bounds() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(lows, highs) of every bucket from 1 ms up: the rows of tool_duration_buckets, built by
    the same integer recurrence as the migration's SQL (tests check they agree)."""
    lows, highs, lo = [], [], 1
    while True:
        nxt = lo + (lo + 49) // 50  # ceil(1.02 * lo) in integers
        lows.append(lo)
        highs.append(nxt - 1)
        if nxt >= _TOP:
            return tuple(lows), tuple(highs)
        lo = nxt


def bucket_of(duration: int | float) -> int:
    """The bucket (its lo_ms) a duration falls in, as the triggers compute it."""
    d = int(duration)
    if d < 1:
        return d
    lows, _ = bucket_bounds()
    return lows[bisect.bisect_right(lows, d) - 1]


def estimate(lo: int) -> float | int:
    """The value reported for a bucket: exact when it holds one value, else the geometric middle
    of its bounds (within 1% of every whole number in it), rounded to 0.01 ms."""
    if lo < 1:
        return lo
    lows, highs = bucket_bounds()
    hi = highs[bisect.bisect_left(lows, lo)]
    return lo if hi == lo else round(math.sqrt(lo * hi), 2)


def window_days(since_ms: int | None) -> tuple[int | None, int | None]:
    """For a window starting at since_ms: the first whole day and the first whole week in it
    (None, None for all time). Rows before the first whole day are read from `tools` itself."""
    if since_ms is None:
        return None, None
    day = -(-since_ms // DAY_MS)
    return day, -(-day // 7)


def percentile_from_buckets(buckets: Counter[int], rank: int) -> int:
    """The lo_ms of the bucket holding the rank-th smallest duration (1-based)."""
    seen = 0
    for lo in sorted(buckets):
        seen += buckets[lo]
        if seen >= rank:
            return lo
    return max(buckets)


# --- the migration -------------------------------------------------------------------------

_DAY = "coalesce(CAST({x}.created_at / 86400000 AS INTEGER), -1)"
_WEEK = "(CASE WHEN {day} < 0 THEN -1 ELSE {day} / 7 END)"
_BUCKET = (
    "(CASE WHEN CAST({x}.duration_ms AS INTEGER) < 1 THEN CAST({x}.duration_ms AS INTEGER) "
    "ELSE (SELECT b.lo_ms FROM tool_duration_buckets b "
    "WHERE b.lo_ms <= CAST({x}.duration_ms AS INTEGER) ORDER BY b.lo_ms DESC LIMIT 1) END)"
)
BUCKET_SQL = _BUCKET  # for db/query_rollup.py's histograms: the same buckets
_PROJECT = "coalesce((SELECT s.project_path FROM sessions s WHERE s.id = {x}.session_id), '')"
_STATS_SET = (
    "calls = calls + excluded.calls, failures = failures + excluded.failures, "
    "unknown = unknown + excluded.unknown, duration_count = duration_count + excluded.duration_count, "
    "duration_sum = duration_sum + excluded.duration_sum"
)


def _stats(x: str, sign: str) -> list[str]:
    """Add (sign '+') or remove ('-') one tools row (x: NEW or OLD) in tool_stats_daily;
    removing deletes a group that drops to zero, so the rollup equals a fresh aggregate."""
    day, s = _DAY.format(x=x), ("" if sign == "+" else "-")
    out = [
        "INSERT INTO tool_stats_daily (day, tool_name, source, project_path, calls, failures, "
        f"unknown, duration_count, duration_sum) VALUES ({day}, coalesce({x}.tool_name, ''), "
        f"{x}.source, {_PROJECT.format(x=x)}, {s}1, {s}({x}.success IS 0), "
        f"{s}({x}.success IS NULL), {s}({x}.duration_ms IS NOT NULL), "
        f"{s}coalesce({x}.duration_ms, 0)) ON CONFLICT (day, tool_name, source, project_path) "
        f"DO UPDATE SET {_STATS_SET};",
    ]
    if sign == "-":
        out.append(
            f"DELETE FROM tool_stats_daily WHERE day = {day} AND tool_name = "
            f"coalesce({x}.tool_name, '') AND source = {x}.source AND project_path = "
            f"{_PROJECT.format(x=x)} AND calls = 0;"
        )
    return out


def _buckets(x: str, sign: str, when: str = "1") -> list[str]:
    """The same in the daily and weekly duration buckets, for a row with a duration, `when`
    the condition holds."""
    day, bucket = _DAY.format(x=x), _BUCKET.format(x=x)
    s = "" if sign == "+" else "-"
    out = []
    for column, period in (("day", day), ("week", _WEEK.format(day=day))):
        table = f"tool_duration_{'daily' if column == 'day' else 'weekly'}"
        out.append(
            f"INSERT INTO {table} ({column}, tool_name, source, bucket_ms, calls) "
            f"SELECT {period}, coalesce({x}.tool_name, ''), {x}.source, {bucket}, {s}1 "
            f"WHERE {when} AND {x}.duration_ms IS NOT NULL ON CONFLICT ({column}, tool_name, "
            "source, bucket_ms) DO UPDATE SET calls = calls + excluded.calls;"
        )
        if sign == "-":
            out.append(
                f"DELETE FROM {table} WHERE {when} AND {x}.duration_ms IS NOT NULL "
                f"AND {column} = {period} AND tool_name = coalesce({x}.tool_name, '') "
                f"AND source = {x}.source AND bucket_ms = {bucket} AND calls = 0;"
            )
    return out


def _apply(x: str, sign: str) -> str:
    """Statements adding or removing one tools row's whole contribution."""
    return "\n    ".join(_stats(x, sign) + _buckets(x, sign))


def key_match(keys: dict[str, str], x: str) -> str:
    """SQL true for the row of a rollup table that row x (NEW or OLD) belongs to: each key column
    equal to its expression over x."""
    return " AND ".join(f"{k} = {e.format(x=x)}" for k, e in keys.items())


def delta(
    table: str,
    keys: dict[str, str],
    sums: dict[str, str],
    x: str,
    sign: str,
    where: str,
    extra: tuple[str, str, str] | None = None,
) -> list[str]:
    """Statements adding (sign '+') or taking out ('-') row x (NEW or OLD) in `table`, where
    `where` holds: its group (`keys`: column -> expression over x) gets each of `sums` (column ->
    expression) added or subtracted, and a group taken out down to 0 (its first sum) goes.
    `extra` (column, value, assignment on conflict): one more column written on the way in."""
    key_values = [e.format(x=x) for e in keys.values()]
    s = "" if sign == "+" else "-"
    columns = [*keys, *sums]
    values = key_values + [f"{s}({e.format(x=x)})" for e in sums.values()]
    sets = [f"{c} = {c} + excluded.{c}" for c in sums]
    if extra is not None:
        columns.append(extra[0])
        values.append(extra[1])
        sets.append(extra[2])
    out = [
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(values)} "
        f"WHERE {where} "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {', '.join(sets)};"
    ]
    if sign == "-":
        out.append(
            f"DELETE FROM {table} WHERE {where} AND {key_match(keys, x)} "
            f"AND {next(iter(sums))} = 0;"
        )
    return out


def session_project_triggers(prefix: str, move: Callable[[str, str, str], str]) -> str:
    """The three `sessions` triggers of a rollup keyed by the session's project: `move(session,
    old project, new project)` gives the statements that move a session's rows from one project
    key to the other ('' for none) when its project arrives, changes, or the session goes."""
    return f"""\
CREATE TRIGGER {prefix}_insert AFTER INSERT ON sessions
WHEN coalesce(NEW.project_path, '') != '' BEGIN
    {move("NEW.id", "''", "NEW.project_path")}
END;
CREATE TRIGGER {prefix}_project AFTER UPDATE OF project_path ON sessions
WHEN coalesce(OLD.project_path, '') IS NOT coalesce(NEW.project_path, '') BEGIN
    {move("NEW.id", "coalesce(OLD.project_path, '')", "coalesce(NEW.project_path, '')")}
END;
CREATE TRIGGER {prefix}_delete AFTER DELETE ON sessions
WHEN coalesce(OLD.project_path, '') != '' BEGIN
    {move("OLD.id", "OLD.project_path", "''")}
END;"""


def _move(session: str, old: str, new: str) -> str:
    """Move one session's tool calls from project `old` to `new` in tool_stats_daily (the
    duration tables have no project)."""
    day = _DAY.format(x="t")
    aggregate = (
        f"SELECT {day}, coalesce(t.tool_name, ''), t.source, {{project}}, {{s}}count(*), "
        "{s}sum(t.success IS 0), {s}sum(t.success IS NULL), {s}count(t.duration_ms), "
        "{s}CAST(total(t.duration_ms) AS INTEGER) "
        f"FROM tools t WHERE t.session_id = {session} GROUP BY 1, 2, 3"
    )
    insert = (
        "INSERT INTO tool_stats_daily (day, tool_name, source, project_path, calls, failures, "
        "unknown, duration_count, duration_sum) {select} "
        f"ON CONFLICT (day, tool_name, source, project_path) DO UPDATE SET {_STATS_SET};"
    )
    return "\n    ".join([
        insert.format(select=aggregate.format(project=new, s="")),
        insert.format(select=aggregate.format(project=old, s="-")),
        "DELETE FROM tool_stats_daily WHERE calls = 0 AND (day, tool_name, source, project_path) "
        f"IN (SELECT {day}, coalesce(t.tool_name, ''), t.source, {old} FROM tools t "
        f"WHERE t.session_id = {session});",
    ])  # fmt: skip


_ROLLUP_COLUMNS = "created_at, tool_name, source, session_id, success, duration_ms"
# The group a row counts in is the same before and after the update.
_SAME_GROUP = (
    f"{_DAY.format(x='OLD')} = {_DAY.format(x='NEW')} AND OLD.tool_name IS NEW.tool_name "
    "AND OLD.source IS NEW.source AND OLD.session_id IS NEW.session_id"
)
_OUTCOME_CHANGED = "(OLD.success IS NOT NEW.success OR OLD.duration_ms IS NOT NEW.duration_ms)"


def _in_place() -> str:
    """A Post event's update (outcome, duration) of a call that stays in its group: one UPDATE
    of its tool_stats_daily row instead of adding and removing it (the usual update, so the
    cheap one); the duration buckets move only when the duration changed."""
    moved = "OLD.duration_ms IS NOT NEW.duration_ms"
    return "\n    ".join([
        "UPDATE tool_stats_daily SET failures = failures + (NEW.success IS 0) - (OLD.success IS 0), "
        "unknown = unknown + (NEW.success IS NULL) - (OLD.success IS NULL), "
        "duration_count = duration_count + (NEW.duration_ms IS NOT NULL) "
        "- (OLD.duration_ms IS NOT NULL), duration_sum = duration_sum "
        "+ coalesce(NEW.duration_ms, 0) - coalesce(OLD.duration_ms, 0) "
        f"WHERE day = {_DAY.format(x='NEW')} AND tool_name = coalesce(NEW.tool_name, '') "
        f"AND source = NEW.source AND project_path = {_PROJECT.format(x='NEW')};",
        *_buckets("NEW", "+", moved),
        *_buckets("OLD", "-", moved),
    ])  # fmt: skip


MIGRATION_SQL = f"""
-- The tool-call rollup (db/rollup.py, docs/schema.md): what `agentd ui`'s tools view reads
-- instead of a row per call. Triggers keep it in the writer's transaction; the statements at
-- the end fill it from the rows already stored.
CREATE TABLE tool_duration_buckets (lo_ms INTEGER PRIMARY KEY, hi_ms INTEGER NOT NULL);
INSERT INTO tool_duration_buckets (lo_ms, hi_ms)
    WITH RECURSIVE b(lo, next) AS (
        SELECT 1, 2
        UNION ALL SELECT next, next + (next + 49) / 50 FROM b WHERE next < {_TOP}
    )
    SELECT lo, next - 1 FROM b;
CREATE TABLE tool_stats_daily (
    day INTEGER NOT NULL,
    tool_name TEXT NOT NULL,
    source TEXT NOT NULL,
    project_path TEXT NOT NULL,
    calls INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    unknown INTEGER NOT NULL,
    duration_count INTEGER NOT NULL,
    duration_sum INTEGER NOT NULL,
    PRIMARY KEY (day, tool_name, source, project_path)
) WITHOUT ROWID;
CREATE TABLE tool_duration_daily (
    day INTEGER NOT NULL,
    tool_name TEXT NOT NULL,
    source TEXT NOT NULL,
    bucket_ms INTEGER NOT NULL,
    calls INTEGER NOT NULL,
    PRIMARY KEY (day, tool_name, source, bucket_ms)
) WITHOUT ROWID;
CREATE TABLE tool_duration_weekly (
    week INTEGER NOT NULL,
    tool_name TEXT NOT NULL,
    source TEXT NOT NULL,
    bucket_ms INTEGER NOT NULL,
    calls INTEGER NOT NULL,
    PRIMARY KEY (week, tool_name, source, bucket_ms)
) WITHOUT ROWID;

CREATE TRIGGER tools_rollup_insert AFTER INSERT ON tools BEGIN
    {_apply("NEW", "+")}
END;
CREATE TRIGGER tools_rollup_delete AFTER DELETE ON tools BEGIN
    {_apply("OLD", "-")}
END;
-- The store's upsert sets every column, so these fire on every replay: the WHEN clauses keep
-- an unchanged replay free. Adding NEW before removing OLD keeps a shared row from emptying.
CREATE TRIGGER tools_rollup_update_in_place AFTER UPDATE OF {_ROLLUP_COLUMNS} ON tools
WHEN {_SAME_GROUP} AND {_OUTCOME_CHANGED} BEGIN
    {_in_place()}
END;
CREATE TRIGGER tools_rollup_update AFTER UPDATE OF {_ROLLUP_COLUMNS} ON tools
WHEN NOT ({_SAME_GROUP}) BEGIN
    {_apply("NEW", "+")}
    {_apply("OLD", "-")}
END;
{session_project_triggers("sessions_rollup", _move)}

INSERT INTO tool_stats_daily (day, tool_name, source, project_path, calls, failures, unknown,
                              duration_count, duration_sum)
    SELECT {_DAY.format(x="t")}, coalesce(t.tool_name, ''), t.source,
           coalesce(s.project_path, ''), count(*), sum(t.success IS 0), sum(t.success IS NULL),
           count(t.duration_ms), CAST(total(t.duration_ms) AS INTEGER)
    FROM tools t LEFT JOIN sessions s ON s.id = t.session_id GROUP BY 1, 2, 3, 4;
INSERT INTO tool_duration_daily (day, tool_name, source, bucket_ms, calls)
    SELECT {_DAY.format(x="t")}, coalesce(t.tool_name, ''), t.source, {_BUCKET.format(x="t")},
           count(*)
    FROM tools t WHERE t.duration_ms IS NOT NULL GROUP BY 1, 2, 3, 4;
INSERT INTO tool_duration_weekly (week, tool_name, source, bucket_ms, calls)
    SELECT {_WEEK.format(day="day")}, tool_name, source, bucket_ms, sum(calls)
    FROM tool_duration_daily GROUP BY 1, 2, 3, 4;

-- The session page reads a session's first calls in start order: this index hands them over
-- in that order, so a session of 100 000 calls costs what its first 2 000 do.
CREATE INDEX tools_ui_session_order
    ON tools (session_id, coalesce(started_at, created_at), id);
-- Same names, two more trailing columns: the page's per-file line counts come from index
-- entries, and its live tail (the newest 30 events) is the end of a range, not a sort of every
-- event of the session. Each still serves what it did; writes keep the same number of indexes.
DROP INDEX file_operations_query_session;
CREATE INDEX file_operations_query_session
    ON file_operations (session_id, created_at, operation_type, file_path, lines_added, lines_removed);
DROP INDEX events_session;
CREATE INDEX events_session ON events (session_id, received_at);
"""
