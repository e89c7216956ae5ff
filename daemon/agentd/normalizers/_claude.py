"""What Claude Code's two normalizers (live hooks, imported transcripts) must agree on, so that a
live row and an imported one of the same thing meet: the stop-failure row id and the API status."""

from __future__ import annotations

import re

__all__ = ["api_status_code", "stop_failure_id"]

# Claude Code's text for a failed API call: "API Error: 529 {...}", "API Error: 400 ...".
_STATUS_CODE = re.compile(r"\bAPI Error: (\d{3})\b")


def api_status_code(text: str | None) -> int | None:
    """The HTTP status in an API error text, else None."""
    match = _STATUS_CODE.search(text) if text else None
    return int(match.group(1)) if match else None


def stop_failure_id(session_id: str, prompt_id: str) -> str:
    """The session_errors id of the API error that ended a prompt's turn (the hooks' StopFailure,
    the transcript's API-error assistant record)."""
    return f"{session_id}:{prompt_id}:stop_failure"
