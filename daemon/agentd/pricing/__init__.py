"""Cost of a message from its tokens: the price table (genai-prices' bundled, date-versioned
snapshot, which works offline) and the `cost_source` rule (docs/usage.md).

`price_rows()` runs where an event is prepared (agentd.ingest), so every `messages` row is
priced once, by its own time, before the store writes it. A message the agent priced keeps its
figure in `cost` (`cost_source = agent`); else `computed_cost` holds the price from its tokens
(`computed`); a model the table does not know, or a table that cannot be loaded, gives
`unknown`, never 0.
"""

from __future__ import annotations

from agentd.pricing.table import PriceTable, PriceTableError, price_rows, table

__all__ = ["PriceTable", "PriceTableError", "price_rows", "table"]
