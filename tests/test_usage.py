"""Costs on messages and sessions (pricing/, migration 0011): the real price table, the real
store through the daemon, the rollup the usage reports read, and a broken price table."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentd.pricing.table import PriceTable, price_rows
from agentd.rows import Row
from conftest import query_db

T = 1795000000000  # 2026-11-18, after every price change the table has for these models


@pytest.fixture(scope="module")
def prices() -> PriceTable:
    return PriceTable()


def test_every_token_kind_is_priced_apart(prices):
    # Sonnet 4.5: $3 input, $15 output, $0.30 cache read, $3.75 5-minute and $6 1-hour writes
    cost = prices.cost(
        "claude-sonnet-4-5",
        provider="anthropic",
        at_ms=T,
        tokens={
            "prompt_tokens": 1000,
            "completion_tokens": 500,
            "cache_read_tokens": 20000,
            "cache_write_tokens": 3000,
            "cache_write_5m_tokens": 1000,
            "cache_write_1h_tokens": 2000,
        },
    )
    expected = (1000 * 3 + 500 * 15 + 20000 * 0.30 + 1000 * 3.75 + 2000 * 6) / 1e6
    assert cost == pytest.approx(expected, rel=1e-9)


def test_long_context_tier(prices):
    """Over 200k input tokens Sonnet 4.5 costs twice as much per input token."""
    short = prices.cost(
        "claude-sonnet-4-5", provider="anthropic", at_ms=T, tokens={"prompt_tokens": 200_000}
    )
    long = prices.cost(
        "claude-sonnet-4-5", provider="anthropic", at_ms=T, tokens={"prompt_tokens": 200_001}
    )
    assert short == pytest.approx(0.6)
    assert long == pytest.approx(200_001 * 6 / 1e6)


def test_unknown_model_is_unknown_not_zero(prices):
    assert (
        prices.cost("no-such-model-7", provider="fake", at_ms=T, tokens={"prompt_tokens": 10})
        is None
    )


def message(**values) -> Row:
    return Row("messages", {"id": "m", "source": "claude", "created_at": T, **values})


def test_cost_source_rule():
    rows = [
        message(model="claude-sonnet-4-5", prompt_tokens=1000, completion_tokens=10),
        message(model="mystery", prompt_tokens=1000),
        # OpenCode: a provider that prices reports its figure; one that does not reports 0
        message(source="opencode", model="claude-sonnet-4-5", provider="anthropic", cost=0.25,
                prompt_tokens=10),
        # ... named as OpenCode names it, <provider>/<model> (normalizers/opencode.py)
        message(source="opencode", model="anthropic/claude-sonnet-4-5", provider="anthropic",
                cost=0, prompt_tokens=1000, reasoning_tokens=100, completion_tokens=100),
        message(role="user"),  # no tokens: left alone
        message(source="opencode", model="openai/gpt-4o", provider="openai", cost=0,
                prompt_tokens=1000),
        message(source="opencode", model="fake/no-such-model-7", provider="fake", cost=0,
                prompt_tokens=1000),
        # a time no calendar holds (an old row): no price in force, not a crash
        message(model="claude-sonnet-4-5", prompt_tokens=10, created_at=10**17),
    ]  # fmt: skip
    price_rows(rows)
    got = [(r.values.get("cost_source"), r.values.get("computed_cost")) for r in rows]
    assert got[0] == ("computed", pytest.approx((1000 * 3 + 10 * 15) / 1e6))
    assert got[1] == ("unknown", None)
    assert got[2] == ("agent", pytest.approx(10 * 3 / 1e6))
    # OpenCode counts reasoning apart from output: both are priced as output
    assert got[3] == ("computed", pytest.approx((1000 * 3 + 200 * 15) / 1e6))
    assert got[4] == (None, None)
    assert got[5] == ("computed", pytest.approx(1000 * 2.5 / 1e6))
    assert got[6] == ("unknown", None)
    assert got[7] == ("unknown", None)


def _transcript(session: str) -> list[dict]:
    def assistant(mid: str, at: str, usage: dict) -> dict:
        return {
            "type": "assistant", "sessionId": session, "uuid": f"u-{mid}", "timestamp": at,
            "cwd": "/tmp/proj", "isSidechain": False,
            "message": {"id": mid, "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                        "content": [{"type": "text", "text": "ok"}], "usage": usage},
        }  # fmt: skip

    return [
        assistant("msg_1", "2026-11-18T10:00:00.000Z", {
            "input_tokens": 1000, "output_tokens": 200, "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 5000,
            "cache_creation": {"ephemeral_5m_input_tokens": 5000, "ephemeral_1h_input_tokens": 0}}),
        # 10 minutes later: the 5-minute cache expired, the context is written again (1 hour)
        assistant("msg_2", "2026-11-18T10:10:00.000Z", {
            "input_tokens": 10, "output_tokens": 50, "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 6000,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 6000},
            "speed": "standard"}),
    ]  # fmt: skip


def test_costs_through_the_daemon_and_the_reports(daemon, agentd_env, agentd_home):
    session = "5e55i0n0-aaaa-4bbb-8ccc-000000000001"
    for record in _transcript(session):
        daemon.ingest("claude-transcript", record)
    db = agentd_home / "agentd.db"
    msgs = query_db(db, "SELECT * FROM messages ORDER BY created_at")
    first = (1000 * 3 + 200 * 15 + 5000 * 3.75) / 1e6
    second = (10 * 3 + 50 * 15 + 6000 * 6) / 1e6
    assert [(m["cost_source"], m["cost"]) for m in msgs] == [("computed", None)] * 2
    assert [m["computed_cost"] for m in msgs] == [pytest.approx(first), pytest.approx(second)]
    assert [m["cache_write_1h_tokens"] for m in msgs] == [0, 6000]
    assert msgs[1]["idle_ms"] == 600_000
    (s,) = query_db(db, "SELECT computed_cost, unpriced_messages FROM sessions")
    assert s["computed_cost"] == pytest.approx(first + second)
    # A replay (spool drain, re-import) changes no sum.
    for record in _transcript(session):
        daemon.ingest("claude-transcript", record)
    (again,) = query_db(db, "SELECT computed_cost FROM sessions")
    assert again["computed_cost"] == pytest.approx(first + second)

    def report(*args: str) -> list[dict]:
        out = subprocess.run(
            [sys.executable, "-m", "agentd", "query", *args, "--since", "all", "--format", "json"],
            env=agentd_env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return json.loads(out.stdout)

    (usage,) = report("usage", "--by", "model")
    assert usage["key"] == "claude-sonnet-4-5" and usage["responses"] == 2
    assert usage["cost"] == pytest.approx(first + second, abs=1e-6)
    assert usage["total_tokens"] == 1000 + 200 + 5000 + 10 + 50 + 6000
    (cache,) = report("cache")
    assert (cache["write_5m_tokens"], cache["write_1h_tokens"]) == (5000, 6000)
    assert (cache["idle_rebuilds"], cache["idle_rebuild_tokens"]) == (1, 6000)
    assert cache["idle_rebuild_cost"] == pytest.approx(second, abs=1e-6)
    (block,) = report("blocks")
    assert block["cost"] == pytest.approx(first + second, abs=1e-6)
    # 10 minutes from the block's start (10:00) to its last message
    assert block["cost_per_hour"] == pytest.approx((first + second) * 6, abs=1e-5)


def _opencode_message(session: str, model: str, provider: str, cost: float, at: int) -> list[dict]:
    info = {"id": session, "slug": "s", "version": "1.18.33", "projectID": "global",
            "directory": "/tmp/proj-oc", "title": "t", "time": {"created": at - 1000, "updated": at}}
    message = {"id": f"msg-{session}", "parentID": f"u-{session}", "role": "assistant",
               "mode": "build", "agent": "build", "path": {"cwd": "/tmp/proj-oc", "root": "/"},
               "cost": cost, "modelID": model, "providerID": provider, "sessionID": session,
               "tokens": {"input": 1000, "output": 100, "reasoning": 0,
                          "cache": {"read": 0, "write": 0}},
               "time": {"created": at, "completed": at + 500}}
    return [
        {"kind": "event", "event": {"type": "session.updated",
                                    "properties": {"sessionID": session, "info": info}}},
        {"kind": "event", "event": {"type": "message.updated",
                                    "properties": {"sessionID": session, "info": message}}},
    ]  # fmt: skip


def test_the_sessions_report_and_the_dashboard_show_the_same_cost(daemon, agentd_env, agentd_home):
    """A session's cost is the agent's own figure where it gave one above 0, else the sum of
    its messages' computed costs, else empty: never $0 for a price nobody knows."""
    from starlette.testclient import TestClient

    from agentd.ui.app import create_app

    claude = "5e55i0n0-aaaa-4bbb-8ccc-000000000002"
    for record in _transcript(claude):  # no cost-state: computed
        daemon.ingest("claude-transcript", record)
    computed = (1000 * 3 + 200 * 15 + 5000 * 3.75 + 10 * 3 + 50 * 15 + 6000 * 6) / 1e6
    now = int(time.time() * 1000)
    for event in _opencode_message("ses_agent", "claude-sonnet-4-5", "anthropic", 0.25, now):
        daemon.ingest("opencode", event)
    for event in _opencode_message("ses_unknown", "no-such-model-7", "fake", 0, now):
        daemon.ingest("opencode", event)
    # One session, two providers: a step the provider priced, one it reported as 0.
    mixed = _opencode_message("ses_mixed", "claude-sonnet-4-5", "anthropic", 0.25, now)
    second = _opencode_message("ses_mixed", "claude-sonnet-4-5", "github-copilot", 0, now + 1)
    second[1]["event"]["properties"]["info"]["id"] = "msg-ses_mixed-2"
    for event in [*mixed, second[1]]:
        daemon.ingest("opencode", event)
    mixed_cost = 0.25 + (1000 * 3 + 100 * 15) / 1e6
    out = subprocess.run(
        [sys.executable, "-m", "agentd", "query", "sessions", "--since", "all", "--format", "json"],
        env=agentd_env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    costs = {r["session_id"]: r["cost"] for r in json.loads(out.stdout)}
    assert costs == {claude: pytest.approx(computed, abs=1e-6), "ses_agent": 0.25,
                     "ses_unknown": None, "ses_mixed": pytest.approx(mixed_cost)}  # fmt: skip
    (usage,) = json.loads(subprocess.run(
        [sys.executable, "-m", "agentd", "query", "usage", "--session", "ses_mixed", "--since",
         "all", "--format", "json"], env=agentd_env, capture_output=True, text=True, check=True,
    ).stdout)  # fmt: skip
    assert usage["cost"] == pytest.approx(mixed_cost)  # the same sum as the usage report's
    token = "usage-test-token-0123"  # every dashboard request needs one (docs/ui.md)
    with TestClient(create_app(agentd_home / "agentd.db", token=token), base_url="http://127.0.0.1",
                    headers={"Authorization": f"Bearer {token}"}) as ui:  # fmt: skip
        listed = {r["id"]: r["cost"] for r in ui.get("/api/sessions?since=all").json()["data"]}
        assert listed == costs
        page = ui.get(f"/api/sessions/{claude}").json()["data"]
        assert page["session"]["cost"] == pytest.approx(computed)
        assert page["usage"][-1]["cost"] == pytest.approx(computed)  # the running total
        assert ui.get("/api/sessions/ses_unknown").json()["data"]["session"]["cost"] is None
        card = ui.get("/api/overview").json()["data"]["cards"]["30d"]
        assert card["cost"] == pytest.approx(computed + 0.25 + mixed_cost, abs=1e-6)


def test_a_cost_priced_away_is_empty_not_minus_zero(daemon, agentd_env, agentd_home):
    """Repricing a session's messages as unknown takes their costs out of the rollups by float
    subtraction, which can leave -1e-16: shown as empty (unknown), never -0.0 or $0."""
    session = "5e55i0n0-aaaa-4bbb-8ccc-000000000004"
    for record in _transcript(session):
        daemon.ingest("claude-transcript", record)
    conn = sqlite3.connect(agentd_home / "agentd.db")
    with conn:  # a model the price table does not know (as if it had dropped it)
        conn.execute("UPDATE messages SET model = 'mystery-model-9'")
        conn.execute("UPDATE usage_hourly SET cost = cost - 1e-16")  # the residue, for sure
    conn.close()

    def agentd(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "agentd", *args], env=agentd_env, capture_output=True,
            text=True, check=True,
        ).stdout  # fmt: skip

    assert json.loads(agentd("reprice", "--json"))["unknown"] == 2
    for report in ("sessions", "usage", "blocks"):
        (row,) = json.loads(agentd("query", report, "--since", "all", "--format", "json"))
        assert row["cost"] is None, (report, row)


def test_a_broken_price_table_marks_costs_unknown(tmp_path: Path):
    """genai-prices that cannot load (a broken install): a clear message, costs unknown."""
    broken = tmp_path / "site" / "genai_prices"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('data file truncated')\n")
    script = (
        "import logging, sys; logging.basicConfig(stream=sys.stderr);"
        "from agentd.rows import Row; from agentd.pricing import price_rows;"
        "r = Row('messages', {'id': 'm', 'source': 'claude', 'model': 'claude-sonnet-4-5',"
        " 'prompt_tokens': 100, 'created_at': 1795000000000}); price_rows([r]);"
        "print(r.values['cost_source'], r.values['computed_cost'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={"PYTHONPATH": str(broken.parent), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert result.stdout == "unknown None\n"
    assert (
        "price table (Python package genai-prices) cannot be loaded: data file truncated"
        in result.stderr
    )
    assert "pip install -U genai-prices" in result.stderr
    cli = subprocess.run(
        [sys.executable, "-m", "agentd", "prices", "claude-sonnet-4-5"],
        env={"PYTHONPATH": str(broken.parent), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True, text=True,
    )  # fmt: skip
    assert cli.returncode == 1 and "Traceback" not in cli.stderr
    assert cli.stderr.startswith("Error: the price table")


def test_prices_command_shows_the_table_and_unknown_models(agentd_env):
    def prices(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "agentd", "prices", *args],
            env=agentd_env, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip

    out = prices("claude-sonnet-4-5", "no-such-model-7", "anthropic/claude-sonnet-4-5")
    assert "claude-sonnet-4-5: $3 input, $15 output per million tokens" in out
    assert "anthropic/claude-sonnet-4-5: $3 input, $15 output per million tokens" in out
    assert "no-such-model-7: unknown" in out
    document = json.loads(prices("--json", "claude-sonnet-4-5", "no-such-model-7"))
    assert document["table"].startswith("genai-prices ") and document["given"] is True
    assert document["models"] == [
        {"model": "claude-sonnet-4-5", "known": True, "input_per_million": 3,
         "output_per_million": 15},
        {"model": "no-such-model-7", "known": False, "input_per_million": None,
         "output_per_million": None},
    ]  # fmt: skip
    # Without a model and without a database: what to type.
    assert "name some, e.g. agentd prices claude-sonnet-4-5" in prices()


def test_prices_without_models_lists_the_models_used_lately(daemon, agentd_env):
    for record in _transcript("5e55i0n0-aaaa-4bbb-8ccc-000000000003"):
        daemon.ingest("claude-transcript", {**record, "timestamp": time.strftime(
            "%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())})  # fmt: skip
    for event in _opencode_message("ses_p", "no-such-model-7", "fake", 0, int(time.time() * 1000)):
        daemon.ingest("opencode", event)
    out = subprocess.run(
        [sys.executable, "-m", "agentd", "prices"], env=agentd_env, capture_output=True,
        text=True, check=True,
    ).stdout  # fmt: skip
    assert out.splitlines()[1:] == [
        "the models of your messages of the last 30 days:",
        "claude-sonnet-4-5: $3 input, $15 output per million tokens",
        "fake/no-such-model-7: unknown (its messages' cost is shown as unknown, never $0)",
    ]
