"""The cost of a session and of a message, as every report and view shows it (docs/usage.md,
"Where a cost comes from"): the agent's own figure where it gives one, else the one computed
from the tokens; NULL when neither is known, never 0.

A message's own figure is OpenCode's step cost (`cost_source = 'agent'`). A session's is Claude's
`cost-state`, its own running total (`sessions.cost` of a Claude session); any other session
costs the sum of its messages' costs, read from the hourly rollup (`usage_hourly`, by its
session index), as the usage reports sum them. They are SQL expressions over `sessions s`,
`messages m` and `usage_hourly u`.
"""

from __future__ import annotations

__all__ = ["MESSAGE_COST", "SESSION_COST", "SUMMED_COST"]

MESSAGE_COST = (
    "CASE m.cost_source WHEN 'agent' THEN m.cost WHEN 'computed' THEN m.computed_cost END"
)

# A sum of `usage_hourly` rows' costs: NULL when only unknown prices made it. The rollup's
# triggers add and subtract floats, so a sum that came back to nothing can be -1e-16 (shown as
# -0.0): under half a millionth of a dollar it is nothing, and no sum is below 0.
SUMMED_COST = (
    "CASE WHEN sum(u.unpriced) > 0 AND sum(u.cost) < 5e-7 THEN NULL ELSE max(sum(u.cost), 0.0) END"
)

SESSION_COST = (
    "CASE WHEN s.source = 'claude' AND s.cost > 0 THEN s.cost"
    f" ELSE (SELECT {SUMMED_COST} FROM usage_hourly u WHERE u.session_id = s.id) END"
)
