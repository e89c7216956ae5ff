"""The canned reports of `agentd query`: their SQL, their columns, and the filters they take.

(Over 400 lines: it is a table of seven reports, each with its SQL, which docs/queries.md shows.)

No click here: `engine.py` runs what this module describes. docs/queries.md shows each report's
SQL (a test checks it is the SQL below, verbatim) so that users can adapt it.

Filters are named parameters: `:since` and `:until` (epoch ms), `:source`, `:project`,
`:session` and `:limit`. Each filter condition of a report sits on a line of its own that starts
with `AND`, and `render()` drops every line that uses a filter the user did not give. Each
statement SQLite plans is then plain: an unused filter costs nothing, and a given one can use an
index (a `(:x IS NULL OR col = :x)` form could not).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from agentd.query.costs import SESSION_COST

__all__ = [
    "Column",
    "Report",
    "REPORTS",
    "DEFAULT_SINCE",
    "DEFAULT_LIMIT",
    "FILTERS",
    "render",
    "closest",
    "PERCENTILE_SQL",
    "HISTOGRAM_SQL",
    "MAX_SQL",
    "nearest_rank",
]

DEFAULT_SINCE = "7d"
DEFAULT_LIMIT = 20
# Every named parameter a report, or a user's --sql, may use.
FILTERS = ("since", "until", "source", "project", "session", "limit")


@dataclass(frozen=True)
class Column:
    name: str
    # How the terminal table shows the value; JSON, CSV and NDJSON always carry it raw.
    # text | path | int | pct | cost | time (epoch ms) | duration (ms)
    display: str
    description: str


@dataclass(frozen=True)
class Report:
    name: str
    description: str
    columns: tuple[Column, ...]
    sql: str
    # (column, fraction): columns that PERCENTILE_SQL fills in after `sql` ran; the rows are
    # then sorted by `sort_by`, descending, and cut at :limit.
    percentiles: tuple[tuple[str, float], ...] = ()
    sort_by: str | None = None
    # The options of `agentd query` that only some reports take (`period`, `by`): another
    # report refuses them rather than ignore them.
    options: tuple[str, ...] = ()


_SESSION = Column("session_id", "text", "the agent's session id")
_SOURCE = Column("source", "text", "`claude` or `opencode`")
_PROJECT = Column("project", "path", "the session's project directory (`sessions.project_path`)")

SESSIONS = Report(
    name="sessions",
    description="Recent sessions with project, status, outcome, duration, tokens, cost",
    columns=(
        _SESSION,
        _SOURCE,
        _PROJECT,
        Column("status", "text", "the latest status, by the events' own time (`sessions.status`)"),
        Column(
            "outcome",
            "text",
            "how the last turn ended: ok, error, interrupted, unknown (`sessions.outcome`)",
        ),
        Column("last_error", "text", "the error that last ended a turn (`sessions.last_error`)"),
        Column("model", "text", "the model last used"),
        Column("started_at", "time", "when the session started"),
        Column("duration_ms", "duration", "`ended_at` (while it runs: `updated_at`) minus start"),
        Column("tool_calls", "int", "tool calls in the session"),
        Column("tokens_in", "int", "prompt + cache read + cache write tokens"),
        Column("tokens_out", "int", "completion + reasoning tokens"),
        Column(
            "cost",
            "cost",
            "cost in USD: Claude's own total, else the sum of the messages' costs (the agent's"
            " figure, else computed from the tokens); empty when unknown",
        ),
    ),
    sql=f"""\
SELECT
    s.id AS session_id,
    s.source AS source,
    s.project_path AS project,
    s.status AS status,
    coalesce(s.outcome, 'unknown') AS outcome,
    s.last_error AS last_error,
    s.model AS model,
    s.created_at AS started_at,
    coalesce(s.ended_at, s.updated_at) - s.created_at AS duration_ms,
    s.tool_call_count AS tool_calls,
    nullif(coalesce(s.prompt_tokens, 0) + coalesce(s.cache_read_tokens, 0)
        + coalesce(s.cache_write_tokens, 0), 0) AS tokens_in,
    nullif(coalesce(s.completion_tokens, 0) + coalesce(s.reasoning_tokens, 0), 0) AS tokens_out,
    round({SESSION_COST}, 6) AS cost
FROM sessions s
WHERE 1
  AND coalesce(s.ended_at, s.updated_at, s.created_at) >= :since
  AND s.created_at < :until
  AND s.source = :source
  AND (s.project_path = :project OR (s.project_path >= :project || '/' AND s.project_path < :project || '0'))
  AND s.id = :session
ORDER BY s.created_at DESC, s.id
LIMIT :limit""",
)

HOT_FILES = Report(
    name="hot-files",
    description="Most edited files: edits, reads, lines added and removed",
    columns=(
        Column("file_path", "path", "the file"),
        Column("edits", "int", "operations that changed the file: created, edited, deleted, moved"),
        Column("reads", "int", "`read` operations"),
        Column("lines_added", "int", "lines added, summed over the edits that report it"),
        Column("lines_removed", "int", "lines removed, likewise"),
        Column("sessions", "int", "sessions that touched the file"),
        Column("last_edited_at", "time", "the latest edit"),
    ),
    # From the file rollup (db/file_rollup.py). The most edited files first: over all time the
    # first entries of an index of per-file totals (of one agent, or summed over a project's
    # files), in a window a sum per file over whole days and hours and the raw rows of its
    # partial first and last hours (query/window.py). Then the other figures for those files
    # only, from their hourly operation counts and the raw edges. --session reads that
    # session's own operations.
    sql="""\
WITH windowed AS (
    SELECT d.file_path, d.edits FROM file_edits_daily d
    WHERE d.day >= :day_from AND d.day < :day_to
      AND d.source = :source
      AND (d.project_path = :project OR (d.project_path >= :project || '/' AND d.project_path < :project || '0'))
    UNION ALL
    SELECT h.file_path, h.edits FROM file_edits_hourly h
    WHERE (h.hour >= :hour_from AND h.hour < :hour_to OR h.hour >= :hour2_from AND h.hour < :hour2_to)
      AND h.source = :source
      AND (h.project_path = :project OR (h.project_path >= :project || '/' AND h.project_path < :project || '0'))
    UNION ALL
    SELECT f.file_path, 1 FROM file_operations f
    WHERE f.file_path IS NOT NULL AND f.operation_type IN ('created', 'edited', 'deleted', 'moved')
      AND (f.created_at >= :raw_from AND f.created_at < :raw_to OR f.created_at >= :raw2_from AND f.created_at < :raw2_to)
      AND f.source = :source
      AND +f.session_id IN (SELECT id FROM sessions WHERE project_path = :project OR (project_path >= :project || '/' AND project_path < :project || '0'))
),
by_source AS (
    SELECT x.file_path, x.edits FROM file_source_edits x
    WHERE :whole = 1
      AND x.source = :source
      AND :project IS NULL
      AND :session IS NULL
    ORDER BY x.edits DESC, x.file_path
    LIMIT :limit
),
by_project AS (
    SELECT p.file_path, sum(p.edits) AS edits FROM file_edits_project p
    WHERE :whole = 1
      AND (p.project_path = :project OR (p.project_path >= :project || '/' AND p.project_path < :project || '0'))
      AND p.source = :source
      AND :session IS NULL
    GROUP BY p.file_path
    ORDER BY edits DESC, p.file_path
    LIMIT :limit
),
hot AS MATERIALIZED (
    SELECT * FROM (
        SELECT a.file_path, a.edits FROM file_edit_totals a
        WHERE :whole = 1
          AND :source IS NULL
          AND :project IS NULL
          AND :session IS NULL
        ORDER BY a.edits DESC, a.file_path
        LIMIT :limit
    )
    UNION ALL SELECT * FROM by_source WHERE :source IS NOT NULL
    UNION ALL SELECT * FROM by_project WHERE :project IS NOT NULL
    UNION ALL
    SELECT * FROM (
        SELECT w.file_path, sum(w.edits) AS edits FROM windowed w
        WHERE :whole = 0
          AND :session IS NULL
        GROUP BY w.file_path
        ORDER BY edits DESC, w.file_path
        LIMIT :limit
    )
),
ops AS (
    SELECT x.file_path, nullif(x.session_id, '') AS session_id, x.reads, x.lines_added, x.added_count, x.lines_removed, x.removed_count, x.last_edited_at
    FROM hot h JOIN file_stats_hourly x ON x.file_path = h.file_path
    WHERE x.hour >= :hour_from AND x.hour < :hour2_to
      AND x.source = :source
      AND x.session_id IN (SELECT id FROM sessions WHERE project_path = :project OR (project_path >= :project || '/' AND project_path < :project || '0'))
    UNION ALL
    SELECT f.file_path, f.session_id, f.operation_type IS 'read', coalesce(f.lines_added, 0), f.lines_added IS NOT NULL, coalesce(f.lines_removed, 0), f.lines_removed IS NOT NULL,
        CASE WHEN f.operation_type IN ('created', 'edited', 'deleted', 'moved') THEN f.created_at END
    FROM file_operations f
    WHERE (f.created_at >= :raw_from AND f.created_at < :raw_to OR f.created_at >= :raw2_from AND f.created_at < :raw2_to)
      AND +f.file_path IN (SELECT file_path FROM hot)
      AND f.source = :source
      AND +f.session_id IN (SELECT id FROM sessions WHERE project_path = :project OR (project_path >= :project || '/' AND project_path < :project || '0'))
),
one_session AS (
    SELECT
        f.file_path,
        sum(f.operation_type IN ('created', 'edited', 'deleted', 'moved')) AS edits,
        sum(f.operation_type = 'read') AS reads,
        sum(f.lines_added) AS lines_added,
        sum(f.lines_removed) AS lines_removed,
        count(DISTINCT f.session_id) AS sessions,
        max(CASE WHEN f.operation_type IN ('created', 'edited', 'deleted', 'moved') THEN f.created_at END) AS last_edited_at
    FROM file_operations f
    WHERE f.file_path IS NOT NULL
      AND f.created_at >= :since
      AND f.created_at < :until
      AND f.source = :source
      AND f.session_id IN (SELECT id FROM sessions WHERE project_path = :project OR (project_path >= :project || '/' AND project_path < :project || '0'))
      AND f.session_id = :session
    GROUP BY f.file_path
    HAVING edits > 0
    ORDER BY edits DESC, f.file_path
    LIMIT :limit
)
SELECT
    h.file_path AS file_path,
    h.edits AS edits,
    sum(o.reads) AS reads,
    CASE WHEN sum(o.added_count) > 0 THEN sum(o.lines_added) END AS lines_added,
    CASE WHEN sum(o.removed_count) > 0 THEN sum(o.lines_removed) END AS lines_removed,
    count(DISTINCT o.session_id) AS sessions,
    max(o.last_edited_at) AS last_edited_at
FROM hot h
JOIN ops o ON o.file_path = h.file_path
GROUP BY h.file_path
UNION ALL SELECT * FROM one_session WHERE :session IS NOT NULL
ORDER BY edits DESC, file_path""",
)

TOOL_ERRORS = Report(
    name="tool-errors",
    description="Error rate by tool, with the commonest error messages",
    columns=(
        Column("tool_name", "text", "the tool"),
        Column("calls", "int", "calls"),
        Column("failed", "int", "calls that failed (`success = 0`)"),
        Column("error_pct", "pct", "failed / calls, in percent"),
        Column(
            "top_errors",
            "text",
            "the three commonest messages as `N× message`, joined by ` | `; a message is "
            "its first line, cut at 80 characters",
        ),
    ),
    # Read from the rollups (db/rollup.py, db/query_rollup.py): whole days and hours of the
    # window from the aggregates, its partial first and last hours from the rows themselves
    # (query/window.py names the stretches); --session reads that session's own aggregates.
    sql="""\
WITH one_session AS (
    SELECT x.tool_name, x.calls, x.failures FROM tool_session_hourly x
    WHERE x.hour >= :hour_from AND x.hour < :hour2_to
      AND x.session_id = :session
      AND x.source = :source
      AND x.session_id IN (SELECT id FROM sessions WHERE project_path = :project OR (project_path >= :project || '/' AND project_path < :project || '0'))
),
session_errors AS (
    SELECT x.tool_name, x.message, x.failures FROM tool_session_errors x
    WHERE x.hour >= :hour_from AND x.hour < :hour2_to
      AND x.session_id = :session
      AND x.source = :source
      AND x.session_id IN (SELECT id FROM sessions WHERE project_path = :project OR (project_path >= :project || '/' AND project_path < :project || '0'))
),
counted AS (
    SELECT a.tool_name, a.calls, a.failures FROM tool_stats_total a
    WHERE :whole = 1
      AND a.source = :source
      AND (a.project_path = :project OR (a.project_path >= :project || '/' AND a.project_path < :project || '0'))
      AND :session IS NULL
    UNION ALL
    SELECT d.tool_name, d.calls, d.failures FROM tool_stats_daily d
    WHERE d.day >= :day_from AND d.day < :day_to AND :whole = 0
      AND d.source = :source
      AND (d.project_path = :project OR (d.project_path >= :project || '/' AND d.project_path < :project || '0'))
      AND :session IS NULL
    UNION ALL
    SELECT h.tool_name, h.calls, h.failures FROM tool_stats_hourly h
    WHERE (h.hour >= :hour_from AND h.hour < :hour_to OR h.hour >= :hour2_from AND h.hour < :hour2_to)
      AND h.source = :source
      AND (h.project_path = :project OR (h.project_path >= :project || '/' AND h.project_path < :project || '0'))
      AND :session IS NULL
    UNION ALL
    SELECT coalesce(t.tool_name, ''), 1, t.success IS 0 FROM tools t
    WHERE t.created_at >= :raw_from AND t.created_at < :raw_to
      AND t.source = :source
      AND +t.session_id IN (SELECT id FROM sessions WHERE project_path = :project OR (project_path >= :project || '/' AND project_path < :project || '0'))
      AND +t.session_id = :session
    UNION ALL
    SELECT coalesce(t.tool_name, ''), 1, t.success IS 0 FROM tools t
    WHERE t.created_at >= :raw2_from AND t.created_at < :raw2_to
      AND t.source = :source
      AND +t.session_id IN (SELECT id FROM sessions WHERE project_path = :project OR (project_path >= :project || '/' AND project_path < :project || '0'))
      AND +t.session_id = :session
    UNION ALL SELECT * FROM one_session WHERE :session IS NOT NULL
),
failures AS (
    SELECT a.tool_name, a.message, a.failures FROM tool_errors_total a
    WHERE :whole = 1
      AND a.source = :source
      AND (a.project_path = :project OR (a.project_path >= :project || '/' AND a.project_path < :project || '0'))
      AND :session IS NULL
    UNION ALL
    SELECT d.tool_name, d.message, d.failures FROM tool_errors_daily d
    WHERE d.day >= :day_from AND d.day < :day_to AND :whole = 0
      AND d.source = :source
      AND (d.project_path = :project OR (d.project_path >= :project || '/' AND d.project_path < :project || '0'))
      AND :session IS NULL
    UNION ALL
    SELECT h.tool_name, h.message, h.failures FROM tool_errors_hourly h
    WHERE (h.hour >= :hour_from AND h.hour < :hour_to OR h.hour >= :hour2_from AND h.hour < :hour2_to)
      AND h.source = :source
      AND (h.project_path = :project OR (h.project_path >= :project || '/' AND h.project_path < :project || '0'))
      AND :session IS NULL
    UNION ALL
    SELECT coalesce(t.tool_name, ''), coalesce(nullif(substr(trim(substr(t.error_message, 1, instr(t.error_message || char(10), char(10)) - 1)), 1, 80), ''), '(no message)'), 1 FROM tools t
    WHERE t.success = 0
      AND t.created_at >= :raw_from AND t.created_at < :raw_to
      AND t.source = :source
      AND +t.session_id IN (SELECT id FROM sessions WHERE project_path = :project OR (project_path >= :project || '/' AND project_path < :project || '0'))
      AND +t.session_id = :session
    UNION ALL
    SELECT coalesce(t.tool_name, ''), coalesce(nullif(substr(trim(substr(t.error_message, 1, instr(t.error_message || char(10), char(10)) - 1)), 1, 80), ''), '(no message)'), 1 FROM tools t
    WHERE t.success = 0
      AND t.created_at >= :raw2_from AND t.created_at < :raw2_to
      AND t.source = :source
      AND +t.session_id IN (SELECT id FROM sessions WHERE project_path = :project OR (project_path >= :project || '/' AND project_path < :project || '0'))
      AND +t.session_id = :session
    UNION ALL SELECT * FROM session_errors WHERE :session IS NOT NULL
),
calls AS (
    SELECT tool_name, sum(calls) AS calls, sum(failures) AS failed
    FROM counted
    GROUP BY tool_name
),
messages AS (
    SELECT tool_name, message, sum(failures) AS n
    FROM failures
    GROUP BY tool_name, message
),
per_tool AS MATERIALIZED (
    SELECT tool_name,
        group_concat(CASE WHEN rank <= 3 THEN n || '× ' || message END, ' | ') AS top_errors
    FROM (
        SELECT tool_name, n, message,
            row_number() OVER (PARTITION BY tool_name ORDER BY n DESC, message) AS rank
        FROM messages
        ORDER BY tool_name, rank
    )
    GROUP BY tool_name
)
SELECT
    nullif(c.tool_name, '') AS tool_name,
    c.calls AS calls,
    c.failed AS failed,
    round(100.0 * c.failed / c.calls, 1) AS error_pct,
    p.top_errors AS top_errors
FROM calls c
LEFT JOIN per_tool p ON p.tool_name = c.tool_name
WHERE c.calls > 0
ORDER BY failed DESC, c.calls DESC, c.tool_name
LIMIT :limit""",
)

SLOW_TOOLS = Report(
    name="slow-tools",
    description="Duration by tool: p50, p95 and max, slowest first",
    columns=(
        Column("tool_name", "text", "the tool"),
        Column("calls", "int", "calls with a known duration"),
        Column("p50_ms", "duration", "median duration (nearest rank)"),
        Column("p95_ms", "duration", "95th percentile duration (nearest rank)"),
        Column("max_ms", "duration", "the longest call"),
        Column(
            "percentiles",
            "text",
            "`exact`, or `histogram`: p50_ms and p95_ms read from duration buckets, each within "
            "1% of the exact value (max_ms stays exact)",
        ),
    ),
    # Calls from the rollups like tool-errors'; query/percentiles.py fills in the duration
    # columns, from the window's durations (PERCENTILE_SQL) when it holds few calls or the
    # histograms cannot answer its filters, else from the histograms (HISTOGRAM_SQL, MAX_SQL);
    # the rows are then sorted by p95_ms (slowest first) and cut at :limit.
    sql="""\
WITH one_session AS (
    SELECT x.tool_name, x.duration_count AS calls FROM tool_session_hourly x
    WHERE x.hour >= :hour_from AND x.hour < :hour2_to
      AND x.session_id = :session
      AND x.source = :source
      AND x.session_id IN (SELECT id FROM sessions WHERE project_path = :project OR (project_path >= :project || '/' AND project_path < :project || '0'))
),
timed AS (
    SELECT a.tool_name, a.duration_count AS calls FROM tool_stats_total a
    WHERE :whole = 1
      AND a.source = :source
      AND (a.project_path = :project OR (a.project_path >= :project || '/' AND a.project_path < :project || '0'))
      AND :session IS NULL
    UNION ALL
    SELECT d.tool_name, d.duration_count FROM tool_stats_daily d
    WHERE d.day >= :day_from AND d.day < :day_to AND :whole = 0
      AND d.source = :source
      AND (d.project_path = :project OR (d.project_path >= :project || '/' AND d.project_path < :project || '0'))
      AND :session IS NULL
    UNION ALL
    SELECT h.tool_name, h.duration_count FROM tool_stats_hourly h
    WHERE (h.hour >= :hour_from AND h.hour < :hour_to OR h.hour >= :hour2_from AND h.hour < :hour2_to)
      AND h.source = :source
      AND (h.project_path = :project OR (h.project_path >= :project || '/' AND h.project_path < :project || '0'))
      AND :session IS NULL
    UNION ALL
    SELECT coalesce(t.tool_name, ''), 1 FROM tools t
    WHERE t.duration_ms IS NOT NULL
      AND t.created_at >= :raw_from AND t.created_at < :raw_to
      AND t.source = :source
      AND +t.session_id IN (SELECT id FROM sessions WHERE project_path = :project OR (project_path >= :project || '/' AND project_path < :project || '0'))
      AND +t.session_id = :session
    UNION ALL
    SELECT coalesce(t.tool_name, ''), 1 FROM tools t
    WHERE t.duration_ms IS NOT NULL
      AND t.created_at >= :raw2_from AND t.created_at < :raw2_to
      AND t.source = :source
      AND +t.session_id IN (SELECT id FROM sessions WHERE project_path = :project OR (project_path >= :project || '/' AND project_path < :project || '0'))
      AND +t.session_id = :session
    UNION ALL SELECT * FROM one_session WHERE :session IS NOT NULL
)
SELECT
    nullif(tool_name, '') AS tool_name,
    sum(calls) AS calls,
    NULL AS p50_ms,
    NULL AS p95_ms,
    NULL AS max_ms,
    NULL AS percentiles
FROM timed
GROUP BY tool_name
HAVING sum(calls) > 0""",
    percentiles=(("p50_ms", 0.50), ("p95_ms", 0.95), ("max_ms", 1.0)),
    sort_by="p95_ms",
)

# Exact percentiles: the durations of the window's calls, each tool's in increasing order; the
# value at nearest rank ⌈fraction × calls⌉ is the percentile.
PERCENTILE_SQL = """\
SELECT nullif(t.tool_name, '') AS tool_name, t.duration_ms
FROM tools t
WHERE t.duration_ms IS NOT NULL
  AND t.created_at >= :since
  AND t.created_at < :until
  AND t.source = :source
  AND t.session_id IN (SELECT id FROM sessions WHERE project_path = :project OR (project_path >= :project || '/' AND project_path < :project || '0'))
  AND t.session_id = :session
ORDER BY 1, 2"""

# Estimated percentiles: how many of the window's calls fall in each duration bucket
# (db/rollup.py), per tool. All time reads the all-time histograms (in total, of the projects
# under --project, of the --session); a window with neither reads whole days, whole hours, and
# the raw rows of its partial first and last hours. A window with --project or --session is
# answered exactly instead.
HISTOGRAM_SQL = """\
WITH by_project AS (
    SELECT p.tool_name, p.bucket_ms, p.calls FROM tool_duration_project p
    WHERE :whole = 1
      AND p.source = :source
      AND (p.project_path = :project OR (p.project_path >= :project || '/' AND p.project_path < :project || '0'))
      AND :session IS NULL
),
by_session AS (
    SELECT x.tool_name, x.bucket_ms, x.calls FROM tool_duration_session x
    WHERE :whole = 1
      AND x.session_id = :session
      AND x.source = :source
      AND x.session_id IN (SELECT id FROM sessions WHERE project_path = :project OR (project_path >= :project || '/' AND project_path < :project || '0'))
),
buckets AS (
    SELECT a.tool_name, a.bucket_ms, a.calls FROM tool_duration_total a
    WHERE :whole = 1
      AND a.source = :source
      AND :project IS NULL
      AND :session IS NULL
    UNION ALL SELECT * FROM by_project WHERE :project IS NOT NULL
    UNION ALL SELECT * FROM by_session WHERE :session IS NOT NULL
    UNION ALL
    SELECT d.tool_name, d.bucket_ms, d.calls FROM tool_duration_daily d
    WHERE d.day >= :day_from AND d.day < :day_to AND :whole = 0
      AND d.source = :source
    UNION ALL
    SELECT h.tool_name, h.bucket_ms, h.calls FROM tool_duration_hourly h
    WHERE (h.hour >= :hour_from AND h.hour < :hour_to OR h.hour >= :hour2_from AND h.hour < :hour2_to)
      AND h.source = :source
    UNION ALL
    SELECT coalesce(t.tool_name, ''), (CASE WHEN CAST(t.duration_ms AS INTEGER) < 1 THEN CAST(t.duration_ms AS INTEGER) ELSE (SELECT b.lo_ms FROM tool_duration_buckets b WHERE b.lo_ms <= CAST(t.duration_ms AS INTEGER) ORDER BY b.lo_ms DESC LIMIT 1) END), 1 FROM tools t
    WHERE t.duration_ms IS NOT NULL
      AND t.created_at >= :raw_from AND t.created_at < :raw_to
      AND t.source = :source
    UNION ALL
    SELECT coalesce(t.tool_name, ''), (CASE WHEN CAST(t.duration_ms AS INTEGER) < 1 THEN CAST(t.duration_ms AS INTEGER) ELSE (SELECT b.lo_ms FROM tool_duration_buckets b WHERE b.lo_ms <= CAST(t.duration_ms AS INTEGER) ORDER BY b.lo_ms DESC LIMIT 1) END), 1 FROM tools t
    WHERE t.duration_ms IS NOT NULL
      AND t.created_at >= :raw2_from AND t.created_at < :raw2_to
      AND t.source = :source
)
SELECT nullif(tool_name, '') AS tool_name, bucket_ms, sum(calls) AS calls
FROM buckets
GROUP BY tool_name, bucket_ms
HAVING sum(calls) > 0"""

# The exact max_ms of a histogram answer, for every tool at once (:tops, a JSON array of
# [tool_name, the lowest duration of its top bucket]): the longest of the tool's calls in the
# window from there up, through the (tool_name, duration_ms) index: a few rows each.
MAX_SQL = """\
SELECT tp.value ->> 0 AS tool_name, (
    SELECT max(t.duration_ms)
    FROM tools t
    WHERE t.tool_name IS tp.value ->> 0
      AND t.duration_ms >= tp.value ->> 1
      AND t.created_at >= :since
      AND t.created_at < :until
      AND t.source = :source
      AND +t.session_id IN (SELECT id FROM sessions WHERE project_path = :project OR (project_path >= :project || '/' AND project_path < :project || '0'))
      AND +t.session_id = :session
) AS max_ms
FROM json_each(:tops) tp"""

TOP_SESSIONS = Report(
    name="top-sessions",
    description="Sessions with the most tool activity",
    columns=(
        _SESSION,
        _SOURCE,
        _PROJECT,
        Column("tool_calls", "int", "tool calls in the window"),
        Column("failed", "int", "of which failed"),
        Column("files_edited", "int", "distinct files edited in the window"),
        Column("started_at", "time", "when the session started"),
        Column("duration_ms", "duration", "as in `sessions`"),
    ),
    # From the query rollup (db/query_rollup.py): all time from per-session totals, the
    # busiest first; a window from per-session hours and the raw rows of its partial first and
    # last hours (query/window.py). files_edited likewise, for the sessions shown only.
    sql="""\
WITH windowed AS (
    SELECT x.session_id, x.calls, x.failures FROM session_hourly x
    WHERE x.hour >= :hour_from AND x.hour < :hour2_to AND :whole = 0
      AND x.session_id = :session
    UNION ALL
    SELECT t.session_id, 1, t.success IS 0 FROM tools t
    WHERE t.created_at >= :raw_from AND t.created_at < :raw_to
      AND +t.session_id = :session
    UNION ALL
    SELECT t.session_id, 1, t.success IS 0 FROM tools t
    WHERE t.created_at >= :raw2_from AND t.created_at < :raw2_to
      AND +t.session_id = :session
),
a AS MATERIALIZED (
    SELECT * FROM (
        SELECT x.session_id, x.calls AS tool_calls, x.failures AS failed
        FROM tool_session_totals x JOIN sessions s ON s.id = x.session_id
        WHERE :whole = 1
          AND s.source = :source
          AND (s.project_path = :project OR (s.project_path >= :project || '/' AND s.project_path < :project || '0'))
          AND x.session_id = :session
        ORDER BY x.calls DESC, x.session_id
        LIMIT :limit
    )
    UNION ALL
    SELECT * FROM (
        SELECT w.session_id, sum(w.calls) AS tool_calls, sum(w.failures) AS failed
        FROM windowed w JOIN sessions s ON s.id = w.session_id
        WHERE :whole = 0
          AND s.source = :source
          AND (s.project_path = :project OR (s.project_path >= :project || '/' AND s.project_path < :project || '0'))
        GROUP BY w.session_id
        ORDER BY tool_calls DESC, w.session_id
        LIMIT :limit
    )
)
SELECT
    a.session_id AS session_id,
    s.source AS source,
    s.project_path AS project,
    a.tool_calls AS tool_calls,
    a.failed AS failed,
    (SELECT count(DISTINCT e.file_path) FROM (
        SELECT x.file_path FROM file_session_edits x
        WHERE x.session_id = a.session_id AND x.hour >= :hour_from AND x.hour < :hour2_to
        UNION ALL
        SELECT f.file_path FROM file_operations f
        WHERE f.session_id = a.session_id AND f.operation_type IN ('created', 'edited', 'deleted', 'moved')
          AND f.created_at >= :raw_from AND f.created_at < :raw_to
        UNION ALL
        SELECT f.file_path FROM file_operations f
        WHERE f.session_id = a.session_id AND f.operation_type IN ('created', 'edited', 'deleted', 'moved')
          AND f.created_at >= :raw2_from AND f.created_at < :raw2_to
    ) e) AS files_edited,
    s.created_at AS started_at,
    coalesce(s.ended_at, s.updated_at) - s.created_at AS duration_ms
FROM a
JOIN sessions s ON s.id = a.session_id
WHERE a.tool_calls > 0
ORDER BY a.tool_calls DESC, a.session_id
LIMIT :limit""",
)

COMPACTIONS = Report(
    name="compactions",
    description="Context compactions by session, with tokens before/after",
    columns=(
        _SESSION,
        _SOURCE,
        _PROJECT,
        Column("compactions", "int", "compactions in the window"),
        Column("auto", "int", "of which triggered automatically (the context was full)"),
        Column("manual", "int", "of which asked for (`/compact`)"),
        Column("avg_tokens_before", "int", "average context size before, in tokens"),
        Column("avg_tokens_after", "int", "average context size after, in tokens"),
        Column(
            "avg_interval_ms",
            "duration",
            "session start to its last compaction, divided by the compactions: how long a "
            "context lasts",
        ),
        Column("last_at", "time", "the latest compaction"),
    ),
    # All time from per-session totals (db/query_rollup.py); a window from the events.
    sql="""\
SELECT * FROM (
    SELECT
        nullif(t.session_id, '') AS session_id,
        s.source AS source,
        s.project_path AS project,
        t.compactions AS compactions,
        t.auto AS auto,
        t.manual AS manual,
        t.avg_tokens_before AS avg_tokens_before,
        t.avg_tokens_after AS avg_tokens_after,
        (t.last_at - s.created_at) / t.compactions AS avg_interval_ms,
        t.last_at AS last_at
    FROM (
        SELECT c.session_id, sum(c.compactions) AS compactions,
            CASE WHEN sum(c.triggers) > 0 THEN sum(c.auto) END AS auto,
            CASE WHEN sum(c.triggers) > 0 THEN sum(c.manual) END AS manual,
            CAST(round(sum(c.tokens_before_sum) / nullif(sum(c.tokens_before_count), 0)) AS INTEGER) AS avg_tokens_before,
            CAST(round(sum(c.tokens_after_sum) / nullif(sum(c.tokens_after_count), 0)) AS INTEGER) AS avg_tokens_after,
            max(c.last_at) AS last_at
        FROM compaction_totals c
        WHERE :whole = 1
          AND c.source = :source
          AND c.session_id IN (SELECT id FROM sessions WHERE project_path = :project OR (project_path >= :project || '/' AND project_path < :project || '0'))
          AND c.session_id = :session
        GROUP BY c.session_id
        ORDER BY compactions DESC, last_at DESC
        LIMIT :limit
    ) t
    LEFT JOIN sessions s ON s.id = t.session_id
)
UNION ALL
SELECT * FROM (
    SELECT
        c.session_id AS session_id,
        s.source AS source,
        s.project_path AS project,
        count(*) AS compactions,
        sum(c.trigger = 'auto') AS auto,
        sum(c.trigger = 'manual') AS manual,
        CAST(round(avg(c.tokens_before)) AS INTEGER) AS avg_tokens_before,
        CAST(round(avg(c.tokens_after)) AS INTEGER) AS avg_tokens_after,
        (max(c.created_at) - min(s.created_at)) / count(*) AS avg_interval_ms,
        max(c.created_at) AS last_at
    FROM compaction_events c
    LEFT JOIN sessions s ON s.id = c.session_id
    WHERE :whole = 0
      AND c.created_at >= :since
      AND c.created_at < :until
      AND c.source = :source
      AND (s.project_path = :project OR (s.project_path >= :project || '/' AND s.project_path < :project || '0'))
      AND c.session_id = :session
    GROUP BY c.session_id
    ORDER BY compactions DESC, last_at DESC
    LIMIT :limit
)
ORDER BY compactions DESC, last_at DESC
LIMIT :limit""",
)

ERRORS = Report(
    name="errors",
    description="Recent session errors (API errors, limits), newest first",
    columns=(
        Column("created_at", "time", "when it happened"),
        _SESSION,
        _SOURCE,
        _PROJECT,
        Column("error_type", "text", "the error's kind, as the agent named it"),
        Column("status_code", "int", "the HTTP status, for API errors"),
        Column("message", "text", "the error message"),
    ),
    sql="""\
SELECT
    e.created_at AS created_at,
    e.session_id AS session_id,
    e.source AS source,
    s.project_path AS project,
    e.error_type AS error_type,
    e.status_code AS status_code,
    e.error_message AS message
FROM session_errors e
LEFT JOIN sessions s ON s.id = e.session_id
WHERE 1
  AND e.created_at >= :since
  AND e.created_at < :until
  AND e.source = :source
  AND (s.project_path = :project OR (s.project_path >= :project || '/' AND s.project_path < :project || '0'))
  AND e.session_id = :session
ORDER BY e.created_at DESC, e.id
LIMIT :limit""",
)

REPORTS: dict[str, Report] = {
    r.name: r
    for r in (SESSIONS, HOT_FILES, TOOL_ERRORS, SLOW_TOOLS, TOP_SESSIONS, COMPACTIONS, ERRORS)
}


def _add_usage_reports() -> None:
    # Their own module (query/usage_reports.py), which builds on the classes above.
    from agentd.query.usage_reports import USAGE_REPORTS

    REPORTS.update((r.name, r) for r in USAGE_REPORTS)


_add_usage_reports()

_PARAM = re.compile(r":([a-z_]+)\b")


def render(sql: str, params: dict[str, Any]) -> str:
    """The statement to run: `sql` without the lines whose filter parameter is None."""
    kept = [
        line
        for line in sql.splitlines()
        if all(params.get(name) is not None for name in _PARAM.findall(line) if name in FILTERS)
    ]
    return "\n".join(kept)


def nearest_rank(fraction: float, count: int) -> int:
    """The 1-based rank of the `fraction` percentile among `count` sorted values."""
    return max(1, math.ceil(round(fraction * count, 9)))


def closest(name: str) -> str | None:
    """The report name a mistyped `name` most likely meant."""
    import difflib

    matches = difflib.get_close_matches(name.lower(), list(REPORTS), n=1, cutoff=0.5)
    if matches:
        return matches[0]
    # "errors" for "err", "hot-files" for "hot": a prefix is a strong hint too.
    prefixed = [r for r in REPORTS if r.startswith(name.lower())]
    return prefixed[0] if len(prefixed) == 1 else None
