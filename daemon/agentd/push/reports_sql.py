"""The team reports on the server: `agentd query`'s canned reports as PostgreSQL functions,
per machine and user (server migration 2; docs/team.md shows each with an example).

Each takes an optional window, `since` and `until` in epoch ms (NULL: unbounded), the way
`agentd query --since/--until` does; `agentd.ms_ago('7 days')` turns an interval into one.
They are functions rather than views so that a window narrows the rows before they are grouped.
"""

from __future__ import annotations

__all__ = ["REPORTS_SQL", "REPORT_FUNCTIONS", "TEAM_SUMMARY_SQL"]

REPORT_FUNCTIONS = (
    "report_sessions",
    "report_hot_files",
    "report_tool_errors",
    "report_slow_tools",
    "report_top_sessions",
    "report_compactions",
    "report_errors",
)

_WINDOW = "since bigint DEFAULT NULL, until bigint DEFAULT NULL"


def _in(column: str) -> str:
    return f"(since IS NULL OR {column} >= since) AND (until IS NULL OR {column} < until)"


REPORTS_SQL = f"""
CREATE FUNCTION agentd.ms_ago(ago interval) RETURNS bigint LANGUAGE sql STABLE
AS $$ SELECT (extract(epoch FROM now() - ago) * 1000)::bigint $$;

CREATE FUNCTION agentd.report_sessions({_WINDOW})
RETURNS TABLE (machine_id text, user_name text, session_id text, source text, project text,
    status text, model text, started_at bigint, duration_ms bigint, tool_calls bigint,
    tokens_in bigint, tokens_out bigint, cost double precision)
LANGUAGE sql STABLE AS $$
SELECT s.machine_id, s.user_name, s.id, s.source, s.project_path, s.status, s.model,
    s.created_at, coalesce(s.ended_at, s.updated_at) - s.created_at, s.tool_call_count,
    nullif(coalesce(s.prompt_tokens, 0) + coalesce(s.cache_read_tokens, 0)
        + coalesce(s.cache_write_tokens, 0), 0),
    nullif(coalesce(s.completion_tokens, 0) + coalesce(s.reasoning_tokens, 0), 0),
    round(s.cost::numeric, 6)::double precision
FROM agentd.sessions s
WHERE (since IS NULL OR coalesce(s.ended_at, s.updated_at, s.created_at) >= since)
  AND (until IS NULL OR s.created_at < until)
ORDER BY s.created_at DESC, s.machine_id, s.id
$$;

CREATE FUNCTION agentd.report_hot_files({_WINDOW})
RETURNS TABLE (machine_id text, user_name text, file_path text, edits bigint, reads bigint,
    lines_added bigint, lines_removed bigint, sessions bigint, last_edited_at bigint)
LANGUAGE sql STABLE AS $$
SELECT f.machine_id, max(f.user_name), f.file_path,
    count(*) FILTER (WHERE f.operation_type IN ('created', 'edited', 'deleted', 'moved')),
    count(*) FILTER (WHERE f.operation_type = 'read'),
    sum(f.lines_added), sum(f.lines_removed), count(DISTINCT f.session_id),
    max(f.created_at) FILTER (WHERE f.operation_type IN ('created', 'edited', 'deleted', 'moved'))
FROM agentd.file_operations f
WHERE f.file_path IS NOT NULL AND {_in("f.created_at")}
GROUP BY f.machine_id, f.file_path
HAVING count(*) FILTER (WHERE f.operation_type IN ('created', 'edited', 'deleted', 'moved')) > 0
ORDER BY 4 DESC, f.machine_id, f.file_path
$$;

CREATE FUNCTION agentd.report_tool_errors({_WINDOW})
RETURNS TABLE (machine_id text, user_name text, tool_name text, calls bigint, failed bigint,
    error_pct double precision, top_errors text)
LANGUAGE sql STABLE AS $$
WITH t AS (
    SELECT * FROM agentd.tools t WHERE {_in("t.created_at")}
),
messages AS (
    SELECT machine_id, tool_name,
        coalesce(nullif(left(trim(split_part(error_message, E'\\n', 1)), 80), ''), '(no message)')
            AS message,
        count(*) AS n
    FROM t WHERE success = 0
    GROUP BY 1, 2, 3
),
ranked AS (
    SELECT *, row_number() OVER (PARTITION BY machine_id, tool_name ORDER BY n DESC, message) AS r
    FROM messages
)
SELECT t.machine_id, max(t.user_name), t.tool_name, count(*),
    count(*) FILTER (WHERE t.success = 0),
    round(100.0 * count(*) FILTER (WHERE t.success = 0) / count(*), 1)::double precision,
    (SELECT string_agg(r.n || '× ' || r.message, ' | ' ORDER BY r.r) FROM ranked r
        WHERE r.machine_id = t.machine_id AND r.tool_name IS NOT DISTINCT FROM t.tool_name
          AND r.r <= 3)
FROM t
GROUP BY t.machine_id, t.tool_name
ORDER BY 5 DESC, 4 DESC, t.machine_id, t.tool_name
$$;

CREATE FUNCTION agentd.report_slow_tools({_WINDOW})
RETURNS TABLE (machine_id text, user_name text, tool_name text, calls bigint, p50_ms bigint,
    p95_ms bigint, max_ms bigint)
LANGUAGE sql STABLE AS $$
-- percentile_disc is the nearest rank, as in `agentd query slow-tools`.
SELECT t.machine_id, max(t.user_name), t.tool_name, count(*),
    percentile_disc(0.5) WITHIN GROUP (ORDER BY t.duration_ms),
    percentile_disc(0.95) WITHIN GROUP (ORDER BY t.duration_ms),
    max(t.duration_ms)
FROM agentd.tools t
WHERE t.duration_ms IS NOT NULL AND {_in("t.created_at")}
GROUP BY t.machine_id, t.tool_name
ORDER BY 6 DESC, t.machine_id, t.tool_name
$$;

CREATE FUNCTION agentd.report_top_sessions({_WINDOW})
RETURNS TABLE (machine_id text, user_name text, session_id text, source text, project text,
    tool_calls bigint, failed bigint, files_edited bigint, started_at bigint, duration_ms bigint)
LANGUAGE sql STABLE AS $$
WITH calls AS (
    SELECT machine_id, session_id, count(*) AS n, count(*) FILTER (WHERE success = 0) AS failed
    FROM agentd.tools t WHERE {_in("t.created_at")}
    GROUP BY 1, 2
),
edits AS (
    SELECT machine_id, session_id, count(DISTINCT file_path) AS n
    FROM agentd.file_operations f
    WHERE f.operation_type IN ('created', 'edited', 'deleted', 'moved') AND {_in("f.created_at")}
    GROUP BY 1, 2
)
SELECT c.machine_id, s.user_name, c.session_id, s.source, s.project_path, c.n, c.failed,
    coalesce(e.n, 0), s.created_at, coalesce(s.ended_at, s.updated_at) - s.created_at
FROM calls c
LEFT JOIN agentd.sessions s ON s.machine_id = c.machine_id AND s.id = c.session_id
LEFT JOIN edits e ON e.machine_id = c.machine_id AND e.session_id = c.session_id
ORDER BY c.n DESC, c.machine_id, c.session_id
$$;

CREATE FUNCTION agentd.report_compactions({_WINDOW})
RETURNS TABLE (machine_id text, user_name text, session_id text, source text, project text,
    compactions bigint, auto bigint, manual bigint, avg_tokens_before bigint,
    avg_tokens_after bigint, last_at bigint)
LANGUAGE sql STABLE AS $$
SELECT c.machine_id, max(c.user_name), c.session_id, max(s.source), max(s.project_path),
    count(*), count(*) FILTER (WHERE c.trigger = 'auto'),
    count(*) FILTER (WHERE c.trigger = 'manual'),
    round(avg(c.tokens_before))::bigint, round(avg(c.tokens_after))::bigint, max(c.created_at)
FROM agentd.compaction_events c
LEFT JOIN agentd.sessions s ON s.machine_id = c.machine_id AND s.id = c.session_id
WHERE {_in("c.created_at")}
GROUP BY c.machine_id, c.session_id
ORDER BY 6 DESC, 11 DESC
$$;

CREATE FUNCTION agentd.report_errors({_WINDOW})
RETURNS TABLE (machine_id text, user_name text, created_at bigint, session_id text,
    source text, project text, error_type text, status_code bigint, message text)
LANGUAGE sql STABLE AS $$
SELECT e.machine_id, e.user_name, e.created_at, e.session_id, e.source, s.project_path,
    e.error_type, e.status_code, e.error_message
FROM agentd.session_errors e
LEFT JOIN agentd.sessions s ON s.machine_id = e.machine_id AND s.id = e.session_id
WHERE {_in("e.created_at")}
ORDER BY e.created_at DESC, e.machine_id, e.id
$$;

-- One row per machine: who it is, what it captured, and when it last pushed.
CREATE VIEW agentd.team_summary AS
SELECT m.machine_id, m.user_name, m.hostname, m.content_level, m.last_push_at,
    (SELECT count(*) FROM agentd.sessions s WHERE s.machine_id = m.machine_id) AS sessions,
    (SELECT count(*) FROM agentd.tools t WHERE t.machine_id = m.machine_id) AS tool_calls,
    (SELECT count(*) FROM agentd.tools t WHERE t.machine_id = m.machine_id AND t.success = 0)
        AS failed_tool_calls,
    (SELECT sum(cost) FROM agentd.sessions s WHERE s.machine_id = m.machine_id) AS cost
FROM agentd.machines m;
"""

# Server migration 5: a machine is listed once a push of it committed (last_push_at is written
# in the transaction of its first rows), not from the attempt, which writes agentd.machines
# first: a machine whose first push failed showed with 0 sessions.
TEAM_SUMMARY_SQL = """
CREATE OR REPLACE VIEW agentd.team_summary AS
SELECT m.machine_id, m.user_name, m.hostname, m.content_level, m.last_push_at,
    (SELECT count(*) FROM agentd.sessions s WHERE s.machine_id = m.machine_id) AS sessions,
    (SELECT count(*) FROM agentd.tools t WHERE t.machine_id = m.machine_id) AS tool_calls,
    (SELECT count(*) FROM agentd.tools t WHERE t.machine_id = m.machine_id AND t.success = 0)
        AS failed_tool_calls,
    (SELECT sum(cost) FROM agentd.sessions s WHERE s.machine_id = m.machine_id) AS cost
FROM agentd.machines m
WHERE m.last_push_at IS NOT NULL;
"""
