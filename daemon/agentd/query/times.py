"""The times `--since`, `--until` and `prune --older-than` take: durations, dates, epochs.

No click here; the CLI turns a TimeError into a usage message.
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime, timedelta

from agentd.errors import TimeError

__all__ = ["TIME_FORMS", "TimeError", "parse_time"]


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])", re.ASCII)
_DURATIONS = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+", re.ASCII)
TIME_FORMS = (
    "a duration before now (90m, 24h, 7d, 2w, 1d12h), a date (2026-11-01), a date and time "
    "(2026-11-01T14:30, local time unless it ends in Z or +HH:MM), today, yesterday, now, "
    "an epoch in milliseconds (12 digits or more: 1794301200000), or all"
)
# The times a date can name (years 1 to 9999, a day in from each end so that any time zone
# stays inside): further out is a typing slip, and would not fit SQLite's 64-bit integers.
_FIRST_MS = int(datetime(1, 1, 2, tzinfo=UTC).timestamp() * 1000)
_LAST_MS = int(datetime(9999, 12, 30, tzinfo=UTC).timestamp() * 1000)


def parse_time(text: str, *, now: float | None = None) -> int | None:
    """Epoch ms for a --since / --until value; None for `all` (no bound).

    Durations count back from now; dates are local midnight; `until` bounds are exclusive.
    A time outside 0001-01-02 .. 9999-12-30 (UTC) is a TimeError.
    """
    ms = _parse(text, now)
    if ms is not None and not _FIRST_MS <= ms <= _LAST_MS:
        raise TimeError(
            f"{text.strip()[:40]!r} is out of range: a time from 0001-01-02 to 9999-12-30"
        )
    return ms


def _parse(text: str, now: float | None) -> int | float | None:
    value = text.strip().lower()
    now_s = time.time() if now is None else now
    if value == "all":
        return None
    if value == "now":
        return int(now_s * 1000)
    if value in ("today", "yesterday"):
        midnight = datetime.fromtimestamp(now_s).replace(hour=0, minute=0, second=0, microsecond=0)
        if value == "yesterday":
            midnight -= timedelta(days=1)
        return int(midnight.timestamp() * 1000)
    if value.isascii() and value.isdigit() and len(value) >= 12:
        return int(value) if len(value) < 30 else math.inf  # int() refuses 4300 digits
    compact = value.replace(" ", "")
    if _DURATIONS.fullmatch(compact):
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _DURATION.findall(compact))
        ms = (now_s - seconds) * 1000
        return int(ms) if math.isfinite(ms) else ms  # 1e400d: -inf, out of range
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise TimeError(f"{text!r} is not a time: use {TIME_FORMS}") from None
    try:
        if moment.tzinfo is None:
            moment = moment.astimezone()  # a naive time is local time
        return int(moment.timestamp() * 1000)
    except (OverflowError, OSError, ValueError):  # year 1 or 9999 moved past it by the zone
        return math.inf
