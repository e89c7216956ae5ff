"""The price table remembers outcomes (pricing/table.py): every remembered price must be exactly
the one genai-prices computes itself, across models, providers, periods, contexts and counts."""

from __future__ import annotations

import itertools
import sys
from datetime import UTC, datetime
from decimal import Decimal

import genai_prices
import pytest

from agentd.pricing.plan import Plan
from agentd.pricing.table import PriceTable, usage_counts


def _ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


MODELS = [
    "claude-sonnet-4-5-20250929",  # a 200k-token tier
    "claude-opus-4-6",  # a new price from 2026-03-13
    "claude-sonnet-4-6",
    "claude-opus-4-8",  # a fast-mode variant
    "claude-haiku-4-5",
    "Claude-Sonnet-4-5",  # the model name as some clients spell it
    "gpt-4o",
    "gemini-2.5-pro",
    "deepseek-chat",  # off-peak hours
    "no-such-model-7",
]
PROVIDERS = ["claude", "anthropic", "openai", "google", "deepseek", None, "fake"]
TIMES = [
    _ms(2025, 6, 1, 12),
    _ms(2026, 3, 12, 23, 59, 59),
    _ms(2026, 3, 13, 0, 0, 1),
    _ms(2026, 3, 13, 17, 0),  # deepseek's off-peak window (16:30-00:30 UTC), as are the two above
    None,  # no time: now
]
SPEEDS = [None, "standard", "fast"]
TOKENS = [
    {"prompt_tokens": 10, "completion_tokens": 5},
    {
        "prompt_tokens": 3,
        "completion_tokens": 700,
        "cache_read_tokens": 150_000,
        "cache_write_tokens": 20_000,
    },
    {"prompt_tokens": 250_000, "completion_tokens": 4000},  # over the 200k tier
    {
        "prompt_tokens": 5,
        "completion_tokens": 90,
        "cache_read_tokens": 30_000,
        "cache_write_tokens": 2000,
        "cache_write_5m_tokens": 500,
        "cache_write_1h_tokens": 1500,
    },
    # a split larger than the total (older Claude versions): the split wins
    {"prompt_tokens": 1, "cache_write_tokens": 100, "cache_write_1h_tokens": 400},
    {"completion_tokens": 10, "reasoning_tokens": 300},
    {"prompt_tokens": -5, "completion_tokens": 1},  # counts genai-prices refuses: no price
]
_PROVIDERS = {"claude": "anthropic", "anthropic": "anthropic", "openai": "openai"}
_PROVIDERS["google"] = "google"


def reference(model, provider, at_ms, tokens, includes_reasoning, speed):
    """genai-prices' own answer, asked directly each time (no memo)."""
    when = datetime.fromtimestamp(at_ms / 1000, UTC) if at_ms else None
    context = {"speed": speed} if speed and speed != "standard" else None
    provider_id = _PROVIDERS.get((provider or "").lower(), provider)
    for candidate in dict.fromkeys((provider_id, None)):
        try:
            result = genai_prices.calc_price(
                genai_prices.Usage(**usage_counts(tokens, includes_reasoning)),
                model,
                provider_id=candidate,
                genai_request_timestamp=when,
                price_context=context,
            )
        except LookupError:
            continue
        except ValueError:
            return None
        return float(result.total_price)
    return None


def test_remembered_prices_equal_genai_prices_own():
    prices = PriceTable()
    grid = list(itertools.product(MODELS, PROVIDERS, TIMES, SPEEDS, TOKENS, (True, False)))
    seen, remembered = set(), 0
    # First asked, then remembered (the second pass in another order), then computed from the
    # resolved prices alone (the remembered outcomes forgotten before each call).
    for repeat in range(3):
        for model, provider, at_ms, speed, tokens, includes in grid[:: 1 if repeat != 1 else -1]:
            if repeat == 2:
                remembered = remembered or len(prices._memo)
                prices._memo.clear()
            got = prices.cost(
                model,
                provider=provider,
                at_ms=at_ms,
                tokens=tokens,
                output_includes_reasoning=includes,
                speed=speed,
            )
            want = reference(model, provider, at_ms, tokens, includes, speed)
            assert got == want, (model, provider, at_ms, speed, tokens, includes)
            seen.add(got)
    # The grid prices different periods, tiers and variants, and has prices it cannot give.
    assert None in seen and len(seen) > 40
    assert remembered > 100  # the second pass was answered from memory
    # ... and the prices resolved once served all but Groq (none in the grid).
    plans = list(prices._plans.values())
    assert plans and all(isinstance(p, Plan) for p in plans)


def test_the_grid_reaches_what_the_memo_key_must_tell_apart():
    """Each dimension of the grid changes a price somewhere, so a key missing one would fail."""
    prices = PriceTable()
    base = {"prompt_tokens": 1000, "completion_tokens": 1000, "cache_write_tokens": 1000}

    def cost(model, at_ms=TIMES[2], speed=None, provider="anthropic", tokens=base):
        return prices.cost(model, provider=provider, at_ms=at_ms, tokens=tokens, speed=speed)

    tier = {"prompt_tokens": 250_000, "completion_tokens": 1000}
    # From 2026-03-13 on, Opus 4.6 has no long-context tier any more.
    assert cost("claude-opus-4-6", TIMES[1], tokens=tier) != cost("claude-opus-4-6", tokens=tier)
    assert cost("claude-opus-4-8") != cost("claude-opus-4-8", speed="fast")
    assert cost("deepseek-chat", TIMES[0], provider="deepseek") != cost(
        "deepseek-chat", TIMES[3], provider="deepseek"
    )
    split = {**base, "cache_write_5m_tokens": 0, "cache_write_1h_tokens": 1000}
    assert cost("claude-haiku-4-5") != cost("claude-haiku-4-5", tokens=split)
    assert cost("claude-sonnet-4-5", tokens=tier) > 2 * cost(
        "claude-sonnet-4-5", tokens={"prompt_tokens": 125_000, "completion_tokens": 500}
    )
    assert cost("no-such-model-7") is None


@pytest.mark.parametrize("full", [4, 5])
def test_a_full_memo_starts_over(full, monkeypatch):
    monkeypatch.setattr(sys.modules[PriceTable.__module__], "_MEMO_SIZE", full)
    prices = PriceTable()
    for n in range(1, 20):
        tokens = {"prompt_tokens": n, "completion_tokens": n}
        got = prices.cost("claude-haiku-4-5", provider="claude", at_ms=TIMES[0], tokens=tokens)
        assert got == reference("claude-haiku-4-5", "claude", TIMES[0], tokens, True, None)
        assert len(prices._memo) <= full


def test_a_genai_prices_that_computes_otherwise_turns_plans_off(monkeypatch, caplog):
    # plan.py leans on genai-prices' private functions: an upgrade that changes what they compute
    # must cost speed, never a wrong price.
    monkeypatch.setattr(Plan, "total", lambda self, usage: Decimal("123.456"))
    prices = PriceTable()
    for n in range(1, 4):
        tokens = {"prompt_tokens": n, "completion_tokens": 7}
        got = prices.cost("claude-haiku-4-5", provider="claude", at_ms=TIMES[0], tokens=tokens)
        assert got == reference("claude-haiku-4-5", "claude", TIMES[0], tokens, True, None)
    assert prices._plan_for is None
    assert sum("prices differently" in r.getMessage() for r in caplog.records) == 1


def test_a_plan_genai_prices_agrees_with_is_kept():
    prices = PriceTable()
    tokens = {"prompt_tokens": 10, "completion_tokens": 5}
    prices.cost("claude-haiku-4-5", provider="claude", at_ms=TIMES[0], tokens=tokens)
    assert prices._plan_for is not None
    assert len(prices._checked) == 1 and len(prices._plans) == 1
