"""`agentd reprice`: stored messages priced again, through the daemon and directly, compared row for
row (messages, usage_hourly, sessions) with a database where the same events were priced at
ingest; a second run, the agent's own cost, unknown models, a broken price table, the push."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agentd.config import Config
from conftest import Daemon, query_db

T = 1795000000000  # 2026-11-18, after every price change the table has for these models
HOUR = 3_600_000
CLAUDE_MODELS = ("claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5", "mystery-model-9")
# (model, provider, the agent's own cost): OpenCode providers that price report their figure.
OPENCODE_MODELS = (
    ("claude-sonnet-4-5", "anthropic", 0.0123),
    ("claude-sonnet-4-5", "anthropic", 0),
    ("gpt-4o", "openai", 0),
    ("model", "fake", 0),
)


def _claude(session: str, n: int, at: int, model: str) -> dict[str, Any]:
    """One transcript record of an assistant response with its usage."""
    stamp = _iso(at)
    return {
        "type": "assistant", "sessionId": session, "uuid": f"u-{session}-{n}", "timestamp": stamp,
        "cwd": "/tmp/proj", "isSidechain": False,
        "message": {
            "id": f"msg_{session}_{n}", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": "ok"}],
            "usage": {
                "input_tokens": 100 + 37 * n, "output_tokens": 20 + 11 * n,
                "cache_read_input_tokens": 1000 * (n % 5), "cache_creation_input_tokens": 400 + n,
                "cache_creation": {"ephemeral_5m_input_tokens": 400 + n - (n % 3) * 100,
                                   "ephemeral_1h_input_tokens": (n % 3) * 100},
            },
        },
    }  # fmt: skip


def _iso(at: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(at / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _opencode(session: str, n: int, at: int, model: str, provider: str, cost: float, done: bool):
    """message.updated of an assistant message: streaming (zeros) or completed (usage, cost)."""
    info: dict[str, Any] = {
        "id": f"msg_{session}_{n}", "role": "assistant", "sessionID": session, "modelID": model,
        "providerID": provider, "cost": cost if done else 0,
        "tokens": {"input": (300 + 17 * n) if done else 0, "output": (40 + n) if done else 0,
                   "reasoning": (5 * n) if done else 0,
                   "cache": {"read": (2000 * n) if done else 0, "write": (100 * n) if done else 0}},
        "time": {"created": at, **({"completed": at + 1500} if done else {})},
    }  # fmt: skip
    event = {"id": f"evt_{session}_{n}_{done}", "type": "message.updated",
             "properties": {"sessionID": session, "info": info}}  # fmt: skip
    return {"kind": "event", "event": event}


def events() -> list[tuple[str, dict[str, Any]]]:
    """Claude and OpenCode sessions over three days: known and unknown models, the agent's own
    cost, and each Claude response written twice (its usage is on each of its tool_use lines)."""
    out: list[tuple[str, dict[str, Any]]] = []
    for s, model in enumerate(CLAUDE_MODELS):
        session = f"5e55i0n0-aaaa-4bbb-8ccc-00000000000{s}"
        for n in range(12):
            record = _claude(session, n, T + s * 5 * HOUR + n * 19 * 60_000, model)
            out += [("claude-transcript", record)] * (2 if n % 4 == 0 else 1)
    for s, (model, provider, cost) in enumerate(OPENCODE_MODELS):
        session = f"ses_reprice{s}"
        for n in range(8):
            at = T + 24 * HOUR + s * 5 * HOUR + n * 23 * 60_000
            out.append(("opencode", _opencode(session, n, at, model, provider, cost, False)))
            out.append(("opencode", _opencode(session, n, at, model, provider, cost, True)))
    return out


# What each table is compared by. Floats are sums kept by triggers in the order messages were
# written, which the two databases do not share: equal up to the last bits of a double.
TABLES = {"messages": "id", "usage_hourly": "hour, session_id, model, agent_id", "sessions": "id"}
# The session sums of migration 0011 are NULL until a message first counts in them and 0 once
# every one that counted has left (as an ingest that prices a message again leaves them too):
# the same "none" (db/reprice.py says why a reprice keeps the 0).
NONE_IS_ZERO = {("sessions", "unpriced_messages"), ("sessions", "computed_cost")}


def assert_same_rows(fresh: Path, repriced: Path, ignore: tuple[str, ...] = ()) -> None:
    """Every row of TABLES alike, but for the columns named in `ignore`."""
    for table, key in TABLES.items():
        a = query_db(fresh, f"SELECT * FROM {table} ORDER BY {key}")
        b = query_db(repriced, f"SELECT * FROM {table} ORDER BY {key}")
        assert len(a) == len(b) and a, table
        for row_a, row_b in zip(a, b, strict=True):
            for column, value in row_a.items():
                if column in ignore:
                    continue
                other = row_b[column]
                if (table, column) in NONE_IS_ZERO:
                    value, other = (0.0 if v is None else float(v) for v in (value, other))
                if table != "messages" and isinstance(value, float) and isinstance(other, float):
                    assert math.isclose(value, other, rel_tol=1e-12, abs_tol=1e-12), (
                        table, column, row_a, row_b,
                    )  # fmt: skip
                else:
                    assert value == other, (table, column, row_a, row_b)


def age(db: Path) -> int:
    """Make the database what an older agentd left: Claude's first session and OpenCode's first
    two stored before pricing (migration 0011: no computed cost, `agent` where the agent gave
    one), and Haiku unknown to the price table then. Returns the messages changed."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        before = conn.execute(
            "UPDATE messages SET computed_cost = NULL, cost_source = CASE WHEN cost > 0"
            " THEN 'agent' END WHERE session_id IN ('5e55i0n0-aaaa-4bbb-8ccc-000000000000',"
            " 'ses_reprice0', 'ses_reprice1') AND cost_source IS NOT NULL"
        ).rowcount
        unknown = conn.execute(
            "UPDATE messages SET computed_cost = NULL, cost_source = 'unknown'"
            " WHERE model = 'claude-haiku-4-5' AND cost_source = 'computed'"
        ).rowcount
    finally:
        conn.close()
    return before + unknown


def changed_messages(fresh: Path, aged: Path) -> int:
    """Messages whose cost or cost source aging changed."""
    sql = "SELECT id, computed_cost, cost_source FROM messages ORDER BY id"
    return sum(a != b for a, b in zip(query_db(fresh, sql), query_db(aged, sql), strict=True))


def agentd(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentd", *args], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def home_env(home: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTD_")}
    env |= {"AGENTD_HOME": str(home), "AGENTD_AUTOSTART": "0"}
    return env


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    """The events ingested by a real daemon, priced at ingest; the daemon stopped (the file is
    whole, its WAL checkpointed)."""
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="agd-", dir="/tmp"))
    env = home_env(home)
    daemon = Daemon(env, Config.load(env)).start()
    try:
        for n, (source, payload) in enumerate(events()):
            assert daemon.ingest(source, payload, T + n) == {"stored": True}
    finally:
        assert daemon.stop() == 0
    kept = tmp_path_factory.mktemp("fresh") / "agentd.db"
    shutil.copy(home / "agentd.db", kept)
    shutil.rmtree(home, ignore_errors=True)
    return kept


@pytest.fixture
def aged(fresh, agentd_home) -> Path:
    """A copy of the fresh database, aged (age()), as this test's AGENTD_HOME's database."""
    db = agentd_home / "agentd.db"
    shutil.copy(fresh, db)
    assert age(db) > 20
    return db


def test_the_aged_database_differs(fresh, aged):
    """The comparisons below can fail: aging changes messages and every rollup over them."""
    with pytest.raises(AssertionError):
        assert_same_rows(fresh, aged)
    unpriced = query_db(aged, "SELECT count(*) AS n FROM messages WHERE cost_source IS NULL")
    assert unpriced[0]["n"] > 0


def test_reprice_through_the_daemon_gives_the_fresh_database(fresh, aged, daemon, agentd_env):
    expected = changed_messages(fresh, aged)
    result = agentd(agentd_env, "reprice", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    stored = query_db(aged, "SELECT count(*) AS n FROM messages WHERE cost_source IS NOT NULL")
    assert report["examined"] == stored[0]["n"] and report["repriced"] == expected
    assert report["price_table"].startswith("genai-prices ")
    mystery = report["by_model"]["mystery-model-9"]
    assert mystery["unknown"] == mystery["examined"] == 12 and mystery["cost_change"] == 0
    assert report["by_model"]["claude-haiku-4-5"]["repriced"] == 12
    assert report["cost_change"] > 0
    daemon.stop()
    assert_same_rows(fresh, aged)
    # The agent's own figure stays the one reports use; an unknown model stays unknown, not $0.
    agent = query_db(aged, "SELECT cost_source, computed_cost FROM messages WHERE cost > 0")
    assert len(agent) == 8 and {r["cost_source"] for r in agent} == {"agent"}
    mystery_rows = query_db(
        aged, "SELECT cost_source, computed_cost FROM messages WHERE model = 'mystery-model-9'"
    )
    assert mystery_rows == [{"cost_source": "unknown", "computed_cost": None}] * 12


def test_reprice_directly_gives_the_fresh_database_and_a_second_run_changes_nothing(
    fresh, aged, agentd_env, config
):
    result = agentd(agentd_env, "reprice")
    assert result.returncode == 0, result.stderr
    assert "re-priced" in result.stdout and "mystery-model-9" in result.stdout
    assert_same_rows(fresh, aged)
    assert not config.pid_path.exists()  # the writer lock it held is released
    again = agentd(agentd_env, "reprice", "--json")
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert second["repriced"] == 0 and second["cost_change"] == 0 and second["examined"] > 0
    assert_same_rows(fresh, aged)


def test_reprice_selects_by_time_source_and_model(fresh, aged, agentd_env):
    def run(*args: str) -> dict[str, Any]:
        result = agentd(agentd_env, "reprice", "--json", *args)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    haiku = run("--model", "claude-haiku-4-5")
    assert haiku["repriced"] == haiku["examined"] == 12 and set(haiku["by_model"]) == {
        "claude-haiku-4-5"
    }
    # OpenCode's messages are all a day after T; Claude's all within it.
    later = run("--since", str(T + 20 * HOUR))
    assert set(later["by_model"]) == {f"{p}/{m}" for m, p, _ in OPENCODE_MODELS}
    assert run("--source", "claude")["repriced"] == 12  # the aged Claude session's
    assert run()["repriced"] == 0
    assert_same_rows(fresh, aged)
    bad = agentd(agentd_env, "reprice", "--since", "soon")
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_a_broken_price_table_changes_nothing(aged, agentd_env, config, tmp_path):
    """genai-prices that cannot load: a clear error, exit 1, and not a row changed (either way):
    never every computed cost made unknown."""
    broken = tmp_path / "site" / "genai_prices"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('data file truncated')\n")
    env = dict(agentd_env, PYTHONPATH=str(broken.parent))
    before = {t: query_db(aged, f"SELECT * FROM {t} ORDER BY {k}") for t, k in TABLES.items()}
    direct = agentd(env, "reprice")
    assert direct.returncode == 1 and "Traceback" not in direct.stderr
    assert direct.stderr.startswith(
        "Error: nothing was re-priced: the price table (Python package genai-prices) cannot be"
    )
    daemon = Daemon(env, config).start()
    try:
        through = agentd(env, "reprice")
    finally:
        daemon.stop()
    assert through.returncode == 1 and "Traceback" not in through.stderr
    assert "cannot be loaded: data file truncated" in through.stderr
    assert "nothing was re-priced" in through.stderr and "restart the daemon" in through.stderr
    assert "-32004" in through.stderr
    after = {t: query_db(aged, f"SELECT * FROM {t} ORDER BY {k}") for t, k in TABLES.items()}
    assert after == before


async def test_reprice_lets_ingests_through_between_batches(fresh, tmp_path):
    """The store's reprice takes the writer for one batch at a time: an ingest sent while it runs
    is committed before it ends, and the result is still the fresh database's."""
    from agentd.db.reprice import Selection
    from agentd.db.store import Store

    db = tmp_path / "agentd.db"
    shutil.copy(fresh, db)
    age(db)
    store = Store(db)
    await store.open()
    order: list[str] = []
    try:
        batches: list[float] = []

        async def reprice() -> dict[str, Any]:
            result = await store.reprice(
                Selection(), lambda tally, done: batches.append(done), batch=7
            )
            order.append("reprice")
            return result

        async def ingest() -> None:
            await asyncio.sleep(0)  # the reprice has the writer first
            source, payload = events()[0]
            await store.ingest(source, payload_bytes(payload), T)
            order.append("ingest")

        result, _ = await asyncio.gather(reprice(), ingest())
    finally:
        await store.close()
    assert order == ["ingest", "reprice"]
    rows = query_db(db, "SELECT count(*) AS n FROM messages")[0]["n"]
    assert len(batches) == -(-rows // 7) and batches[-1] == 1.0 and result["repriced"] > 0
    assert_same_rows(fresh, db)


def payload_bytes(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def test_progress_is_one_redrawn_line_once_it_takes_long():
    import io

    from agentd.cli.maintenance import Progress
    from agentd.db.reprice import Tally

    stream = io.StringIO()
    progress = Progress(True, stream, after_s=0)
    tally = Tally(examined=4000, repriced=12)
    progress(tally, 0.5)
    progress(tally, 0.6)  # within 0.1 s of the last: not drawn
    progress.finish()
    assert stream.getvalue() == "\r\x1b[K50%: 4000 messages priced, 12 re-priced\n"
    quiet = io.StringIO()
    slow = Progress(True, quiet, after_s=3600)
    slow(tally, 0.5)
    slow.finish()
    assert quiet.getvalue() == ""


def test_reprice_without_a_database_says_so(agentd_env, config):
    result = agentd(agentd_env, "reprice")
    assert result.returncode == 1 and "no database" in result.stderr
    assert "Traceback" not in result.stderr and not config.db_path.exists()


def test_a_database_from_before_costs_is_upgraded_then_priced(agentd_env, config, tmp_path):
    """A database an agentd older than migration 0011 wrote: `agentd reprice` (direct) upgrades
    it and prices its messages as an ingest prices the same rows now (price_rows), with the
    hourly rollup and the session sums to match."""
    from agentd.db.migrations import MIGRATIONS, migrate
    from agentd.pricing import price_rows
    from agentd.rows import Row

    columns = ("id", "session_id", "source", "role", "model", "provider", "prompt_tokens",
               "completion_tokens", "cache_read_tokens", "cache_write_tokens", "cost",
               "created_at", "completed_at")  # fmt: skip
    models = [("claude", "claude-sonnet-4-5", None, None), ("claude", "mystery-model-9", None, None),
              ("opencode", "claude-sonnet-4-5", "anthropic", 0.02)]  # fmt: skip
    rows = [
        (f"m{n}", f"s{n % 3}", source, "assistant", model, provider, 100 + n, 10 + n, 1000 * n,
         0, cost, T + n * 600_000, T + n * 600_000 + 900)
        for n, (source, model, provider, cost) in ((n, models[n % 3]) for n in range(30))
    ]  # fmt: skip
    old = sqlite3.connect(config.db_path, isolation_level=None)
    try:
        migrate(old, MIGRATIONS[:10])
        old.executemany("INSERT INTO sessions (id, source) VALUES (?, ?)",
                        [(f"s{n}", models[n][0]) for n in range(3)])  # fmt: skip
        old.executemany(f"INSERT INTO messages ({', '.join(columns)}) VALUES"
                        f" ({', '.join('?' for _ in columns)})", rows)  # fmt: skip
    finally:
        old.close()
    result = agentd(agentd_env, "reprice", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["examined"] == report["repriced"] == 30 and report["unknown"] == 10
    # The same rows priced as an ingest prices them now, into a database of today's schema.
    fresh = tmp_path / "fresh.db"
    conn = sqlite3.connect(fresh, isolation_level=None)
    try:
        migrate(conn)
        conn.executemany("INSERT INTO sessions (id, source) VALUES (?, ?)",
                         [(f"s{n}", models[n][0]) for n in range(3)])  # fmt: skip
        for row in rows:
            priced = Row("messages", dict(zip(columns, row, strict=True)))
            price_rows([priced])
            names = list(priced.values)
            conn.execute(f"INSERT INTO messages ({', '.join(names)}) VALUES"
                         f" ({', '.join('?' for _ in names)})", list(priced.values.values()))  # fmt: skip
    finally:
        conn.close()
    # idle_ms came with 0011 and is measured when a message is first stored: not for these (no
    # cache writes, so no idle rebuild in the rollup either way).
    assert_same_rows(fresh, config.db_path, ignore=("idle_ms",))
    costs = query_db(config.db_path, "SELECT cost_source, count(*) AS n FROM messages GROUP BY 1")
    assert costs == [{"cost_source": "agent", "n": 10}, {"cost_source": "computed", "n": 10},
                     {"cost_source": "unknown", "n": 10}]  # fmt: skip
