"""The usage reports of `agentd query`: cost and tokens by period, 5-hour blocks, cache, context,
subagents (docs/usage.md). Described like reports.py's, which appends them to REPORTS.

They read `usage_hourly`, the hourly rollup of `messages` that migration 0011's triggers keep,
so a month is a few thousand rollup rows to sum however many messages it had. Times therefore
have hour granularity: the window takes whole hours, from the hour `--since` falls in to the end
of the hour `--until` falls in (`blocks` chooses whole blocks that overlap it). A cost is the
agent's figure where it gave one, else the one computed from tokens (`cost_source`); messages
whose price is unknown are counted in `unpriced`, and a cost made only of them is NULL, not 0.
Two extra parameters: `:period` (`day`, `week`, `month`) and `:by` (`project`, `model`, `agent`,
`machine`, or NULL for no split), from `--period` and `--by` (USAGE.options: the other reports
refuse them); `:machine` is this host's name.
"""

from __future__ import annotations

from agentd.query.costs import SUMMED_COST
from agentd.query.reports import Column, Report

__all__ = ["USAGE_REPORTS", "PERIODS", "BY"]

PERIODS = ("day", "week", "month")
BY = ("project", "model", "agent", "machine")

_COST = Column(
    "cost", "cost", "USD: the agent's figure, else computed from tokens; NULL if unknown"
)
_UNPRICED = Column("unpriced", "int", "messages whose cost is unknown (model without a price)")
# Filters on the rollup, one per line (reports.render drops those not given). _CHOSEN choose the
# messages; _FILTERS add the window, in whole hours, and `:since < :until` so that an empty
# window (`--since now --until now`, which would still take the hour it falls in) has no row.
_CHOSEN = """\
  AND u.source = :source
  AND u.session_id IN (SELECT id FROM sessions WHERE project_path = :project OR (project_path >= :project || '/' AND project_path < :project || '0'))
  AND u.session_id = :session"""
_FILTERS = f"""\
  AND :since < :until
  AND u.hour > :since - 3600000
  AND u.hour < :until
{_CHOSEN}"""
_SUMMED_COST = f"round({SUMMED_COST}, 6)"

USAGE = Report(
    name="usage",
    description="Tokens and cost by day, week or month (--period), split --by project|model|agent|machine",
    columns=(
        Column(
            "period", "text", "the local day (`2026-11-28`), week (its Monday) or month (`2026-11`)"
        ),
        Column(
            "key",
            "text",
            "the --by value: project directory, model, agent (`claude`, `opencode`) or machine; empty without --by",
        ),
        Column("sessions", "int", "sessions with messages in the period"),
        Column("responses", "int", "model responses (assistant messages)"),
        Column("input_tokens", "int", "uncached input tokens"),
        Column("output_tokens", "int", "output tokens"),
        Column("cache_read_tokens", "int", "prompt-cache reads"),
        Column("cache_write_tokens", "int", "prompt-cache writes"),
        Column("total_tokens", "int", "the four above"),
        _COST,
        _UNPRICED,
    ),
    options=("period", "by"),
    sql=f"""\
SELECT
    CASE :period
        WHEN 'month' THEN strftime('%Y-%m', u.hour / 1000, 'unixepoch', 'localtime')
        WHEN 'week' THEN date(u.hour / 1000, 'unixepoch', 'localtime', '-6 days', 'weekday 1')
        ELSE date(u.hour / 1000, 'unixepoch', 'localtime') END AS period,
    CASE :by
        WHEN 'project' THEN (SELECT s.project_path FROM sessions s WHERE s.id = u.session_id)
        WHEN 'model' THEN nullif(u.model, '')
        WHEN 'agent' THEN u.source
        WHEN 'machine' THEN :machine
        ELSE '' END AS key,
    count(DISTINCT u.session_id) AS sessions,
    sum(u.responses) AS responses,
    sum(u.prompt_tokens) AS input_tokens,
    sum(u.completion_tokens) AS output_tokens,
    sum(u.cache_read_tokens) AS cache_read_tokens,
    sum(u.cache_write_tokens) AS cache_write_tokens,
    sum(u.prompt_tokens + u.completion_tokens + u.cache_read_tokens + u.cache_write_tokens) AS total_tokens,
    {_SUMMED_COST} AS cost,
    sum(u.unpriced) AS unpriced
FROM usage_hourly u
WHERE u.responses > 0
{_FILTERS}
GROUP BY period, key
ORDER BY period DESC, sum(u.cost) DESC, key
LIMIT :limit""",
)

BLOCKS = Report(
    name="blocks",
    description="5-hour billing blocks: tokens, cost, burn rate and projection to the block's end",
    columns=(
        Column("block_start", "time", "the hour of the block's first message"),
        Column("block_end", "time", "five hours later"),
        Column(
            "active",
            "int",
            "1 while the block runs (now is from its start to before its end; a block that "
            "starts after now, from messages stamped in the future, is not active)",
        ),
        Column("sessions", "int", "sessions with messages in the block"),
        Column("responses", "int", "model responses"),
        Column("total_tokens", "int", "input, output, cache read and write tokens"),
        _COST,
        _UNPRICED,
        Column("last_at", "time", "the block's last message"),
        Column(
            "cost_per_hour",
            "cost",
            "burn rate: cost / time from block start to its last message (at least a minute)",
        ),
        Column("tokens_per_minute", "int", "burn rate in tokens"),
        Column("projected_cost", "cost", "active block: cost + burn rate until the block's end"),
    ),
    # A block starts at the hour of the first message at or after the previous block's end
    # (ccusage's rule), so where blocks start depends on the history, not on the window:
    # --since/--until choose the blocks shown (those that overlap the window), whole. The chain
    # is walked from an hour that certainly starts a block: one that comes 5 hours or more
    # after the previous message hour (that message's block has ended by then), or the first.
    # `back` finds the latest such hour at or before the window's start (`:raw_from`, before
    # every message without --since), jumping back over 4-hour stretches that have messages:
    # no hour after a message hour p and less than 5 hours from it can start a chain. `starts`
    # walks forward from it. Each step is one lookup on the rollup's (hour, ...) key; only the
    # blocks shown are summed, with a distinct count of their sessions, each an hour range of
    # that key (`+u.source`: an index SQLite would build on source costs 80 ms at 1M messages).
    sql=f"""\
WITH RECURSIVE back(at) AS (
    SELECT coalesce(
        (SELECT max(u.hour) FROM usage_hourly u WHERE u.responses > 0 AND u.hour <= :raw_from
{_CHOSEN}
        ),
        (SELECT min(u.hour) FROM usage_hourly u WHERE u.responses > 0
{_CHOSEN}
        ))
    UNION ALL
    SELECT (SELECT min(u.hour) FROM usage_hourly u WHERE u.responses > 0
            AND u.hour >= b.at - 14400000 AND u.hour < b.at
{_CHOSEN}
        )
    FROM back b WHERE b.at IS NOT NULL
),
starts(start) AS (
    SELECT min(at) FROM back
    UNION ALL
    SELECT (SELECT min(u.hour) FROM usage_hourly u WHERE u.responses > 0 AND u.hour >= s.start + 18000000
{_CHOSEN}
        )
    FROM starts s WHERE s.start IS NOT NULL
  AND s.start < :until
),
shown AS MATERIALIZED (
    SELECT start FROM starts WHERE start IS NOT NULL
  AND :since < :until
  AND start > :since - 18000000
  AND start < :until
    ORDER BY start DESC
    LIMIT :limit
),
blocks AS (
    SELECT b.start AS block_start, b.start + 18000000 AS block_end,
        count(DISTINCT u.session_id) AS sessions, sum(u.responses) AS responses,
        sum(u.prompt_tokens + u.completion_tokens + u.cache_read_tokens + u.cache_write_tokens) AS total_tokens,
        {SUMMED_COST} AS cost,
        sum(u.unpriced) AS unpriced, max(u.last_at) AS last_at,
        max(60000, max(u.last_at) - b.start) AS elapsed_ms,
        CAST(strftime('%s', 'now') AS INTEGER) * 1000 AS now_ms
    FROM shown b
    JOIN usage_hourly u ON u.hour >= b.start AND u.hour < b.start + 18000000
    WHERE u.responses > 0
{_CHOSEN.replace("u.source", "+u.source")}
    GROUP BY b.start
)
SELECT
    block_start,
    block_end,
    block_start <= now_ms AND now_ms < block_end AS active,
    sessions,
    responses,
    total_tokens,
    round(cost, 6) AS cost,
    unpriced,
    last_at,
    round(cost * 3600000.0 / elapsed_ms, 6) AS cost_per_hour,
    CAST(total_tokens * 60000.0 / elapsed_ms AS INTEGER) AS tokens_per_minute,
    CASE WHEN block_start <= now_ms AND now_ms < block_end
        THEN round(cost + cost * (block_end - max(now_ms, last_at)) / elapsed_ms, 6) END AS projected_cost
FROM blocks
ORDER BY block_start DESC
LIMIT :limit""",
)

CACHE = Report(
    name="cache",
    description="Prompt cache by model: hit ratio, 5-minute vs 1-hour writes, rebuilds after idle gaps",
    columns=(
        Column("model", "text", "the model"),
        Column("responses", "int", "model responses"),
        Column(
            "hit_pct",
            "pct",
            "cache reads / all input tokens (uncached + read + written), in percent",
        ),
        Column("cache_read_tokens", "int", "tokens read from the cache"),
        Column("write_5m_tokens", "int", "tokens written for 5 minutes"),
        Column("write_1h_tokens", "int", "tokens written for 1 hour"),
        Column(
            "write_other_tokens",
            "int",
            "writes the agent did not split by lifetime (older Claude, OpenCode)",
        ),
        Column(
            "idle_rebuilds",
            "int",
            "responses that came more than 5 minutes after the previous response of their thread (main or subagent) and wrote the cache again",
        ),
        Column("idle_rebuild_tokens", "int", "the cache writes of those turns"),
        Column("idle_rebuild_cost", "cost", "what those turns cost in all"),
        _COST,
        _UNPRICED,
    ),
    sql=f"""\
SELECT
    nullif(u.model, '') AS model,
    sum(u.responses) AS responses,
    round(100.0 * sum(u.cache_read_tokens)
        / nullif(sum(u.prompt_tokens + u.cache_read_tokens + u.cache_write_tokens), 0), 1) AS hit_pct,
    sum(u.cache_read_tokens) AS cache_read_tokens,
    sum(u.cache_write_5m_tokens) AS write_5m_tokens,
    sum(u.cache_write_1h_tokens) AS write_1h_tokens,
    sum(u.cache_write_tokens - u.cache_write_5m_tokens - u.cache_write_1h_tokens) AS write_other_tokens,
    sum(u.idle_rebuilds) AS idle_rebuilds,
    sum(u.idle_rebuild_tokens) AS idle_rebuild_tokens,
    round(sum(u.idle_rebuild_cost), 6) AS idle_rebuild_cost,
    {_SUMMED_COST} AS cost,
    sum(u.unpriced) AS unpriced
FROM usage_hourly u
WHERE u.responses > 0
{_FILTERS}
GROUP BY u.model
ORDER BY sum(u.cost) DESC, model
LIMIT :limit""",
)

CONTEXT = Report(
    name="context",
    description="Context per session: peak size, compactions, turns near the auto-compact threshold",
    columns=(
        Column("session_id", "text", "the agent's session id"),
        Column("model", "text", "the model last used"),
        Column("last_at", "time", "the session's last message in the window"),
        Column("turns", "int", "model responses in the window"),
        Column(
            "peak_context",
            "int",
            "the largest context a response was given (input + cache read + cache write tokens)",
        ),
        Column(
            "context_window",
            "int",
            "the window size Claude Code reported (statusline), else 200000",
        ),
        Column(
            "peak_pct",
            "pct",
            "peak_context / the auto-compact threshold (window - 33000 tokens), in percent",
        ),
        Column("turns_over_80pct", "int", "responses whose context passed 80 % of that threshold"),
        Column("compactions", "int", "compactions in the window"),
        Column("auto_compactions", "int", "of which automatic (the context was full)"),
    ),
    # The sessions with messages in the window (rollup), then each one's messages by index. A
    # session's last message in the rollup's last hour may come after --until: for those
    # (sessions active in that hour, a few) `recent` reads its messages for the last one before.
    sql=f"""\
WITH rolled AS MATERIALIZED (
    SELECT u.session_id, sum(u.responses) AS turns, min(u.hour) AS first_hour, max(u.last_at) AS last_at
    FROM usage_hourly u
    WHERE u.responses > 0
{_FILTERS}
    GROUP BY u.session_id
),
recent AS MATERIALIZED (
    SELECT r.session_id, r.turns,
        CASE WHEN r.last_at IS NULL THEN NULL
            WHEN r.last_at >= :until THEN (SELECT max(m.created_at) FROM messages m WHERE m.session_id = r.session_id AND m.created_at >= r.first_hour AND m.created_at < :until)
            ELSE r.last_at END AS last_at
    FROM rolled r
    ORDER BY last_at DESC
    LIMIT :limit
),
sized AS (
    SELECT r.*, coalesce((SELECT p.context_window_size FROM statusline_samples p
            WHERE p.session_id = r.session_id ORDER BY p.received_at DESC LIMIT 1), 200000) AS context_window
    FROM recent r
),
measured AS (
    SELECT z.*,
        (SELECT max(coalesce(m.prompt_tokens, 0) + coalesce(m.cache_read_tokens, 0) + coalesce(m.cache_write_tokens, 0))
            FROM messages m WHERE m.session_id = z.session_id AND m.role = 'assistant') AS peak_context,
        (SELECT count(*) FROM messages m WHERE m.session_id = z.session_id AND m.role = 'assistant'
            AND coalesce(m.prompt_tokens, 0) + coalesce(m.cache_read_tokens, 0) + coalesce(m.cache_write_tokens, 0)
                >= 0.8 * (z.context_window - 33000)) AS turns_over_80pct
    FROM sized z
)
SELECT
    d.session_id AS session_id,
    s.model AS model,
    d.last_at AS last_at,
    d.turns AS turns,
    d.peak_context AS peak_context,
    d.context_window AS context_window,
    round(100.0 * d.peak_context / (d.context_window - 33000), 1) AS peak_pct,
    d.turns_over_80pct AS turns_over_80pct,
    (SELECT count(*) FROM compaction_events c WHERE c.session_id = d.session_id
        AND c.created_at >= :since
        AND c.created_at < :until
    ) AS compactions,
    (SELECT count(*) FROM compaction_events c WHERE c.session_id = d.session_id AND c.trigger = 'auto'
        AND c.created_at >= :since
        AND c.created_at < :until
    ) AS auto_compactions
FROM measured d
LEFT JOIN sessions s ON s.id = d.session_id
WHERE d.last_at IS NOT NULL
ORDER BY d.last_at DESC""",
)

SUBAGENTS = Report(
    name="subagents",
    description="Cost per subagent (Claude agent ids, OpenCode child sessions), costliest first",
    columns=(
        Column("session_id", "text", "the main session"),
        Column("subagent", "text", "Claude's agent id, or the OpenCode child session's id"),
        Column("model", "text", "the model(s) it used"),
        Column("responses", "int", "model responses"),
        Column("total_tokens", "int", "input, output, cache read and write tokens"),
        _COST,
        _UNPRICED,
        Column("last_at", "time", "its last message"),
    ),
    sql=f"""\
SELECT
    coalesce(s.parent_session_id, u.session_id) AS session_id,
    CASE WHEN u.agent_id != '' THEN u.agent_id ELSE u.session_id END AS subagent,
    group_concat(DISTINCT nullif(u.model, '')) AS model,
    sum(u.responses) AS responses,
    sum(u.prompt_tokens + u.completion_tokens + u.cache_read_tokens + u.cache_write_tokens) AS total_tokens,
    {_SUMMED_COST} AS cost,
    sum(u.unpriced) AS unpriced,
    max(u.last_at) AS last_at
FROM usage_hourly u
JOIN sessions s ON s.id = u.session_id
WHERE u.responses > 0
  AND (u.agent_id != '' OR s.parent_session_id IS NOT NULL)
{_FILTERS}
GROUP BY 1, 2
ORDER BY sum(u.cost) DESC, last_at DESC
LIMIT :limit""",
)

USAGE_REPORTS = (USAGE, BLOCKS, CACHE, CONTEXT, SUBAGENTS)
