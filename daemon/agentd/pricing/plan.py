"""A model's prices for one period, resolved once, and the cost of a usage under them.

genai-prices' ModelPrice.calc_price resolves the price keys to units, checks that they cover each
other, and sorts the units into their decomposition on every call (~70 us a message); all of that
depends only on the prices. A Plan does it once; a call then does only the arithmetic, with
genai-prices' own functions (usage values and their inference, subtraction, the unit price with its
tiers) in genai-prices' order, so the Decimal total is the same. tests/test_pricing.py holds the
two side by side over a grid of models, periods, contexts and counts.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from genai_prices import types as gp
from genai_prices._usage import subtract_usage_values
from genai_prices.decompose import is_descendant_or_self
from genai_prices.units import _get_registry
from genai_prices.validation import validate_priced_units

__all__ = ["Plan", "plan_for"]


class Plan:
    """The resolved prices of one ModelPrice; raises ValueError when genai-prices would refuse
    them on every call (price keys that do not cover each other)."""

    def __init__(self, model_price: Any) -> None:
        registry = _get_registry()
        self.prices = gp._collect_resolved_model_prices(model_price, registry)
        validate_priced_units(tuple(unit for unit, _ in self.prices), registry)
        by_key = {unit.usage_key: unit for unit, _ in self.prices if unit.usage_key != "requests"}
        # compute_leaf_values' order: the most specific units first, each less the leaves of the
        # priced units below it.
        ordered = sorted(by_key.values(), key=lambda unit: (-len(unit.dimensions), unit.usage_key))
        self.leaves = tuple(
            (
                unit.usage_key,
                tuple(
                    d.usage_key for d in ordered if d is not unit and is_descendant_or_self(unit, d)
                ),
            )
            for unit in ordered
        )
        self.requests = any(unit.usage_key == "requests" for unit, _ in self.prices)
        self.tiered = any(isinstance(price, gp.TieredPrices) for _, price in self.prices)

    def total(self, usage: gp.Usage) -> Decimal:
        """The total price of `usage`, as ModelPrice.calc_price gives it; ValueError for usage it
        refuses (a part larger than its whole, a count it cannot infer)."""
        leaf: dict[str, Any] = {}
        reported = usage.__dict__  # the values given (validated), as Usage keeps them
        for key, below in self.leaves:
            raw = reported[key] if key in reported else _inferred(usage, key)
            value = subtract_usage_values(raw, [leaf[k] for k in below])
            if value < 0:
                raise ValueError(f"invalid usage: {key} less its parts is {value}")
            leaf[key] = value
        if self.requests:
            leaf["requests"] = 1
        total_input = usage.input_tokens if self.tiered else 0
        total = Decimal(0)
        for unit, price in self.prices:
            total += gp.calc_unit_price(price, leaf[unit.usage_key], total_input, unit.per)
        return total


_INFERRED: dict[tuple[str, tuple[str, ...]], Any] = {}


def _inferred(usage: gp.Usage, key: str) -> Any:
    """An unreported count as genai-prices reads it: 0, or a ValueError when reported counts it
    would have to contain are above 0. That depends only on which reported counts are above 0,
    so it is asked once per such set (~10 us each time otherwise)."""
    memo = (key, tuple(k for k, v in usage.__dict__.items() if v > 0))
    found = _INFERRED.get(memo)
    if found is None:
        try:
            raw = getattr(usage, key, None)
            found = 0 if raw is None else raw
        except ValueError as e:
            found = str(e)  # raised anew each time: one instance would grow its traceback
        if len(_INFERRED) < 4096:
            _INFERRED[memo] = found
    if isinstance(found, str):
        raise ValueError(found)
    return found


def plan_for(
    provider: Any, info: Any, when: Any, context: dict[str, str] | None
) -> Plan | ValueError | None:
    """The Plan of a model's prices in force at `when` in `context`, as ModelInfo.calc_price
    selects them; the ValueError genai-prices would raise on each call; None where its
    calculation does more than pricing units (Groq's Whisper bills a minimum duration)."""
    if provider.id == "groq":
        return None
    if context and not any(info is model for model in provider.models):
        model_price = info.get_prices(when)
    else:
        model_price = info.get_prices(when, context)
    try:
        return Plan(model_price)
    except ValueError as e:
        return e
