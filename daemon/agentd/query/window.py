"""A report's time window [since, until) cut into the stretches each source of counts covers.

The rollups (db/rollup.py, db/query_rollup.py) count per UTC day and per UTC hour, so a window
is read as: the raw rows of its first partial hour, whole hours up to its first whole day,
whole days, whole hours after the last whole day, and the raw rows of its last partial hour.
Each stretch is a named parameter the reports' SQL uses, so a window of any length reads at
most two hours of raw rows, 46 hourly groups and a group per day: exact, and independent of
how many rows the window holds. The per-session rollup has no daily tier: it reads the hours
[hour_from, hour2_to).

No bounds at all (`--since all`, no `--until`) is every day from -1 on, where the rollups count
rows without created_at; with a bound, such rows are outside the window, as in the raw SQL.
`whole` is 1 then: top-sessions reads all-time totals.
"""

from __future__ import annotations

from typing import Any

__all__ = ["WINDOW", "window", "HOUR_MS", "DAY_MS"]

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
_END = 100_000_000 * DAY_MS  # "no --until": a bound past every real time (year 275 000)
WINDOW = ("raw_from", "raw_to", "hour_from", "hour_to", "day_from", "day_to",
          "hour2_from", "hour2_to", "raw2_from", "raw2_to", "whole")  # fmt: skip


def window(since: int | None, until: int | None) -> dict[str, Any]:
    """The stretches of [since, until) (epoch ms; None: unbounded), as named parameters: raw
    rows in ms, hours and days as epoch hour and day numbers, each stretch half-open."""
    # A bound starts the window at 1970 at the earliest: hour and day -1 are where the rollups
    # count rows without created_at, which only an unbounded window includes.
    lo = max(since, 0) if since is not None else (-DAY_MS if until is None else 0)
    hi = until if until is not None else _END
    whole = int(since is None and until is None)
    h1, h2 = -(-lo // HOUR_MS), hi // HOUR_MS
    if h1 >= h2:  # no whole hour: all raw
        empty = dict.fromkeys(WINDOW[2:10], 0)
        return {**empty, "raw_from": lo, "raw_to": max(lo, hi), "whole": whole}
    d1, d2 = -(-h1 // 24), h2 // 24
    if d1 >= d2:  # no whole day: hours only
        hours = {"hour_from": h1, "hour_to": h2, "day_from": 0, "day_to": 0,
                 "hour2_from": h2, "hour2_to": h2}  # fmt: skip
    else:
        hours = {"hour_from": h1, "hour_to": d1 * 24, "day_from": d1, "day_to": d2,
                 "hour2_from": d2 * 24, "hour2_to": h2}  # fmt: skip
    return {"raw_from": lo, "raw_to": h1 * HOUR_MS, **hours, "raw2_from": h2 * HOUR_MS,
            "raw2_to": hi, "whole": whole}  # fmt: skip
