"""The price table over genai-prices, and pricing of `messages` rows.

genai-prices ships its snapshot inside the package (no network at import or calculation: it
fetches only when asked to through its UpdatePrices, which agentd never starts). Refresh it by
upgrading the package (`pip install -U genai-prices`, docs/usage.md). It is imported lazily, on
the first message with tokens, so processes that never price (the hook, the CLI) pay nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from agentd.rows import Row

__all__ = [
    "PriceTable",
    "PriceTableError",
    "loaded_table",
    "message_cost",
    "price_rows",
    "table",
    "TOKEN_COLUMNS",
]

log = logging.getLogger(__name__)

TOKEN_COLUMNS = (
    "prompt_tokens",
    "completion_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
)
# Provider names the agents use -> genai-prices provider ids (the rest are tried as they are,
# then by model name alone).
_PROVIDERS = {
    "claude": "anthropic",
    "anthropic": "anthropic",
    "openai": "openai",
    "google": "google",
}


class PriceTableError(Exception):
    """The price table cannot be loaded (genai-prices missing or its data broken)."""


class PriceTable:
    """One loaded snapshot; `cost()` -> USD, or None when the model has no known price."""

    def __init__(self) -> None:
        try:
            import genai_prices
            from genai_prices import data_snapshot

            self._snapshot = data_snapshot.get_snapshot()
            self._snapshot.providers  # noqa: B018 (loads the data: a broken one fails here)
        except Exception as e:  # ImportError, or any error inside the package's data
            raise PriceTableError(
                f"the price table (Python package genai-prices) cannot be loaded: {e}; computed "
                "costs are marked unknown. Reinstall it: pip install -U genai-prices"
            ) from e
        self._usage = genai_prices.Usage
        self._memo: dict[tuple[Any, ...], float | None | object] = {}
        self._plans: dict[tuple[Any, ...], Any] = {}
        self._checked: set[tuple[Any, ...]] = set()  # plans whose first price genai-prices agreed
        try:
            from agentd.pricing.plan import plan_for
        except (ImportError, AttributeError):  # a genai-prices laid out otherwise: its own path
            plan_for = None
        self._plan_for = plan_for
        self.version = genai_prices.__version__

    def cost(
        self,
        model: str,
        *,
        provider: str | None,
        at_ms: int | None,
        tokens: dict[str, int],
        output_includes_reasoning: bool = True,
        speed: str | None = None,
    ) -> float | None:
        """USD for one message. `tokens` uses the messages columns: prompt (uncached input),
        completion, cache read, cache write (with its 5m / 1h split when known), reasoning."""
        usage = usage_counts(tokens, output_includes_reasoning)
        # A fixed `now` for a message without a time: the period and the price agree on it.
        try:
            when = datetime.fromtimestamp(at_ms / 1000, UTC) if at_ms else datetime.now(UTC)
        except (ValueError, OverflowError, OSError, TypeError):
            return None  # a time no calendar holds (an old row, a bad integer): no price in force
        context = {"speed": speed} if speed and speed != "standard" else None
        provider_id = _PROVIDERS.get((provider or "").lower(), provider)
        names = [(model, provider_id)]
        # OpenCode names a model "<provider>/<model>" (anthropic/claude-sonnet-4-5): asked as
        # given first (OpenRouter's ids look the same), then as the model of that provider.
        prefix, slash, rest = model.partition("/")
        if slash and prefix and rest:
            names.append((rest, provider_id or _PROVIDERS.get(prefix.lower(), prefix.lower())))
        for name, named_provider in names:
            for candidate in dict.fromkeys((named_provider, None)):
                outcome = self._calc(usage, name, candidate, when, context)
                if outcome is not _NEXT:
                    return outcome
        return None

    def _calc(
        self,
        usage: dict[str, int],
        model: str,
        provider_id: str | None,
        when: datetime,
        context: dict[str, str] | None,
    ) -> float | None | object:
        """genai-prices' price, None when it cannot price the usage, _NEXT for an unknown model.

        Its calculation costs ~65-190 us a message (unit resolution, validation, decomposition and
        Decimal arithmetic), mostly spent on what depends on the prices alone: those are resolved
        once per model, period and context (pricing/plan.py, ~15 us a call then). And Claude
        writes a response's usage on each of its tool_use lines: the outcome is remembered by
        everything it depends on (the model and provider found, the prices in force at `when`,
        the context, the token counts; ~3 us)."""
        try:
            provider, info = self._snapshot.find_provider_model(model, None, provider_id, None)
        except LookupError:
            return _NEXT  # unknown provider or model: try by model name alone, then give up
        key = _key(provider, info, when, context, usage)
        if key is not None and (known := self._memo.get(key, _MISS)) is not _MISS:
            return known
        plan = self._plan(key, provider, info, when, context)
        outcome: float | None | object
        try:
            if isinstance(plan, ValueError):
                raise plan
            if plan is None:
                outcome = self._genai_price(usage, model, provider_id, when, context)
            else:
                outcome = float(plan.total(self._usage(**usage)))
                if key is not None and key[:4] not in self._checked:
                    outcome = self._check(
                        key[:4], outcome, usage, model, provider_id, when, context
                    )
        except LookupError:
            outcome = _NEXT
        except ValueError:
            outcome = None  # usage the table cannot price (inconsistent counts)
        if key is not None:
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = outcome
        return outcome

    def _genai_price(
        self,
        usage: dict[str, int],
        model: str,
        provider_id: str | None,
        when: datetime,
        context: dict[str, str] | None,
    ) -> float:
        result = self._snapshot.calc(self._usage(**usage), model, provider_id, None, when, context)
        return float(result.total_price)

    def _check(self, period: tuple[Any, ...], planned: float, *args: Any) -> float:
        """The first price of each plan is also asked of genai-prices itself: plan.py uses its
        private functions, so an installed version that computes otherwise (pip install -U
        genai-prices) turns plans off for good, with one log line, instead of pricing wrongly."""
        own = self._genai_price(*args)
        if own != planned:
            log.warning(
                "genai-prices %s prices differently than agentd's cached plan (%r vs %r): "
                "using its own calculation for every message",
                self.version,
                own,
                planned,
            )
            self._plan_for = None
            self._plans.clear()
            self._memo.clear()
        self._checked.add(period)
        return own

    def _plan(
        self,
        key: tuple[Any, ...] | None,
        provider: Any,
        info: Any,
        when: datetime,
        context: dict[str, str] | None,
    ) -> Any:
        """The model's prices for this period and context resolved once (pricing/plan.py), or
        None: genai-prices' own calculation then."""
        if key is None or self._plan_for is None:
            return None
        period = key[:4]  # provider, model, prices in force, context
        plan = self._plans.get(period, _MISS)
        if plan is _MISS:
            if len(self._plans) >= _MEMO_SIZE:
                self._plans.clear()
                self._checked.clear()
            plan = self._plans[period] = self._plan_for(provider, info, when, context)
        return plan


def usage_counts(tokens: dict[str, int], output_includes_reasoning: bool) -> dict[str, int]:
    """genai-prices' usage fields from the messages columns."""
    cache_read = tokens.get("cache_read_tokens") or 0
    cache_write = tokens.get("cache_write_tokens") or 0
    w5m = tokens.get("cache_write_5m_tokens")
    w1h = tokens.get("cache_write_1h_tokens")
    output = tokens.get("completion_tokens") or 0
    if not output_includes_reasoning:  # OpenCode counts reasoning apart; priced as output
        output += tokens.get("reasoning_tokens") or 0
    usage: dict[str, int] = {
        # genai-prices counts every input token in input_tokens, cached ones included.
        "input_tokens": (tokens.get("prompt_tokens") or 0) + cache_read + cache_write,
        "output_tokens": output,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
    }
    if w5m is not None or w1h is not None:
        usage["cache_write_5m_tokens"] = w5m or 0
        usage["cache_write_1h_tokens"] = w1h or 0
        # Older Claude versions report only the total: keep the split consistent with it.
        usage["cache_write_tokens"] = max(cache_write, (w5m or 0) + (w1h or 0))
        usage["input_tokens"] += usage["cache_write_tokens"] - cache_write
    return usage


_NEXT = object()  # the model is unknown under this provider
_MISS = object()
_MEMO_SIZE = 4096


def _key(
    provider: Any, info: Any, when: datetime, context: dict[str, str] | None, usage: dict[str, int]
) -> tuple[Any, ...] | None:
    """What a price depends on besides the snapshot; None (no memo) when the model's prices are not
    laid out as this reads them (a later genai-prices): then every call asks genai-prices.

    `when` enters only through the constraints of the model's conditional prices and context
    variants (start dates, off-peak hours), so their on/off state at `when` stands for it."""
    try:
        prices = info.prices
        variants = info.price_variants or ()
        period = tuple(
            c.constraint is None or c.constraint.active(when)
            for c in (prices if isinstance(prices, list) else ())
        ) + tuple(v.constraint is None or v.constraint.active(when) for v in variants)
    except AttributeError:
        return None
    return (
        id(provider),
        id(info),
        period,
        tuple(context.items()) if context else None,
        tuple(usage.items()),
    )


def table() -> PriceTable | None:
    """The process's price table, loaded once; None (logged once) when it cannot be."""
    try:
        return loaded_table()
    except PriceTableError as e:
        if not _loaded["logged"]:
            _loaded["logged"] = True
            log.error("%s", e)
        return None


def loaded_table() -> PriceTable:
    """The process's price table, loaded once (the one table() and message_cost() use), or the
    PriceTableError that kept it out, every time: for work that must not mark every cost unknown
    for want of a table (`agentd reprice`)."""
    prices = _loaded["table"]
    if prices is None:
        if _loaded["error"] is not None:
            raise _loaded["error"]
        try:
            prices = _loaded["table"] = PriceTable()
        except PriceTableError as e:
            _loaded["error"] = e
            raise
    return prices


_loaded: dict[str, Any] = {"table": None, "error": None, "logged": False}


def price_rows(rows: list[Row]) -> None:
    """Set `computed_cost` and `cost_source` on each `messages` row that carries tokens or cost
    (message_cost())."""
    for row in rows:
        if row.table == "messages" and (priced := message_cost(row.values)) is not None:
            row.values["computed_cost"], row.values["cost_source"] = priced


def message_cost(values: Mapping[str, Any]) -> tuple[float | None, str] | None:
    """(computed_cost, cost_source) of one message from its `messages` columns, or None.

    The one pricing rule: for a message as an event prepares it (price_rows) and as it is stored
    (`agentd reprice`, db/reprice.py). A message without tokens (a prompt, a message still
    streaming) gets None and is left alone, so a later event with the final usage decides. The
    agent's own figure wins when it gave one above 0: OpenCode providers that do not price report
    0, which is no figure.
    """
    tokens = {c: values[c] for c in TOKEN_COLUMNS if isinstance(values.get(c), int)}
    agent_cost = values.get("cost")
    has_agent_cost = isinstance(agent_cost, int | float) and agent_cost > 0
    if not any(tokens.values()) and not has_agent_cost:
        return None
    computed = None
    model = values.get("model")
    prices = table() if isinstance(model, str) and model and any(tokens.values()) else None
    if prices is not None:
        computed = prices.cost(
            model,
            provider=values.get("provider") or _provider_of(values),
            at_ms=values.get("completed_at") or values.get("created_at"),
            tokens=tokens,
            output_includes_reasoning=values.get("source", "claude") == "claude",
            speed=values.get("speed"),
        )
    return computed, (
        "agent" if has_agent_cost else "computed" if computed is not None else "unknown"
    )


def _provider_of(values: dict[str, Any]) -> str | None:
    return "anthropic" if values.get("source", "claude") == "claude" else None
