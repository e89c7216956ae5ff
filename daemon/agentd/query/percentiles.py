"""slow-tools' p50, p95 and max, filled into the rows of its calls statement: exact, or from
the duration histograms within 1%.

Exact (nearest rank over the window's durations, PERCENTILE_SQL) when the window holds at most
EXACT_LIMIT calls, which a few milliseconds read, or when the histograms cannot answer its
filters (a bounded window with --project or --session: the windowed histograms are not split
by project or session). Otherwise from the histograms (HISTOGRAM_SQL): the nearest-rank call's
bucket gives p50 and p95 as rollup.estimate() of it, within 1% of the exact value (exact up to
50 ms, where a bucket holds one value); max_ms is looked up exactly (MAX_SQL, once for every tool). Each row says
which in its `percentiles` column.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter, defaultdict
from typing import Any

from agentd.db import rollup
from agentd.query.reports import HISTOGRAM_SQL, MAX_SQL, PERCENTILE_SQL, nearest_rank, render

__all__ = ["EXACT_LIMIT", "fill"]

EXACT_LIMIT = 20_000  # calls: reading and sorting this many durations takes a few ms


def fill(
    conn: sqlite3.Connection,
    percentiles: tuple[tuple[str, float], ...],
    params: dict[str, Any],
    columns: list[str],
    rows: list[list[Any]],
) -> None:
    """Set each row's percentile columns and its `percentiles` method, in place."""
    name, calls = columns.index("tool_name"), columns.index("calls")
    total = sum(row[calls] for row in rows)
    answerable = params["whole"] or (params["project"] is None and params["session"] is None)
    if total <= EXACT_LIMIT or not answerable:
        by_tool = _exact(conn, params)
        method = "exact"
    else:
        by_tool = _histogram(conn, params)
        method = "histogram"
    for row in rows:
        values = by_tool.get(row[name], {})
        for column, fraction in percentiles:
            row[columns.index(column)] = values.get(fraction)
        row[columns.index("percentiles")] = method


def _exact(conn: sqlite3.Connection, params: dict[str, Any]) -> dict[Any, dict[float, Any]]:
    durations: dict[Any, list[Any]] = defaultdict(list)
    for tool, duration in conn.execute(render(PERCENTILE_SQL, params), params):
        durations[tool].append(duration)  # in increasing order, by the statement
    return {
        tool: {f: ds[nearest_rank(f, len(ds)) - 1] for f in (0.50, 0.95)} | {1.0: ds[-1]}
        for tool, ds in durations.items()
    }


def _histogram(conn: sqlite3.Connection, params: dict[str, Any]) -> dict[Any, dict[float, Any]]:
    buckets: dict[Any, Counter[int]] = defaultdict(Counter)
    for tool, lo, n in conn.execute(render(HISTOGRAM_SQL, params), params):
        buckets[tool][lo] += n
    out: dict[Any, dict[float, Any]] = {}
    for tool, counts in buckets.items():
        total = sum(counts.values())
        out[tool] = {
            f: rollup.estimate(rollup.percentile_from_buckets(counts, nearest_rank(f, total)))
            for f in (0.50, 0.95)
        }
    tops = [[tool, max(counts)] for tool, counts in buckets.items()]
    if None in buckets and "" not in buckets:
        # The rollups file a NULL and an empty tool name together (shown as NULL): its max is
        # the longest call under either name.
        tops.append(["", max(buckets[None])])
    for tool, longest in conn.execute(
        render(MAX_SQL, params), {**params, "tops": json.dumps(tops)}
    ):
        key = None if tool == "" and "" not in buckets else tool
        known = [v for v in (out[key].get(1.0), longest) if v is not None]
        out[key][1.0] = max(known) if known else None
    return out
