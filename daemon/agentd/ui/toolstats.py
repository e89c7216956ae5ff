"""Per-tool calls, failures and p50/p95/max duration for the tools view, for a time window.

Two ways, and the answer says which (`percentiles`):
- exact: one pass over the window's rows (the `tools_ui_time` index), nearest-rank percentiles
  as `agentd query` computes them. Used when the window holds at most EXACT_LIMIT calls: cheap,
  and what most databases get for every window.
- histogram: the rollup (db/rollup.py) for the window's whole days, plus the rows of its first
  partial day read exactly. Calls, failures and max are exact; p50/p95 come from the duration
  buckets, within 1% of the exact nearest-rank value. A project filter uses it only when that
  project holds every call of the window (the rollup's durations are not split by project);
  otherwise the project's own rows are read exactly, through the sessions of that project.
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from dataclasses import replace
from typing import Any

from agentd.db import rollup
from agentd.query.reports import nearest_rank
from agentd.ui.filters import Filters

__all__ = ["per_tool", "scope", "EXACT_LIMIT"]

EXACT_LIMIT = 20_000  # calls; an exact pass over this many rows takes a few ms
HALF_DAY = rollup.DAY_MS // 2
_EXACT = {"method": "exact", "max_relative_error": 0}
_HISTOGRAM = {"method": "histogram", "max_relative_error": 0.01}


def scope(f: Filters, alias: str = "t", *, since: bool = True) -> str:
    """WHERE terms for rows of tools (or another table with created_at, source, session_id)
    under the shared filters. Only the filters set appear: `:x IS NULL OR ...` terms would keep
    SQLite from seeking the index range."""
    terms = ["1"]
    if since and f.since_ms is not None:
        terms.append(f"{alias}.created_at >= :since")
    if f.agent:
        terms.append(f"{alias}.source = :agent")
    if f.project:
        terms.append(
            f"{alias}.session_id IN (SELECT id FROM sessions WHERE project_path = :project)"
        )
    return " AND ".join(terms)


def per_tool(
    conn: sqlite3.Connection, f: Filters, *, exact_limit: int = EXACT_LIMIT
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(one dict per tool, how its percentiles were computed)."""
    if f.since_ms is not None:  # a relative window ("7d") moves with the clock: fix it once
        f = replace(f, since=str(f.since_ms))
    day, week = rollup.window_days(f.since_ms)
    first = day  # the first day taken from the rollup
    if day is not None and f.since_ms is not None and day * rollup.DAY_MS - f.since_ms > HALF_DAY:
        # The window starts early in its day: take that whole day from the rollup and read
        # the rows before the start (to take away) rather than the longer rest of the day.
        first = day - 1
    rolled = _rolled_calls(conn, f, first, project=f.project)
    if sum(rolled.values()) <= exact_limit:
        return _exact(conn, f), _EXACT
    if f.project and rolled != _rolled_calls(conn, f, first, project=None):
        return _exact(conn, f), _EXACT
    return _from_rollup(conn, f, first, week), _HISTOGRAM


def _rolled_calls(
    conn: sqlite3.Connection, f: Filters, day: int | None, *, project: str | None
) -> dict[str, int]:
    terms = ["1"] + (["day >= :day"] if day is not None else [])
    terms += ["source = :agent"] * bool(f.agent) + ["project_path = :project"] * bool(project)
    return dict(conn.execute(
        f"SELECT tool_name, sum(calls) FROM tool_stats_daily WHERE {' AND '.join(terms)} "
        "GROUP BY tool_name", {"day": day, "agent": f.agent, "project": project}))  # fmt: skip


def _rows(
    conn: sqlite3.Connection, f: Filters, start: int | None, until: int | None = None
) -> Counter[tuple]:
    """(tool, success, duration) -> how many calls, for the rows created in [start, until)
    under the other filters."""
    terms = [scope(f, since=False)]
    terms += [" AND t.created_at >= :start"] * (start is not None)
    terms += [" AND t.created_at < :until"] * (until is not None)
    cur = conn.cursor()
    cur.row_factory = None  # plain tuples: one row per call
    # Counting equal rows in C first leaves Python a few thousand groups to fold.
    return Counter(cur.execute(
        f"SELECT t.tool_name, t.success, t.duration_ms FROM tools t WHERE {''.join(terms)}",
        {**f.params(), "start": start, "until": until}))  # fmt: skip


def _new(name: str | None) -> dict[str, Any]:
    return {"tool": name, "calls": 0, "failed": 0, "unknown": 0}


def _count(s: dict[str, Any], success: Any, n: int) -> None:
    s["calls"] += n
    if success == 0:
        s["failed"] += n
    elif success is None:
        s["unknown"] += n


def _exact(conn: sqlite3.Connection, f: Filters) -> list[dict[str, Any]]:
    stats: dict[str | None, dict[str, Any]] = {}
    durations: dict[str | None, list[tuple[int, int]]] = defaultdict(list)
    for (name, success, duration), n in _rows(conn, f, f.since_ms).items():
        _count(stats.setdefault(name, _new(name)), success, n)
        if duration is not None:
            durations[name].append((duration, n))
    for name, s in stats.items():
        ds = sorted(durations[name])
        s["failure_rate"] = s["failed"] / s["calls"]
        s["p50_ms"] = _nearest_rank(ds, 0.50)
        s["p95_ms"] = _nearest_rank(ds, 0.95)
        s["max_ms"] = ds[-1][0] if ds else None
    return list(stats.values())


def _nearest_rank(weighted: list[tuple[int, int]], fraction: float) -> int | None:
    """The nearest-rank percentile (the definition `agentd query` uses) of sorted
    (value, how many times) pairs."""
    total = sum(n for _, n in weighted)
    if not total:
        return None
    rank, seen = nearest_rank(fraction, total), 0
    for value, n in weighted:
        seen += n
        if seen >= rank:
            return value
    return weighted[-1][0]


def _from_rollup(
    conn: sqlite3.Connection, f: Filters, day: int | None, week: int | None
) -> list[dict[str, Any]]:
    """The rollup from `day` (None: all of it), corrected by the rows between the window's
    start and that day's start (added, or taken away when `day` starts before the window)."""
    stats: dict[str | None, dict[str, Any]] = {}
    buckets: dict[str | None, Counter[int]] = defaultdict(Counter)
    params = {"day": day, "week": week, "agent": f.agent, "project": f.project}
    agent = " AND source = :agent" if f.agent else ""
    project = " AND project_path = :project" if f.project else ""
    cur = conn.cursor()
    cur.row_factory = None  # plain tuples
    for name, calls, failed, unknown in cur.execute(
        "SELECT tool_name, sum(calls), sum(failures), sum(unknown) FROM tool_stats_daily "
        f"WHERE {'day >= :day' if day is not None else '1'}{agent}{project} GROUP BY tool_name",
        params,
    ):
        key = name or None  # the rollup keeps a NULL tool_name as ''
        stats[key] = {"tool": key, "calls": calls, "failed": failed, "unknown": unknown}
    # Durations: whole weeks, then the days before the first whole week, then (below) the
    # rows of the partial first day. Each is summed in SQLite: Python sees one row per bucket.
    hist = [("SELECT tool_name, bucket_ms, sum(calls) FROM tool_duration_weekly WHERE "
             f"{'week >= :week' if week is not None else '1'}{agent} GROUP BY 1, 2")]  # fmt: skip
    if day is not None:
        hist.append("SELECT tool_name, bucket_ms, sum(calls) FROM tool_duration_daily "
                    f"WHERE day >= :day AND day < :week * 7{agent} GROUP BY 1, 2")  # fmt: skip
    for sql in hist:
        for name, lo, n in cur.execute(sql, params).fetchall():
            buckets[name or None][lo] += n
    if day is not None and f.since_ms is not None:
        edge, since = day * rollup.DAY_MS, f.since_ms
        sign = 1 if edge >= since else -1
        bucket_of: dict[Any, int] = {}  # per distinct duration, not per group
        for (name, success, duration), n in _rows(
            conn, f, min(edge, since), max(edge, since)
        ).items():
            s = stats.get(name)
            _count(s if s is not None else stats.setdefault(name, _new(name)), success, sign * n)
            if duration is not None:
                lo = bucket_of.get(duration)
                if lo is None:
                    lo = bucket_of[duration] = rollup.bucket_of(duration)
                buckets[name][lo] += sign * n
    stats = {name: s for name, s in stats.items() if s["calls"] > 0}
    for name, s in stats.items():
        b = +buckets[name]  # only the buckets left with calls
        s["failure_rate"] = s["failed"] / s["calls"] if s["calls"] else None
        total = sum(b.values())
        for key, fraction in (("p50_ms", 0.50), ("p95_ms", 0.95)):
            s[key] = (
                rollup.estimate(rollup.percentile_from_buckets(b, nearest_rank(fraction, total)))
                if total else None
            )  # fmt: skip
        s["max_ms"] = _max(conn, f, name, max(b)) if total else None
    return list(stats.values())


def _max(conn: sqlite3.Connection, f: Filters, name: str | None, lo: int) -> Any:
    """The exact longest duration: only the rows in the window's top bucket or above, found
    through the (tool_name, duration_ms, ...) index (tools_query_name), are looked at."""
    row = conn.execute(
        "SELECT t.duration_ms FROM tools t "
        f"WHERE t.tool_name IS :name AND t.duration_ms >= :lo AND {scope(f)} "
        "ORDER BY t.duration_ms DESC LIMIT 1",
        {**f.params(), "name": name, "lo": lo},
    ).fetchone()
    return row[0] if row else None
