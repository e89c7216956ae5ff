"""The store through its public API, against a real SQLite file."""

import asyncio
import json
import sqlite3

import pytest

from agentd import normalizers as sources
from agentd.db import store as store_module
from agentd.db.store import Store
from agentd.ingest import event_id
from agentd.rows import Normalized, Row


@pytest.fixture
def fake_source():
    """A tiny normalizer for a test-only source, so merge rules are tested apart from real ones."""

    def normalize(payload, ctx):
        rows = [Row(table, dict(values)) for table, values in payload.get("rows", [])]
        return Normalized(
            kind=payload.get("kind", "t"), session_id=payload.get("session"), rows=rows
        )

    sources.NORMALIZERS["testsrc"] = normalize
    yield "testsrc"
    del sources.NORMALIZERS["testsrc"]


async def ingest_all(path, source, payloads, start_ms=1000):
    store = Store(path)
    await store.open()
    try:
        await asyncio.gather(
            *(
                store.ingest(source, json.dumps(p).encode(), start_ms + i)
                for i, p in enumerate(payloads)
            )
        )
    finally:
        await store.close()
    return store


def rows(path, sql):
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def tool_event(**values):
    return {
        "kind": "tool",
        "session": "s1",
        "rows": [["tools", {"id": "t1", "session_id": "s1", **values}]],
    }


async def test_later_sparser_event_never_blanks_a_column(tmp_path, fake_source):
    path = tmp_path / "a.db"
    await ingest_all(
        path, fake_source, [tool_event(tool_name="Bash", tool_input="ls", started_at=5)]
    )
    await ingest_all(path, fake_source, [tool_event(success=1, ended_at=9, tool_name=None)])
    assert rows(path, "SELECT tool_name, tool_input, success, started_at, ended_at FROM tools") == [
        {"tool_name": "Bash", "tool_input": "ls", "success": 1, "started_at": 5, "ended_at": 9}
    ]


async def test_times_keep_earliest_start_and_latest_end_in_any_order(tmp_path, fake_source):
    events = [tool_event(started_at=10, ended_at=20), tool_event(started_at=5, ended_at=15)]
    first, second = tmp_path / "a.db", tmp_path / "b.db"
    for e in events:
        await ingest_all(first, fake_source, [e])
    for e in reversed(events):
        await ingest_all(second, fake_source, [e])
    expected = [{"started_at": 5, "ended_at": 20}]
    assert rows(first, "SELECT started_at, ended_at FROM tools") == expected
    assert rows(second, "SELECT started_at, ended_at FROM tools") == expected


async def test_replayed_event_is_stored_once(tmp_path, fake_source):
    path = tmp_path / "a.db"
    event = json.dumps(tool_event(tool_name="Read")).encode()
    store = Store(path)
    await store.open()
    try:
        await asyncio.gather(
            store.ingest(fake_source, event, 5), store.ingest(fake_source, event, 5)
        )
        await store.ingest(fake_source, event, 5)  # replayed later, with the time it was seen
        assert store.events_stored == 1
        await store.ingest(fake_source, event, 6)  # the same payload at another moment
        assert store.events_stored == 2
    finally:
        await store.close()
    assert rows(path, "SELECT count(*) AS n FROM events") == [{"n": 2}]
    assert rows(path, "SELECT count(*) AS n FROM tools") == [{"n": 1}]  # one tool, merged


def test_event_id_ignores_key_order_and_whitespace():
    a = json.loads('{"a": 1, "b": {"c": [1, 2]}}')
    b = json.loads('{ "b": {"c": [1,2]},   "a": 1 }')
    assert event_id("claude", a) == event_id("claude", b)
    assert event_id("claude", a) != event_id("opencode", a)
    # The same payload seen at another moment is another event; a replay keeps its time.
    assert event_id("claude", a, 1000) == event_id("claude", b, 1000)
    assert event_id("claude", a, 1000) != event_id("claude", a, 1001)


async def test_session_totals_are_derived_so_replays_do_not_double_count(tmp_path, fake_source):
    path = tmp_path / "a.db"

    def message(mid, role, tokens, cost, extra=0):
        return {
            "kind": "message",
            "session": "s1",
            "extra": extra,  # makes a repeated report of one message a distinct event
            "rows": [
                [
                    "messages",
                    {
                        "id": mid,
                        "session_id": "s1",
                        "role": role,
                        "prompt_tokens": tokens,
                        "cost": cost,
                    },
                ]
            ],
        }

    events = [
        message("u1", "user", None, None),
        message("a1", "assistant", 100, 0.5),
        message("a1", "assistant", 100, 0.5, extra=1),  # the same message updated again
        message("a2", "assistant", 50, 0.25),
        tool_event(tool_name="Bash"),
    ]
    await ingest_all(path, fake_source, events)
    await ingest_all(path, fake_source, events)  # a full replay (spool drain after live capture)
    assert rows(
        path,
        "SELECT prompt_tokens, cost, message_count, prompt_count, tool_call_count FROM sessions",
    ) == [
        {
            "prompt_tokens": 150,
            "cost": 0.75,
            "message_count": 3,
            "prompt_count": 1,
            "tool_call_count": 1,
        }
    ]


async def test_unknown_source_is_stored_raw_with_a_session_row(tmp_path):
    path = tmp_path / "a.db"
    await ingest_all(path, "mystery", [{"type": "x.y", "sessionID": "m1", "z": [1]}])
    assert rows(path, "SELECT source, kind, session_id, payload FROM events") == [
        {
            "source": "mystery",
            "kind": "x.y",
            "session_id": "m1",
            "payload": '{"type": "x.y", "sessionID": "m1", "z": [1]}',
        }
    ]
    assert rows(path, "SELECT id, source, created_at, updated_at FROM sessions") == [
        {"id": "m1", "source": "mystery", "created_at": 1000, "updated_at": 1000}
    ]


async def test_a_normalizer_that_raises_still_stores_the_event(tmp_path):
    def broken(payload, ctx):
        raise KeyError("boom")

    sources.NORMALIZERS["broken"] = broken
    try:
        path = tmp_path / "a.db"
        await ingest_all(path, "broken", [{"hook_event_name": "Stop", "session_id": "b1"}])
    finally:
        del sources.NORMALIZERS["broken"]
    assert rows(path, "SELECT kind, session_id FROM events") == [
        {"kind": "Stop", "session_id": "b1"}
    ]


async def test_a_row_sqlite_rejects_costs_only_its_typed_rows(tmp_path, fake_source):
    path = tmp_path / "a.db"
    bad = {"kind": "bad", "rows": [["tools", {"id": "t9", "no_such_column": 1, "tool_name": "X"}]]}
    bad["rows"][0][1]["source"] = None  # NOT NULL column forced to NULL by a buggy normalizer
    good = tool_event(tool_name="Good")
    store = Store(path)
    await store.open()
    try:
        # Both in one batch: the batch fails, then each event is retried on its own.
        await asyncio.gather(
            store.ingest(fake_source, json.dumps(bad).encode(), 1),
            store.ingest(fake_source, json.dumps(good).encode(), 2),
        )
    finally:
        await store.close()
    assert rows(path, "SELECT kind FROM events ORDER BY kind") == [
        {"kind": "bad"},
        {"kind": "tool"},
    ]
    assert rows(path, "SELECT id, tool_name FROM tools") == [{"id": "t1", "tool_name": "Good"}]


async def test_submit_many_commits_a_group_and_gives_each_event_its_outcome(tmp_path, fake_source):
    path = tmp_path / "a.db"
    bad = {"kind": "bad", "rows": [["tools", {"id": "t9", "tool_name": "X", "source": None}]]}
    good = [tool_event(tool_name=f"Good{i}") | {"kind": f"k{i}"} for i in range(3)]
    store = Store(path)
    await store.open()
    try:
        events = [
            store.prepare(fake_source, json.dumps(p).encode(), i)
            for i, p in enumerate([good[0], bad, good[1], good[2]])
        ]
        assert await store.submit_many(events) == [None, None, None, None]
        assert await store.submit_many([]) == []
        before = store.batches
        again = [store.prepare(fake_source, json.dumps(good[0]).encode(), 0)] * 2
        assert await store.submit_many(again) == [None, None]  # a replay: stored once
        assert store.batches == before + 1  # one transaction for the group
    finally:
        await store.close()
    # The bad event's rows failed alone: it is kept raw; the others have their rows.
    assert rows(path, "SELECT kind FROM events ORDER BY kind") == [
        {"kind": "bad"},
        {"kind": "k0"},
        {"kind": "k1"},
        {"kind": "k2"},
    ]
    assert rows(path, "SELECT id, tool_name FROM tools") == [{"id": "t1", "tool_name": "Good2"}]


async def test_a_write_lock_held_elsewhere_never_stalls_the_event_loop(tmp_path, fake_source):
    """Small batches commit on the event loop's thread; when another connection (the push, say)
    holds the write lock, the batch waits on the writer thread instead, and the loop runs on."""
    path = tmp_path / "a.db"
    store = Store(path)
    await store.open()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        task = asyncio.create_task(store.ingest(fake_source, json.dumps(tool_event()).encode(), 1))
        ticks = 0
        for _ in range(20):
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 20 and not task.done()  # the loop ran; the event waits for the lock
        other.execute("COMMIT")
        await asyncio.wait_for(task, 10)
        # And with the lock free again, the next one is stored as usual.
        await store.ingest(fake_source, json.dumps(tool_event(tool_name="B")).encode(), 2)
    finally:
        other.close()
        await store.close()
    assert rows(path, "SELECT count(*) AS n FROM events") == [{"n": 2}]
    assert rows(path, "SELECT tool_name FROM tools") == [{"tool_name": "B"}]


async def test_concurrent_ingests_share_transactions(tmp_path, fake_source):
    path = tmp_path / "a.db"
    events = [{"kind": "k", "n": i} for i in range(500)]
    store = await ingest_all(path, fake_source, events)
    assert store.events_stored == 500
    assert store.batches < 50  # grouped, not one commit per event


async def test_integers_beyond_64_bits_do_not_fail_the_row(tmp_path, fake_source):
    path = tmp_path / "a.db"
    await ingest_all(path, fake_source, [tool_event(exit_code=2**70, duration_ms=-(2**63))])
    # Passed as text, which INTEGER affinity turns into the nearest REAL: the row is kept.
    assert rows(path, "SELECT exit_code, duration_ms FROM tools") == [
        {"exit_code": float(2**70), "duration_ms": -(2**63)}
    ]


async def test_a_lock_held_past_the_busy_timeout_stores_nothing_and_acks_nothing(
    tmp_path, fake_source, monkeypatch, caplog
):
    """A write lock held elsewhere past the busy timeout is the database's problem, not the
    event's: the event is refused with the error (to be retried), never stored raw-only."""
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_MS", 100)
    path = tmp_path / "a.db"
    store = Store(path)
    await store.open()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await asyncio.wait_for(
                store.ingest(fake_source, json.dumps(tool_event()).encode(), 1), 30
            )
        # Not even tried raw-only: had the lock been released meanwhile, that would have been
        # acked without its rows.
        assert "raw only" not in caplog.text
        assert "cannot be written now" in caplog.text
        other.execute("COMMIT")
        await store.ingest(fake_source, json.dumps(tool_event()).encode(), 1)  # the retry
    finally:
        other.close()
        await store.close()
    assert rows(path, "SELECT count(*) AS n FROM events") == [{"n": 1}]
    assert rows(path, "SELECT count(*) AS n FROM tools") == [{"n": 1}]  # with its rows


async def test_temp_storage_is_in_memory_for_commits_and_on_disk_for_prune_and_vacuum(
    tmp_path, fake_source
):
    # A small commit's statement journal stays off the disk; VACUUM (a copy of the whole
    # database) and a prune (journals as large as what it deletes) keep SQLite's default, a file.
    store = Store(tmp_path / "a.db")
    await store.open()
    try:
        db = store._db
        statements: list[str] = []
        db.set_trace_callback(statements.append)

        async def temp_store() -> int:
            return await store._call(lambda: db.execute("PRAGMA temp_store").fetchone()[0])

        assert await temp_store() == 2  # MEMORY
        await store.ingest(fake_source, json.dumps(tool_event(tool_name="Bash")).encode(), 1)
        await store.prune(0)
        await store.vacuum()
        assert await temp_store() == 2
        settings = [(i, s) for i, s in enumerate(statements) if s.startswith("PRAGMA temp_store=")]
        for statement in ("DELETE FROM tools", "VACUUM"):  # prune's first delete, vacuum's
            at = next(i for i, s in enumerate(statements) if s.startswith(statement))
            assert [s for i, s in settings if i < at][-1] == "PRAGMA temp_store=DEFAULT"
            assert [s for i, s in settings if i > at][0] == "PRAGMA temp_store=MEMORY"
        assert rows(tmp_path / "a.db", "SELECT tool_name FROM tools") == [{"tool_name": "Bash"}]
    finally:
        await store.close()
