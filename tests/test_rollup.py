"""The tool rollup (db/rollup.py, migration 0010) against real SQLite files: after every kind of
write (inserts, replays, Pre-then-Post updates, prune, a session's project arriving late, an
upgrade of an existing database) it equals an aggregate computed here, in Python, from `tools`
itself; its percentiles are within 1% of the exact nearest-rank ones; the tools view reads it
with the numbers of the database."""

from __future__ import annotations

import asyncio
import json
import math
import random
import shutil
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from agentd import normalizers as sources
from agentd.db import rollup
from agentd.db.migrations import MIGRATIONS, migrate
from agentd.db.store import Store, connect_sync
from agentd.importers import run_import
from agentd.query.reports import nearest_rank
from agentd.rows import Normalized, Row
from agentd.ui import toolstats
from agentd.ui.app import create_app
from agentd.ui.filters import Filters
from conftest import PAYLOADS, load_jsonl

DAY = rollup.DAY_MS
NOW = int(time.time() * 1000)


def direct(conn: sqlite3.Connection) -> dict[str, Any]:
    """What the rollup tables must hold, computed from the rows (not with the rollup's SQL)."""
    stats: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    daily: Counter[tuple] = Counter()
    weekly: Counter[tuple] = Counter()
    for name, source, success, duration, created, project in conn.execute(
        "SELECT t.tool_name, t.source, t.success, t.duration_ms, t.created_at, s.project_path "
        "FROM tools t LEFT JOIN sessions s ON s.id = t.session_id"
    ):
        day = created // DAY if created is not None else -1
        s = stats[(day, name or "", source, project or "")]
        s[0] += 1
        s[1] += success == 0
        s[2] += success is None
        if duration is not None:
            s[3] += 1
            s[4] += duration
            bucket = rollup.bucket_of(duration)
            daily[(day, name or "", source, bucket)] += 1
            weekly[(day // 7 if day >= 0 else -1, name or "", source, bucket)] += 1
    return {"stats": {k: tuple(v) for k, v in stats.items()}, "daily": dict(daily),
            "weekly": dict(weekly)}  # fmt: skip


def stored(conn: sqlite3.Connection) -> dict[str, Any]:
    return {
        "stats": {r[:4]: tuple(r[4:]) for r in conn.execute("SELECT * FROM tool_stats_daily")},
        "daily": {r[:4]: r[4] for r in conn.execute("SELECT * FROM tool_duration_daily")},
        "weekly": {r[:4]: r[4] for r in conn.execute("SELECT * FROM tool_duration_weekly")},
    }


def assert_rollup_exact(path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(path)
    try:
        now = stored(conn)
        assert now == direct(conn)
        return now
    finally:
        conn.close()


async def ingest(path: Path, source: str, payloads: list[dict[str, Any]], at: int = NOW) -> None:
    store = Store(path)
    await store.open()
    try:
        for i, p in enumerate(payloads):
            await store.ingest(source, json.dumps(p).encode(), at + i)
    finally:
        await store.close()


async def prune(path: Path, cutoff_ms: int) -> dict[str, Any]:
    """The store's prune of what was last seen before `cutoff_ms`."""
    store = Store(path)
    await store.open()
    try:
        return await store.prune(cutoff_ms)
    finally:
        await store.close()


async def import_over_live_capture(
    tmp_path: Path, config: Any, monkeypatch: Any, snapshot: Callable[[Path], Any]
) -> tuple[Any, Any]:
    """The sample calls captured live, then `agentd import claude` of their transcript (the same
    tool rows, upserted by the importer through the store), then the import again, which must
    change nothing. `snapshot(db)` asserts a rollup exact and returns its tables; it runs after
    each step. Returns the first import's summary and the snapshot after it."""
    monkeypatch.setenv("AGENTD_IMPORT_WORKERS", "0")  # prepare in this process
    await ingest(config.db_path, "claude", claude_tool_events())
    snapshot(config.db_path)
    tree = tmp_path / "projects" / "-home-dev-runs-claude-main-proj"
    tree.mkdir(parents=True)
    shutil.copy(PAYLOADS / "claude_transcript_trimmed.jsonl",
                tree / "bbce9559-ac03-43d5-abf7-5a5bf173473b.jsonl")  # fmt: skip
    summary = await asyncio.to_thread(run_import, config, "claude", [tree.parent])
    assert summary.errors == []
    imported = snapshot(config.db_path)
    await asyncio.to_thread(run_import, config, "claude", [tree.parent])  # again: no change
    assert snapshot(config.db_path) == imported
    return summary, imported


@pytest.fixture
def rows_source():
    """A test-only source whose events carry their rows, to write exact values through the
    real store (its upserts, its transactions)."""

    def normalize(payload, ctx):
        return Normalized(kind=payload["kind"], session_id=None,
                          rows=[Row(t, dict(v)) for t, v in payload["rows"]])  # fmt: skip

    sources.NORMALIZERS["rowsrc"] = normalize
    yield "rowsrc"
    del sources.NORMALIZERS["rowsrc"]


def claude_tool_events() -> list[dict[str, Any]]:
    """The real Claude hook payloads, each Post given a duration as Claude Code sends it."""
    out = []
    for i, record in enumerate(load_jsonl("claude_hooks_examples.jsonl")):
        payload = dict(record["stdin"])
        if payload.get("hook_event_name") in ("PostToolUse", "PostToolUseFailure"):
            payload["duration_ms"] = 37 * (i + 1) ** 2
        out.append(payload)
    return out


async def test_rollup_follows_real_claude_events_pre_then_post_and_replays(tmp_path):
    path = tmp_path / "a.db"
    events = claude_tool_events()
    pre = [e for e in events if e["hook_event_name"] == "PreToolUse"]
    await ingest(path, "claude", pre)  # calls with no outcome or duration yet
    first = assert_rollup_exact(path)
    assert sum(v[2] for v in first["stats"].values()) == len(pre)  # all unknown
    assert first["daily"] == {}

    await ingest(path, "claude", events, at=NOW + 5000)  # Post events UPDATE those rows
    after = assert_rollup_exact(path)
    assert sum(after["daily"].values()) > 0
    assert sum(v[1] for v in after["stats"].values()) >= 1  # the PostToolUseFailure

    await ingest(path, "claude", events, at=NOW + 5000)  # the same events again: no change
    assert assert_rollup_exact(path) == after


async def test_rollup_exact_after_an_import_over_live_capture_and_its_replay(
    tmp_path, config, monkeypatch
):
    summary, imported = await import_over_live_capture(
        tmp_path, config, monkeypatch, assert_rollup_exact
    )
    # The transcript's calls are the ones the hooks captured: the import upserted those rows.
    assert (summary.files_read, sum(v[0] for v in imported["stats"].values())) == (1, 7)


async def test_rollup_unchanged_by_an_upsert_that_changes_nothing(tmp_path, rows_source):
    path = tmp_path / "a.db"
    row = {"id": "t1", "session_id": "s1", "source": "claude", "tool_name": "Bash",
           "success": 1, "duration_ms": 250, "created_at": NOW}  # fmt: skip
    await ingest(path, rows_source, [{"kind": "a", "rows": [["tools", row]]}])
    before = assert_rollup_exact(path)
    # Another event (another id, so the store does not skip it) carrying the same values.
    await ingest(path, rows_source, [{"kind": "b", "rows": [["tools", row]]}])
    assert assert_rollup_exact(path) == before
    assert before["stats"] == {(NOW // DAY, "Bash", "claude", ""): (1, 0, 0, 1, 250)}


async def test_rollup_moves_a_call_when_its_values_change(tmp_path, rows_source):
    path = tmp_path / "a.db"
    base = {"id": "t1", "session_id": "s1", "source": "claude"}
    steps = [
        {"tool_name": "Bash", "created_at": NOW},  # Pre: no outcome yet
        {"success": 1, "duration_ms": 900},  # Post
        {"success": 0, "duration_ms": 15_000},  # a later event corrects both
        {"created_at": NOW - 3 * DAY},  # an earlier start: created_at keeps the minimum
        {"tool_name": "Task"},
    ]
    for i, values in enumerate(steps):
        await ingest(
            path, rows_source, [{"kind": f"k{i}", "rows": [["tools", {**base, **values}]]}]
        )
        assert_rollup_exact(path)
    final = assert_rollup_exact(path)
    assert final["stats"] == {((NOW - 3 * DAY) // DAY, "Task", "claude", ""): (1, 1, 0, 1, 15_000)}
    assert list(final["daily"].values()) == [1]


async def test_rollup_follows_a_sessions_project_and_prune(tmp_path, rows_source):
    path = tmp_path / "a.db"
    calls = [["tools", {"id": f"t{i}", "session_id": "s1", "source": "opencode",
                        "tool_name": "bash", "success": i % 2, "duration_ms": 100 + i,
                        "created_at": NOW - 40 * DAY + i}] for i in range(5)]  # fmt: skip
    calls.append(["tools", {"id": "new", "session_id": "s2", "source": "opencode",
                            "tool_name": "read", "duration_ms": 3, "created_at": NOW}])  # fmt: skip
    await ingest(path, rows_source, [{"kind": "calls", "rows": calls}])
    assert {k[3] for k in assert_rollup_exact(path)["stats"]} == {""}  # no session row yet
    session = {"id": "s1", "source": "opencode", "created_at": NOW - 40 * DAY,
               "updated_at": NOW - 40 * DAY}  # fmt: skip
    await ingest(path, rows_source, [{"kind": "s", "rows": [["sessions", session]]}])
    assert_rollup_exact(path)
    await ingest(path, rows_source, [{"kind": "p1", "rows": [["sessions", {**session,
                 "project_path": "/src/a"}]]}])  # fmt: skip
    assert {k[3] for k in assert_rollup_exact(path)["stats"]} == {"/src/a", ""}
    await ingest(path, rows_source, [{"kind": "p2", "rows": [["sessions", {**session,
                 "project_path": "/src/b"}]]}])  # fmt: skip
    assert {k[3] for k in assert_rollup_exact(path)["stats"]} == {"/src/b", ""}

    result = await prune(path, NOW - 10 * DAY)  # s1 and its calls go; t "new" stays
    assert result["deleted"]["tools"] == 5
    assert assert_rollup_exact(path)["stats"] == {(NOW // DAY, "read", "opencode", ""):
                                                   (1, 0, 1, 1, 3)}  # fmt: skip


def test_rollup_follows_plain_sql_writes_and_deleted_sessions(tmp_path):
    path = tmp_path / "a.db"
    conn = connect_sync(path)
    conn.execute("INSERT INTO sessions (id, source, project_path) VALUES ('s', 'claude', '/p')")
    rng = random.Random(11)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO tools (id, session_id, source, tool_name, success, duration_ms, created_at) "
        "VALUES (?, 's', 'claude', ?, ?, ?, ?)",
        [(f"t{i}", rng.choice(["Bash", None]), rng.choice([0, 1, None]),
          rng.choice([None, -5, 0, 1, 49, 50, 51, 52, 53, 1000, 10**12]),
          rng.choice([None, NOW, NOW - 9 * DAY, 5])) for i in range(300)],
    )  # fmt: skip
    conn.execute("COMMIT")
    assert_rollup_exact(path)
    conn.execute("UPDATE tools SET tool_name = tool_name, success = success")  # no change
    conn.execute("UPDATE tools SET duration_ms = duration_ms * 3 WHERE rowid % 3 = 0")
    assert_rollup_exact(path)
    conn.execute("UPDATE tools SET success = 1 - coalesce(success, 0) WHERE rowid % 5 = 0")
    conn.execute("UPDATE tools SET duration_ms = NULL WHERE rowid % 7 = 0")
    conn.execute("UPDATE tools SET created_at = created_at + 3600000 WHERE rowid % 4 = 0")
    assert_rollup_exact(path)
    conn.execute("DELETE FROM sessions")  # the calls stay, now of no known project
    assert {k[3] for k in assert_rollup_exact(path)["stats"]} == {""}
    conn.execute("DELETE FROM tools WHERE rowid % 2 = 0")
    assert_rollup_exact(path)
    conn.execute("DELETE FROM tools")
    assert assert_rollup_exact(path) == {"stats": {}, "daily": {}, "weekly": {}}
    conn.close()


def test_migration_backfills_an_existing_database(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path, isolation_level=None)
    rollup_at = next(i for i, m in enumerate(MIGRATIONS) if m.name.endswith("_tool_rollup"))
    migrate(old, MIGRATIONS[:rollup_at])  # the schema before the rollup
    old.execute("INSERT INTO sessions (id, source, project_path) VALUES ('s', 'claude', '/p')")
    rng = random.Random(7)
    old.execute("BEGIN")
    old.executemany(
        "INSERT INTO tools (id, session_id, source, tool_name, success, duration_ms, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(f"t{i}", rng.choice(["s", "gone", None]), rng.choice(["claude", "opencode"]),
          rng.choice(["Bash", "read", None]), rng.choice([0, 1, None]),
          rng.choice([None, 0, int(rng.lognormvariate(6, 2))]),
          rng.choice([None, NOW - rng.randrange(60 * DAY)])) for i in range(2000)],
    )  # fmt: skip
    old.execute("COMMIT")
    old.close()
    conn = connect_sync(path)  # what the daemon does at start: applies the rollup's migration
    applied = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
    assert MIGRATIONS[rollup_at].name in applied
    conn.close()
    backfilled = assert_rollup_exact(path)
    assert sum(v[0] for v in backfilled["stats"].values()) == 2000


def test_bucket_table_is_the_python_bounds_and_every_estimate_is_within_1_percent(tmp_path):
    conn = connect_sync(tmp_path / "a.db")
    table = conn.execute("SELECT lo_ms, hi_ms FROM tool_duration_buckets ORDER BY lo_ms")
    lows, highs = rollup.bucket_bounds()
    assert table.fetchall() == list(zip(lows, highs, strict=True))
    conn.close()
    assert all(lo <= hi and 50 * hi < 51 * lo for lo, hi in zip(lows, highs, strict=True))
    rng = random.Random(1)
    values = [*range(-3, 200_000), *(rng.randrange(1, 10**15) for _ in range(20_000))]
    for v in values:
        lo = rollup.bucket_of(v)
        assert abs(rollup.estimate(lo) - v) <= 0.01 * abs(v), v
    assert all(rollup.estimate(rollup.bucket_of(v)) == v for v in range(-3, 51))  # exact


def _fill(path: Path, n: int, seed: int) -> list[tuple]:
    """n calls over 40 days of two projects, durations log-normal; returns the rows."""
    conn = connect_sync(path)
    conn.execute("INSERT INTO sessions (id, source, project_path) VALUES ('a', 'claude', '/a')")
    conn.execute("INSERT INTO sessions (id, source, project_path) VALUES ('b', 'opencode', '/b')")
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        session = rng.choice("ab")
        rows.append((f"t{i}", session, "claude" if session == "a" else "opencode",
                     rng.choice(["Bash", "Read", "Edit"]), int(rng.random() > 0.1),
                     int(rng.lognormvariate(5, 1.5)), NOW - rng.randrange(40 * DAY)))  # fmt: skip
    conn.execute("BEGIN")  # one transaction: autocommit would sync the file per row
    conn.executemany(
        "INSERT INTO tools (id, session_id, source, tool_name, success, duration_ms, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)", rows)  # fmt: skip
    conn.execute("COMMIT")
    conn.close()
    return rows


# Windows starting late in a UTC day (its rows are read and added to the rollup's days) and
# early in one (the whole day comes from the rollup, the rows before the start are taken away).
_MIDNIGHT = (NOW // DAY - 9) * DAY


@pytest.mark.parametrize(
    "query",
    [
        {"since": "30d"},
        {"since": "all"},
        {"since": str(_MIDNIGHT + 20 * 3_600_000)},
        {"since": str(_MIDNIGHT + 3 * 3_600_000)},
        {"since": "30d", "agent": "claude"},
    ],
)
def test_histogram_percentiles_within_1_percent_of_exact_nearest_rank(tmp_path, query):
    path = tmp_path / "a.db"
    rows = _fill(path, 6000, seed=len(str(query)))
    f = Filters.parse(query)
    if f.since_ms is not None:  # pinned, so that the test and the view see the same window
        f = Filters.parse({**query, "since": str(f.since_ms)})
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    stats, how = toolstats.per_tool(conn, f, exact_limit=0)  # force the rollup
    conn.close()
    assert how == {"method": "histogram", "max_relative_error": 0.01}
    since = f.since_ms or 0
    window = [r for r in rows if r[6] >= since and (not f.agent or r[2] == f.agent)]
    assert {s["tool"] for s in stats} == {r[3] for r in window}
    for s in stats:
        mine = [r for r in window if r[3] == s["tool"]]
        durations = sorted(r[5] for r in mine)
        assert (s["calls"], s["failed"], s["unknown"]) == (len(mine),
                                                            sum(r[4] == 0 for r in mine), 0)  # fmt: skip
        assert s["max_ms"] == durations[-1]  # exact
        for key, fraction in (("p50_ms", 0.5), ("p95_ms", 0.95)):
            exact = durations[nearest_rank(fraction, len(durations)) - 1]
            assert math.isclose(s[key], exact, rel_tol=0.01), (key, s[key], exact)


def test_project_filter_uses_the_rollup_only_when_the_project_holds_every_call(tmp_path):
    path = tmp_path / "a.db"
    _fill(path, 3000, seed=3)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    mixed = Filters.parse({"since": str(NOW - 30 * DAY), "project": "/a"})
    alone = Filters.parse({"since": str(NOW - 30 * DAY), "project": "/a", "agent": "claude"})
    (exact, how), (rolled, how2) = (
        toolstats.per_tool(conn, f, exact_limit=0) for f in (mixed, alone)
    )
    assert how["method"] == "exact"  # /b's calls share the rollup's duration buckets
    assert how2["method"] == "histogram"  # only /a has claude calls
    assert {s["tool"]: s["calls"] for s in exact} == {s["tool"]: s["calls"] for s in rolled}
    conn.close()


def test_tools_endpoint_matches_the_database_on_a_large_window(tmp_path):
    path = tmp_path / "a.db"
    _fill(path, 2 * toolstats.EXACT_LIMIT, seed=5)  # 3/4 of them in the last 30 days
    token = "rollup-test-token-0123"  # every dashboard request needs one (docs/ui.md)
    with TestClient(create_app(path, token=token), base_url="http://127.0.0.1",
                    headers={"Authorization": f"Bearer {token}"}) as client:  # fmt: skip
        since = NOW - 30 * DAY  # an epoch, not "30d": the window must not move during the test
        data = client.get(f"/api/tools?since={since}").json()["data"]
        page = client.get(f"/tools?since={since}").text
    assert "within 1% of the exact values" in page  # the page says so, too
    assert data["percentiles"] == {"method": "histogram", "max_relative_error": 0.01}
    conn = sqlite3.connect(path)
    for t in data["tools"]:
        calls, failed, longest = conn.execute(
            "SELECT count(*), sum(success = 0), max(duration_ms) FROM tools "
            "WHERE tool_name = ? AND created_at >= ?", (t["tool"], since)).fetchone()  # fmt: skip
        assert (t["calls"], t["failed"], t["max_ms"]) == (calls, failed, longest)
        durations = [r[0] for r in conn.execute(
            "SELECT duration_ms FROM tools WHERE tool_name = ? AND created_at >= ? "
            "ORDER BY duration_ms", (t["tool"], since))]  # fmt: skip
        exact = durations[nearest_rank(0.95, len(durations)) - 1]
        assert math.isclose(t["p95_ms"], exact, rel_tol=0.01)
    conn.close()


def test_a_rolled_back_write_leaves_no_trace_in_the_rollup(tmp_path):
    path = tmp_path / "a.db"
    conn = connect_sync(path)
    conn.execute("INSERT INTO tools (id, source, tool_name, duration_ms, created_at) "
                 "VALUES ('t1', 'claude', 'Bash', 70, ?)", (NOW,))  # fmt: skip
    kept = assert_rollup_exact(path)
    conn.execute("BEGIN")
    conn.execute("UPDATE tools SET duration_ms = 7000, success = 0")
    conn.execute("INSERT INTO tools (id, source, tool_name) VALUES ('t2', 'claude', 'Read')")
    conn.execute("ROLLBACK")
    assert assert_rollup_exact(path) == kept
    assert kept["stats"] == {(NOW // DAY, "Bash", "claude", ""): (1, 0, 1, 1, 70)}
    conn.close()
