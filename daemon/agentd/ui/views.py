"""The data behind the overview, sessions, tools and files views: plain dicts and lists, the
same for the HTML pages, the JSON endpoints and the CSV exports.

Every time-windowed tool query reads a range of the `tools_ui_time` covering index
(migration 0007), never the wide tool rows; the tools view reads the rollup of migration 0010
for long windows (toolstats.py). bench/ui times each view on a million tool rows.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections import defaultdict
from datetime import datetime
from typing import Any

from agentd.query.costs import SESSION_COST
from agentd.query.times import parse_time
from agentd.ui.db import columns
from agentd.ui.filters import Filters
from agentd.ui.format import local
from agentd.ui.toolstats import per_tool, scope as _scope

__all__ = ["overview", "sessions", "tools", "files", "outcome_sql", "choices", "LIVE_MS"]

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
LIVE_MS = 10 * 60_000  # a session seen within this long, and not ended, counts as live
TOP_GROUPS = 6  # series per chart; the rest add up to "other"


def outcome_sql(conn: sqlite3.Connection) -> str:
    """How a session turned out, in the dashboard's words: an error reported, still running, or
    done. `sessions.outcome` (migration 9: ok, error, interrupted, NULL) counts as an error
    report once it exists."""
    errored = "s.outcome = 'error' OR " if "outcome" in columns(conn, "sessions") else ""
    return (
        f"CASE WHEN {errored}s.status = 'error' OR EXISTS "
        "(SELECT 1 FROM session_errors e WHERE e.session_id = s.id) THEN 'error' "
        "WHEN s.ended_at IS NULL AND coalesce(s.status, '') NOT IN ('ended', 'idle') "
        f"AND s.updated_at > :now - {LIVE_MS} THEN 'running' ELSE 'done' END"
    )


def _local_day(ms: int) -> str:
    """`YYYY-MM-DD`, or "" for a time no calendar day holds (format.local): in no day's bucket."""
    moment = local(ms)
    return moment.strftime("%Y-%m-%d") if moment else ""


def overview(conn: sqlite3.Connection, f: Filters, *, by: str = "project") -> dict[str, Any]:
    """Cards for today / 7 days / 30 days, per-day series over 30 days, hour-of-week activity."""
    now = int(time.time() * 1000)
    start = parse_time("29d") or 0
    start = int(
        datetime.fromtimestamp(start / 1000)
        .replace(hour=0, minute=0, second=0, microsecond=0)
        .timestamp()
        * 1000
    )
    windows = {"today": parse_time("today"), "7d": parse_time("7d"), "30d": start}
    p = {**f.params(), "since": start, "now": now}
    # One pass over the index range: tool calls and failures per hour; days and the hour-of-week
    # grid are folded from it in Python (local time, whatever the offset on each day).
    # 720 hourly range counts on the covering index, summed in SQLite; days and the hour-of-week
    # grid are folded from them in Python (local hours: the buckets start at local midnight).
    scope = _scope(f, since=False)
    hours = conn.execute(
        "WITH RECURSIVE hrs(h) AS (SELECT :since UNION ALL "
        f"SELECT h + {HOUR_MS} FROM hrs WHERE h + {HOUR_MS} < :now) "
        "SELECT h, (SELECT count(*) FROM tools t WHERE t.created_at >= h "
        f"AND t.created_at < h + {HOUR_MS} AND {scope}), "
        "(SELECT count(*) FROM tools t WHERE t.created_at >= h "
        f"AND t.created_at < h + {HOUR_MS} AND t.success = 0 AND {scope}) FROM hrs",
        p,
    ).fetchall()
    days = [_local_day(start + i * DAY_MS + DAY_MS // 2) for i in range(30)]
    per_day: dict[str, dict[str, int]] = {d: {"calls": 0, "failed": 0} for d in days}
    week = [[0] * 24 for _ in range(7)]
    cards = {w: {"sessions": 0, "tool_calls": 0, "failed": 0, "cost": 0.0, "compactions": 0}
             for w in windows}  # fmt: skip
    for h, calls, failed in hours:
        if not calls:
            continue
        moment = datetime.fromtimestamp(h / 1000)
        day = per_day.get(moment.strftime("%Y-%m-%d"))
        if day is not None:
            day["calls"] += calls
            day["failed"] += failed or 0
        week[moment.weekday()][moment.hour] += calls
        for name, since in windows.items():
            if since is not None and h + HOUR_MS > since:
                cards[name]["tool_calls"] += calls
                cards[name]["failed"] += failed or 0

    dim = {"project": "coalesce(s.project_name, '(none)')", "model": "coalesce(s.model, '(none)')",
           "agent": "s.source"}[by]  # fmt: skip
    session_rows = conn.execute(
        f"SELECT s.created_at, {dim} AS k, coalesce({SESSION_COST}, 0) AS cost, "
        "coalesce(s.prompt_tokens, 0) + coalesce(s.completion_tokens, 0) AS tokens, "
        "coalesce(s.cache_read_tokens, 0) + coalesce(s.cache_write_tokens, 0) AS cache_tokens "
        "FROM sessions s WHERE s.created_at >= :since"
        + (" AND s.source = :agent" if f.agent else "")
        + (" AND s.project_path = :project" if f.project else ""),
        p,
    ).fetchall()
    totals: dict[str, float] = defaultdict(float)
    for r in session_rows:
        totals[r["k"]] += r["cost"] + r["tokens"] / 1e9  # ties broken by tokens
    keep = [k for k, _ in sorted(totals.items(), key=lambda kv: -kv[1])[:TOP_GROUPS]]
    cost = {d: defaultdict(float) for d in days}
    tokens = {d: defaultdict(int) for d in days}
    for r in session_rows:
        key = r["k"] if r["k"] in keep else "other"
        day = _local_day(r["created_at"])
        if day in cost:
            cost[day][key] += r["cost"]
            tokens[day][key] += r["tokens"]
        for name, since in windows.items():
            if since is not None and r["created_at"] >= since:
                cards[name]["sessions"] += 1
                cards[name]["cost"] += r["cost"]
    for (created_at,) in conn.execute(
        f"SELECT c.created_at FROM compaction_events c WHERE c.created_at >= :since "
        f"AND {_scope(f, 'c', since=False)}",
        p,
    ):
        for name, since in windows.items():
            if since is not None and created_at >= since:
                cards[name]["compactions"] += 1
    for card in cards.values():
        card["failure_rate"] = card["failed"] / card["tool_calls"] if card["tool_calls"] else None
        card["cost"] = round(card["cost"], 6)
    groups = keep + (["other"] if any("other" in c for c in cost.values()) else [])
    return {
        "cards": cards,
        "by": by,
        "groups": groups,
        "days": [
            {
                "day": d,
                "tool_calls": per_day[d]["calls"],
                "failed": per_day[d]["failed"],
                "cost": {g: round(cost[d][g], 6) for g in groups if cost[d][g]},
                "tokens": {g: tokens[d][g] for g in groups if tokens[d][g]},
            }
            for d in days
        ],  # fmt: skip
        "hour_of_week": week,  # [weekday 0 = Monday][hour 0-23], tool calls in the 30 days
    }


_SESSION_COLUMNS = (
    "s.id, s.source AS agent, s.title, s.project_path, s.project_name, s.model, s.status, "
    f"s.parent_session_id, s.created_at, s.updated_at, s.ended_at, {SESSION_COST} AS cost, "
    "s.tool_call_count, "
    "s.prompt_tokens, s.completion_tokens, s.cache_read_tokens, s.cache_write_tokens"
)


def sessions(conn: sqlite3.Connection, f: Filters) -> list[dict[str, Any]]:
    """Newest first: each session's live status, outcome, failed calls and errors."""
    terms = ["1"]
    if f.since_ms is not None:
        terms.append("coalesce(s.updated_at, s.created_at) >= :since")
    if f.agent:
        terms.append("s.source = :agent")
    if f.project:
        terms.append("s.project_path = :project")
    if f.q:
        terms.append(
            "(s.id LIKE :q || '%' ESCAPE '\\' OR s.title LIKE '%' || :q || '%' ESCAPE '\\')"
        )
    if f.outcome:
        terms.append(f"({outcome_sql(conn)}) = :outcome")
    q = f.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") if f.q else None
    params = {**f.params(), "q": q, "outcome": f.outcome, "now": int(time.time() * 1000)}
    # The page first, then the per-session counts for its rows only.
    rows = conn.execute(
        f"SELECT {_SESSION_COLUMNS}, {outcome_sql(conn)} AS outcome FROM sessions s "
        f"WHERE {' AND '.join(terms)} "
        "ORDER BY coalesce(s.updated_at, s.created_at) DESC LIMIT :limit",
        params,
    ).fetchall()
    out = [_with_duration(dict(r)) for r in rows]
    for row in out:
        row["failed_calls"], row["errors"] = conn.execute(
            "SELECT (SELECT count(*) FROM tools t WHERE t.session_id = :id AND t.success = 0), "
            "(SELECT count(*) FROM session_errors e WHERE e.session_id = :id)",
            {"id": row["id"]},
        ).fetchone()
    return out


def _with_duration(row: dict[str, Any]) -> dict[str, Any]:
    end = row.get("ended_at") or row.get("updated_at")
    row["duration_ms"] = end - row["created_at"] if end and row.get("created_at") else None
    row["live"] = row.get("outcome") == "running"
    return row


def tools(conn: sqlite3.Connection, f: Filters) -> dict[str, Any]:
    """Per tool: calls, failures, failure rate, p50/p95/max duration (toolstats.py says how:
    exact, or from the rollup within 1%); the commonest errors."""
    stats, percentiles = per_tool(conn, f)
    rows = sorted(stats, key=lambda s: (-s["calls"], s["tool"] or ""))
    return {"tools": rows, "percentiles": percentiles, "errors": _common_errors(conn, f)}


_VOLATILE = re.compile(r"0x[0-9a-f]+|\d+|/[^\s:'\"]+", re.IGNORECASE)


def _common_errors(conn: sqlite3.Connection, f: Filters, limit: int = 25) -> list[dict[str, Any]]:
    """Failed calls grouped by tool and the first line of their error, with numbers and paths
    folded (`Exit code 1` and `Exit code 2` stay apart: the exit code is kept)."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for name, first, n, example, last in conn.execute(
        "SELECT t.tool_name, substr(t.error_message, 1, "
        "instr(t.error_message || char(10), char(10)) - 1) AS first, count(*), "
        "max(t.error_message), max(t.created_at) FROM tools t "
        f"WHERE t.success = 0 AND {_scope(f)} GROUP BY t.tool_name, first",
        f.params(),
    ):
        first = (first or "(no message)").strip()
        key = first if first.startswith("Exit code") else _VOLATILE.sub("…", first)
        g = groups.setdefault((name, key[:200]), {"tool": name, "error": key[:200], "count": 0,
                                                 "example": example, "last_at": last})  # fmt: skip
        g["count"] += n
        g["last_at"] = max(g["last_at"] or 0, last or 0)
    return sorted(groups.values(), key=lambda g: -g["count"])[:limit]


def files(conn: sqlite3.Connection, f: Filters) -> list[dict[str, Any]]:
    """The most touched files (edits first), each with the sessions that touched it."""
    p = f.params()
    scope = _scope(f, "o")
    rows = conn.execute(
        "SELECT o.file_path, count(*) AS operations, sum(o.operation_type != 'read') AS writes, "
        "sum(o.operation_type = 'read') AS reads, coalesce(sum(o.lines_added), 0) AS lines_added, "
        "coalesce(sum(o.lines_removed), 0) AS lines_removed, count(DISTINCT o.session_id) AS sessions, "
        f"max(o.created_at) AS last_at FROM file_operations o WHERE {scope} "
        + ("AND o.file_path = :path " if f.path else "")
        + "GROUP BY o.file_path ORDER BY writes DESC, operations DESC, o.file_path LIMIT :limit",
        {**p, "path": f.path},
    ).fetchall()
    out = [dict(r) for r in rows]
    per_file = 50 if f.path else 5
    for row in out:
        row["touched_by"] = [
            dict(s)
            for s in conn.execute(
                "SELECT s.id, s.title, s.source AS agent, s.project_name, max(o.created_at) AS at, "
                "count(*) AS operations FROM file_operations o JOIN sessions s ON s.id = o.session_id "
                f"WHERE o.file_path = :path AND {scope} "
                "GROUP BY s.id ORDER BY at DESC LIMIT :n",
                {**p, "path": row["file_path"], "n": per_file},
            )
        ]
    return out


def choices(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """What the filter pickers offer: the projects seen."""
    projects = [r[0] for r in conn.execute(
        "SELECT DISTINCT project_path FROM sessions WHERE project_path IS NOT NULL "
        "ORDER BY project_path")]  # fmt: skip
    return {"projects": projects}
