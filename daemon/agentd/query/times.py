"""The times `--since`, `--until` and `prune --older-than` take: durations, dates, epochs.

No click here; the CLI turns a TimeError into a usage message.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta

from agentd.errors import TimeError

__all__ = ["TIME_FORMS", "TimeError", "parse_time"]


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_DURATIONS = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
TIME_FORMS = (
    "a duration before now (90m, 24h, 7d, 2w, 1d12h), a date (2026-11-01), a date and time "
    "(2026-11-01T14:30, local time unless it ends in Z or +HH:MM), today, yesterday, now, "
    "an epoch in milliseconds, or all"
)


def parse_time(text: str, *, now: float | None = None) -> int | None:
    """Epoch ms for a --since / --until value; None for `all` (no bound).

    Durations count back from now; dates are local midnight; `until` bounds are exclusive.
    """
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
    if value.isdigit() and len(value) >= 12:
        return int(value)
    compact = value.replace(" ", "")
    if _DURATIONS.fullmatch(compact):
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _DURATION.findall(compact))
        return int((now_s - seconds) * 1000)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise TimeError(f"{text!r} is not a time: use {TIME_FORMS}") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # a naive time is local time
    return int(moment.timestamp() * 1000)
