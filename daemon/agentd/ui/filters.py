"""The query-string filters every view shares, parsed once and checked (bad input: a 400 that
says what is wrong). They are the URL, so every view is a shareable link."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from agentd.query.times import TimeError, parse_time

__all__ = ["FilterError", "Filters", "AGENTS", "OUTCOMES", "WINDOWS"]

AGENTS = ("claude", "opencode")
OUTCOMES = ("running", "error", "done")
# The windows the pickers offer; any `agentd query --since` form works in the URL too.
WINDOWS = ("today", "24h", "7d", "30d", "90d", "all")
MAX_LIMIT = 5000


class FilterError(ValueError):
    """A query-string value the views cannot use; its message names the parameter."""


@dataclass(frozen=True)
class Filters:
    agent: str | None = None
    project: str | None = None
    outcome: str | None = None
    since: str = "all"
    q: str | None = None  # session id prefix or words of the title
    path: str | None = None  # one file (files view)
    limit: int = 100

    @classmethod
    def parse(cls, args: Mapping[str, str], *, since: str = "all", limit: int = 100) -> Filters:
        def text(name: str) -> str | None:
            value = (args.get(name) or "").strip()
            return value or None

        agent, outcome = text("agent"), text("outcome")
        if agent is not None and agent not in AGENTS:
            raise FilterError(f"agent must be one of {', '.join(AGENTS)}, not {agent!r}")
        if outcome is not None and outcome not in OUTCOMES:
            raise FilterError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        chosen = text("since") or since
        try:
            parse_time(chosen)
        except TimeError as e:
            raise FilterError(f"since: {e}") from None
        raw_limit = text("limit")
        if raw_limit is not None:
            # isascii: "²" and "٣" are digits to isdigit(), and int() refuses the first.
            if (
                not (raw_limit.isascii() and raw_limit.isdigit())
                or not 0 < int(raw_limit) <= MAX_LIMIT
            ):
                raise FilterError(f"limit must be a whole number from 1 to {MAX_LIMIT}")
            limit = int(raw_limit)
        return cls(agent, text("project"), outcome, chosen, text("q"), text("path"), limit)

    @property
    def since_ms(self) -> int | None:
        """The window's start in epoch ms; None for all time. Evaluated per request (now moves)."""
        return parse_time(self.since)

    def params(self) -> dict[str, Any]:
        """Named SQL parameters; a filter that is not set matches everything."""
        return {
            "agent": self.agent,
            "project": self.project,
            "since": self.since_ms,
            "limit": self.limit,
        }

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}
