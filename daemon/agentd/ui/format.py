"""How numbers, times and durations read on the pages (and only there: JSON and CSV keep the
raw values)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from markupsafe import Markup

from agentd.output import BIDI_CONTROLS

__all__ = ["number", "duration", "when", "local", "money", "percent", "visible", "FILTERS"]


def number(value: float | None) -> str:
    if value is None:
        return "–"
    value = float(value)
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e4)):
        if abs(value) >= size:
            return f"{value / (size if unit != 'k' else 1e3):.1f}{unit}"
    return f"{value:,.0f}"


def duration(ms: float | None) -> str:
    """Exact below a second (`37 ms`), then seconds with two decimals, then h/m/s."""
    if ms is None:
        return "–"
    if ms < 1000:
        return f"{ms:.0f} ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.2f} s"
    m, s = divmod(int(s), 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m"


def local(ms: float) -> datetime | None:
    """The local time of epoch `ms`; None outside what datetime holds (years 1 to 9999, an
    imported `9999-12-31T23:59:59-12:00` is in year 10000): such a time is shown raw."""
    try:
        return datetime.fromtimestamp(ms / 1000)
    except (ValueError, OverflowError, OSError):
        return None


def when(ms: int | None) -> str:
    if not ms:
        return "–"
    moment = local(ms)
    if moment is None:
        return f"{ms} (epoch ms)"
    if moment.date() == datetime.now().date():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M")


def money(value: float | None) -> str:
    if value is None:
        return "–"
    return f"${value:,.2f}" if value >= 1 or value == 0 else f"${value:.4f}"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


# Bidi controls (output.BIDI_CONTROLS): in a title they would reorder what follows, so the pages
# show them as [U+XXXX].
_BIDI_RE = re.compile(f"[{BIDI_CONTROLS}]")


def _shown(match: re.Match[str]) -> str:
    return f"[U+{ord(match.group()):04X}]"


def visible(value: Any) -> Any:
    """What every `{{ }}` of the templates shows (the Jinja environment's finalize): text with
    its bidi controls made visible. Markup (macros, charts) too: their text is user data."""
    if isinstance(value, Markup):
        return Markup(_BIDI_RE.sub(_shown, str(value)))
    if isinstance(value, str):
        return _BIDI_RE.sub(_shown, value)
    return value


FILTERS = {"number": number, "duration": duration, "when": when, "money": money,
           "percent": percent}  # fmt: skip
