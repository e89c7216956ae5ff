"""Small total helpers the normalizers share: a wrong type is "not known" (None), never an error."""

from __future__ import annotations

from datetime import datetime
from typing import Any

__all__ = ["as_dict", "as_str", "as_int", "count_lines", "timestamp_ms", "truncate"]


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_str(value: Any) -> str | None:
    """A non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def as_int(value: Any) -> int | None:
    """An integer SQLite can store (a float is floored), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not -(2**62) < value < 2**62:  # also False for NaN
        return None
    return int(value)


def count_lines(text: Any) -> int | None:
    """Lines of a text (a last line without a newline counts; "" has none), else None."""
    if not isinstance(text, str):
        return None
    if not text:
        return 0
    return text.count("\n") + (0 if text.endswith("\n") else 1)


def truncate(text: str | None, limit: int) -> str | None:
    """Cut text to at most `limit` UTF-8 bytes, on a character boundary, ending in the visible
    marker `…[truncated N of M bytes]` (the whole value stays within the limit; a limit too small
    for the marker keeps only the marker). A negative limit means no limit."""
    if text is None or limit < 0 or len(text) * 4 <= limit:  # a character is at most 4 bytes
        return text
    data = text.encode("utf-8", "replace")
    total = len(data)
    if total <= limit:
        return text
    reserve = len(f"…[truncated {total} of {total} bytes]".encode())
    kept = data[: max(0, limit - reserve)].decode("utf-8", "ignore")
    cut = total - len(kept.encode())
    return f"{kept}…[truncated {cut} of {total} bytes]"


def timestamp_ms(value: Any) -> int | None:
    """An ISO-8601 timestamp (`2026-11-21T07:28:41.102Z`) as epoch milliseconds."""
    if not isinstance(value, str):
        return None
    try:
        return int(datetime.fromisoformat(value).timestamp() * 1000)
    except (ValueError, OverflowError, OSError):
        return None
