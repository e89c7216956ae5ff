"""The cost of a session and of a message, as every report and view shows it (docs/usage.md,
"Where a cost comes from"): the agent's own figure where it gave one above 0, else the one
computed from the tokens; NULL when neither is known, never 0.

A session's own figure is Claude's `cost-state` or the sum of OpenCode's step costs
(`sessions.cost`); its computed one is the sum of its messages' (`sessions.computed_cost`, kept
by triggers). They are SQL expressions over `sessions s` and `messages m`.
"""

from __future__ import annotations

__all__ = ["MESSAGE_COST", "SESSION_COST"]

SESSION_COST = "CASE WHEN s.cost > 0 THEN s.cost ELSE s.computed_cost END"
MESSAGE_COST = (
    "CASE m.cost_source WHEN 'agent' THEN m.cost WHEN 'computed' THEN m.computed_cost END"
)
