"""Session totals kept by triggers (db/session_totals.py, migration 0016) against the sum they
replaced: random batches of writes (new messages, replays, streamed token updates, messages
moved between sessions or out of any, tools, sessions rows carrying imported totals) and prunes
go through the real store, and the same events through a reference writer that runs the old
refresh (one pass over the session's messages) on a second SQLite file: every sessions row must
be identical, and session_message_totals must equal an aggregate computed here in Python."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from collections import defaultdict
from pathlib import Path

import pytest

from agentd import normalizers as sources
from agentd.db import store as store_module
from agentd.db.merge import fold_rows
from agentd.db.migrations import MIGRATIONS, migrate
from agentd.db.session_totals import TOKENS
from agentd.db.store import Store, connect_sync, table_columns, upsert_sql
from agentd.rows import Normalized, Row

# The refresh before migration 0016, verbatim: the specification the triggers must reproduce.
OLD_REFRESH = """
UPDATE sessions SET
    tool_call_count = coalesce(
        (SELECT nullif(count(*), 0) FROM tools WHERE tools.session_id = sessions.id), tool_call_count, 0),
    (message_count, prompt_count, prompt_tokens, completion_tokens, cache_read_tokens,
     cache_write_tokens, reasoning_tokens, cost) = (
        SELECT coalesce(nullif(count(*), 0), sessions.message_count),
            coalesce(nullif(sum(m.role = 'user'), 0), sessions.prompt_count),
            coalesce(sum(m.prompt_tokens), sessions.prompt_tokens),
            coalesce(sum(m.completion_tokens), sessions.completion_tokens),
            coalesce(sum(m.cache_read_tokens), sessions.cache_read_tokens),
            coalesce(sum(m.cache_write_tokens), sessions.cache_write_tokens),
            coalesce(sum(m.reasoning_tokens), sessions.reasoning_tokens),
            coalesce(sum(m.cost), sessions.cost)
        FROM messages m WHERE m.session_id = sessions.id)
WHERE id = ?
"""

SESSIONS = ("s1", "s2", "s3")
DERIVED = ("tool_stats_daily", "tool_stats_total", "tool_stats_hourly", "tool_session_totals",
           "session_message_totals", "usage_hourly")  # fmt: skip


@pytest.fixture
def rows_source():
    """A test-only normalizer that returns the rows its payload lists."""

    def normalize(payload, ctx):
        rows = [Row(table, dict(values)) for table, values in payload["rows"]]
        return Normalized(kind="t", session_id=payload.get("session"), rows=rows)

    sources.NORMALIZERS["totalsrc"] = normalize
    yield "totalsrc"
    del sources.NORMALIZERS["totalsrc"]


class Reference:
    """The old writer: the same upserts in the same order, then the old refresh."""

    def __init__(self, path: Path) -> None:
        self.conn = connect_sync(path)
        columns = table_columns(self.conn)
        self.upserts = {t: upsert_sql(t, cols) for t, cols in columns.items()}
        self.bind = store_module.Binder(columns)

    def write(self, events) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        by_table: dict[str, list] = {}
        touched: dict[str, None] = {}
        for event in events:
            for row in event.rows:
                by_table.setdefault(row.table, []).append(self.bind(row))
                sid = row.values["id"] if row.table == "sessions" else row.values.get("session_id")
                if sid:
                    touched[sid] = None
        for table in sorted(by_table, key=lambda t: t != "sessions"):
            conn.executemany(self.upserts[table], by_table[table])
        conn.executemany(OLD_REFRESH, [(s,) for s in touched])
        conn.execute("COMMIT")

    def prune(self, cutoff: int) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        for _, sql in store_module._PRUNE_SQL:
            self.conn.execute(sql, {"cutoff": cutoff})
        self.conn.execute("DROP TABLE prune_sessions")
        self.conn.execute("COMMIT")


def expected_totals(conn: sqlite3.Connection) -> dict[str, tuple]:
    """session_message_totals as it must be, computed in Python from `messages`."""
    out: dict[str, list] = defaultdict(lambda: [0] * (3 + 2 * len(TOKENS)))
    for row in conn.execute(f"SELECT session_id, role, cost, {', '.join(TOKENS)} FROM messages"):
        sid, role, cost, tokens = row[0], row[1], row[2], row[3:]
        if sid is None:
            continue
        acc = out[sid]
        acc[0] += 1
        acc[1] += role == "user"
        for i, value in enumerate(tokens):
            acc[2 + 2 * i] += value if type(value) is int else 0
            acc[3 + 2 * i] += value is not None
        acc[-1] += cost is not None or any(v is not None and type(v) is not int for v in tokens)
    return {sid: tuple(acc) for sid, acc in out.items()}


def stored_totals(conn: sqlite3.Connection) -> dict[str, tuple]:
    columns = ", ".join(["messages", "prompts", *(f"{c}, {c}_n" for c in TOKENS), "inexact"])
    return {r[0]: tuple(r[1:]) for r in conn.execute(
        f"SELECT session_id, {columns} FROM session_message_totals")}  # fmt: skip


def token_value(rng: random.Random):
    roll = rng.random()
    if roll < 0.25:
        return None
    if roll < 0.28:
        return rng.choice([1.5, 2.25])  # a float in an integer column: the sum runs then
    return rng.randrange(0, 5000)


def random_event(rng: random.Random, at: int, sent: list[dict]) -> dict:
    if sent and rng.random() < 0.2:
        return rng.choice(sent)  # a replay: the same rows again (a new event all the same)
    rows = []
    for _ in range(rng.randrange(1, 5)):
        kind = rng.random()
        sid = rng.choice([*SESSIONS, None]) if rng.random() < 0.15 else rng.choice(SESSIONS)
        if kind < 0.6:
            values = {"id": f"m{rng.randrange(12)}", "session_id": sid, "created_at": at,
                      "role": rng.choice(["user", "assistant", "assistant", None])}  # fmt: skip
            for column in TOKENS:
                values[column] = token_value(rng)
            # Mostly no cost (Claude's messages): the sums stand for the session then.
            values["cost"] = rng.choice([0.1, 0.2, 0.3]) if rng.random() < 0.05 else None
            rows.append(["messages", values])
        elif kind < 0.85:
            rows.append(["tools", {"id": f"t{rng.randrange(8)}", "session_id": sid,
                                   "tool_name": "Bash", "created_at": at}])  # fmt: skip
        else:
            values = session_row(rng, rng.choice(SESSIONS))
            values["source"] = "claude"
            if rng.random() < 0.5:  # totals an import filled in: kept while nothing counts
                values.update(message_count=7, prompt_count=2, prompt_tokens=11,
                              reasoning_tokens=5, cost=1.5, tool_call_count=3)  # fmt: skip
            rows.append(["sessions", values])
    return {"session": rng.choice([*SESSIONS, None]), "rows": rows, "n": at}


def sessions_table(conn: sqlite3.Connection) -> list[tuple]:
    return conn.execute("SELECT * FROM sessions ORDER BY id").fetchall()


@pytest.mark.parametrize("seed", range(6))
def test_random_writes_match_the_old_refresh(tmp_path: Path, rows_source: str, seed: int) -> None:
    rng = random.Random(seed)
    reference = Reference(tmp_path / "reference.db")
    fast_refreshes = 0

    async def run() -> None:
        nonlocal fast_refreshes
        store = Store(tmp_path / "agentd.db")
        await store.open()
        sent: list[dict] = []
        try:
            at = 1_000
            for _ in range(60):
                if rng.random() < 0.08:
                    cutoff = at - rng.randrange(0, 400)
                    await store.prune(cutoff)
                    reference.prune(cutoff)
                else:
                    events = []
                    for _ in range(rng.randrange(1, 6)):
                        at += rng.randrange(1, 50)
                        payload = random_event(rng, at, sent)
                        sent.append(payload)
                        events.append(store.prepare(rows_source, json.dumps(payload).encode(), at))
                    assert await store.submit_many(events) == [None] * len(events)
                    reference.write(events)
                conn = sqlite3.connect(tmp_path / "agentd.db")
                try:
                    assert sessions_table(conn) == sessions_table(reference.conn)
                    for table in DERIVED:  # the rollups that follow a session's project too
                        sql = f"SELECT * FROM {table} ORDER BY 1, 2, 3"
                        assert (
                            conn.execute(sql).fetchall() == reference.conn.execute(sql).fetchall()
                        )
                    totals = stored_totals(conn)
                    assert totals == expected_totals(conn)
                    fast_refreshes += sum(1 for t in totals.values() if t[-1] == 0)
                finally:
                    conn.close()
        finally:
            await store.close()

    asyncio.run(run())
    reference.conn.close()
    assert fast_refreshes > 0  # the trigger-kept sums were read, not only the fallback sum


def test_upgrade_backfills_and_refreshes_alike(tmp_path: Path) -> None:
    """A database of 0015's schema with messages: 0016 fills the sums from them, and a refresh
    afterwards gives what the old one gives."""
    path = tmp_path / "agentd.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, tuple(m for m in MIGRATIONS if m.version < 16))
    conn.execute("INSERT INTO sessions (id, source, message_count, prompt_tokens) "
                 "VALUES ('a', 'x', 9, 9), ('b', 'x', 4, NULL), ('c', 'x', 3, 3)")  # fmt: skip
    rng = random.Random(7)
    for i in range(200):
        tokens = [token_value(rng) for _ in TOKENS]
        conn.execute(
            f"INSERT INTO messages (id, session_id, source, role, cost, {', '.join(TOKENS)})"
            " VALUES (?, ?, 'x', ?, ?, ?, ?, ?, ?, ?)",
            (
                f"m{i}",
                rng.choice(["a", "b", None]),
                rng.choice(["user", "assistant"]),
                0.5 if i == 3 else None,
                *tokens,
            ),  # fmt: skip
        )
    migrate(conn)
    assert stored_totals(conn) == expected_totals(conn)
    assert set(stored_totals(conn)) == {"a", "b"}

    before = sessions_table(conn)
    conn.execute("BEGIN")
    conn.executemany(OLD_REFRESH, [(s,) for s in "abc"])
    old = sessions_table(conn)
    conn.execute("ROLLBACK")
    assert sessions_table(conn) == before
    conn.execute("BEGIN")
    for refresh in store_module._REFRESH_SESSIONS:
        conn.executemany(refresh, [(s,) for s in "abc"])
    assert sessions_table(conn) == old
    conn.execute("ROLLBACK")
    conn.close()


def test_sum_beyond_int64_falls_back_to_the_old_error(tmp_path: Path) -> None:
    """Token sums past int64: SQLite's sum() fails, the trigger's addition turns to a float;
    the refresh takes the sum then, so the store fails as it did (not a rounded total)."""
    conn = connect_sync(tmp_path / "agentd.db")
    conn.execute("INSERT INTO sessions (id, source) VALUES ('a', 'x')")
    conn.executemany(
        "INSERT INTO messages (id, session_id, source, prompt_tokens) VALUES (?, 'a', 'x', ?)",
        [("m1", 2**62), ("m2", 2**62), ("m3", 2**62)],
    )
    assert conn.execute(
        "SELECT typeof(prompt_tokens) FROM session_message_totals WHERE session_id = 'a'"
    ).fetchone() == ("real",)
    with pytest.raises(sqlite3.OperationalError, match="integer overflow"):
        conn.execute(OLD_REFRESH, ("a",))
    with pytest.raises(sqlite3.OperationalError, match="integer overflow"):
        for refresh in store_module._REFRESH_SESSIONS:
            conn.execute(refresh, ("a",))
    conn.close()


def test_upgrade_with_sums_beyond_int64_migrates_and_refreshes_alike(tmp_path: Path) -> None:
    """A 0015 database the old refresh summed in floating point (a float token value among
    integers whose sum leaves int64): 0016 fills its sums a message at a time, as the triggers
    add (a REAL past int64), instead of failing on sum(), and the refresh gives the old value."""
    conn = sqlite3.connect(tmp_path / "agentd.db", isolation_level=None)
    migrate(conn, tuple(m for m in MIGRATIONS if m.version < 16))
    conn.execute("INSERT INTO sessions (id, source) VALUES ('s', 'claude')")
    conn.executemany(
        "INSERT INTO messages (id, session_id, source, role, prompt_tokens)"
        " VALUES (?, 's', 'claude', 'assistant', ?)",
        [("m1", 2**62), ("m2", 2**62), ("m3", 1.5)],
    )
    conn.execute(OLD_REFRESH, ("s",))
    old = sessions_table(conn)
    migrate(conn)
    for refresh in store_module._REFRESH_SESSIONS:
        conn.execute(refresh, ("s",))
    assert sessions_table(conn) == old
    conn.close()


BIG = 2**62 + 1


def _message(mid: str, sid: str, tokens: object) -> list:
    return ["messages", {"id": mid, "session_id": sid, "role": "assistant",
                         "prompt_tokens": tokens, "created_at": 1}]  # fmt: skip


def _session(sid: str) -> list:
    return ["sessions", {"id": sid, "source": "claude"}]


def _through_store_and_reference(tmp_path: Path, source: str, batches: list[list[dict]]):
    """sessions as the store leaves them after `batches` (each one group), and as the old
    refresh leaves them after the same writes."""
    reference = Reference(tmp_path / "reference.db")

    async def run() -> None:
        store = Store(tmp_path / "agentd.db")
        await store.open()
        try:
            at = 1000
            for payloads in batches:
                events = []
                for payload in payloads:
                    at += 1
                    events.append(store.prepare(source, json.dumps(payload).encode(), at))
                assert await store.submit_many(events) == [None] * len(events)
                reference.write(events)
        finally:
            await store.close()

    asyncio.run(run())
    conn = sqlite3.connect(tmp_path / "agentd.db")
    try:
        return sessions_table(conn), sessions_table(reference.conn)
    finally:
        conn.close()
        reference.conn.close()


def test_a_sum_that_left_int64_stays_summed_from_the_messages(tmp_path: Path, rows_source) -> None:
    """Two messages of 2^62 + 1 take the trigger's sum past int64 (a REAL); one moves to another
    session in the same group. Subtracting it in floating point gives 2^62: a REAL that an
    INTEGER column would store as an integer and the fast refresh would read, one token short."""
    batches = [[
        {"rows": [_session("s"), _session("t"), _message("a", "s", BIG), _message("b", "s", BIG)]},
        {"rows": [_message("b", "t", BIG)]},
    ]]  # fmt: skip
    new, old = _through_store_and_reference(tmp_path, rows_source, batches)
    assert new == old


def test_a_float_moved_out_leaves_no_rounded_integer_sum(tmp_path: Path, rows_source) -> None:
    """As above across commits, with a float token value (0.5) keeping the session on the full
    sum until it moves out with one of the big messages."""
    batches = [
        [{"rows": [_session("s"), _session("t"), _message("f", "s", 0.5), _message("a", "s", BIG),
                   _message("b", "s", BIG)]}],
        [{"rows": [_message("f", "t", 0.5), _message("b", "t", BIG)]}],
        [{"rows": [_session("s")]}],  # any event of the session refreshes it
    ]  # fmt: skip
    new, old = _through_store_and_reference(tmp_path, rows_source, batches)
    assert new == old


# -- compaction_totals: an inserted compaction is added, not recomputed (db/query_rollup.py) --

COMPACTION_TOTALS = """
SELECT coalesce(c.session_id, ''), c.source, count(*), count(c.trigger), sum(c.trigger IS 'auto'),
    sum(c.trigger IS 'manual'), total(c.tokens_before), count(c.tokens_before),
    total(c.tokens_after), count(c.tokens_after), max(c.created_at)
FROM compaction_events c WHERE c.session_id IS ? GROUP BY 1, 2
"""


def compaction_value(rng: random.Random):
    roll = rng.random()
    if roll < 0.2:
        return None
    if roll < 0.25:
        return rng.choice([0.1, 0.7, -3, 2**52 + 1, "many"])  # each can round, or reach 2^53
    return rng.randrange(0, 200_000)


@pytest.mark.parametrize("seed", range(8))
def test_compaction_totals_equal_the_recomputed_ones(tmp_path: Path, seed: int) -> None:
    """Random inserts, replays, changed values, moves and deletes of compaction_events, on a
    database with the recomputing triggers (before 0016) and one with 0016's: compaction_totals
    identical, bit for bit, after every write; and each named session's rows equal a fresh
    aggregate of its compaction_events."""
    rng = random.Random(seed)
    new = connect_sync(tmp_path / "new.db")
    old = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    migrate(old, tuple(m for m in MIGRATIONS if m.version < 16))
    columns = table_columns(new)["compaction_events"]
    upsert = upsert_sql("compaction_events", columns)
    sessions = ["s1", "s2", "", None]
    added = 0
    for step in range(300):
        if rng.random() < 0.06:
            gone = f"c{rng.randrange(40)}"
            for conn in (new, old):
                conn.execute("DELETE FROM compaction_events WHERE id = ?", (gone,))
            continue
        values = {
            "id": f"c{rng.randrange(40)}" if rng.random() < 0.5 else f"new{step}",
            "session_id": rng.choice(sessions) if rng.random() < 0.3 else "s1",
            "source": rng.choice(["claude", "claude", "opencode"]),
            "trigger": rng.choice(["auto", "manual", None, "other"]),
            "tokens_before": compaction_value(rng),
            "tokens_after": compaction_value(rng),
            "created_at": rng.choice([None, rng.randrange(1000, 5000)]),
        }
        added += values["id"].startswith("new")
        for conn in (new, old):
            conn.execute(upsert, [values.get(c) for c in columns])
        table = "SELECT * FROM compaction_totals ORDER BY session_id, source"
        assert new.execute(table).fetchall() == old.execute(table).fetchall(), step
        for sid in ("s1", "s2"):
            stored = new.execute(
                "SELECT * FROM compaction_totals WHERE session_id = ? ORDER BY source", (sid,)
            ).fetchall()
            assert stored == new.execute(COMPACTION_TOTALS + " ORDER BY 2", (sid,)).fetchall()
    assert added > 100
    new.close()
    old.close()


@pytest.mark.parametrize(
    "rows",
    [
        # Added in this order, 1 + 1 + 2^53 = 2^53 + 2; summed by time, 2^53 + 1 + 1 rounds to 2^53.
        [(2, 1), (3, 1), (1, 2**53)],
        # With a negative value a partial sum by time can pass 2^53 (3 + 2^53 - 2 rounds) though
        # the sums in order of arrival never do.
        [(2, 2**53 - 2), (3, -(2**53 - 2)), (1, 3)],
    ],
)
def test_compactions_whose_sum_can_round_are_recomputed(tmp_path: Path, rows) -> None:
    """Where the order of a float sum matters, the total is the recompute's, not the addition's
    (SQLite before 3.43 sums floats plainly: the two differ there)."""
    new = connect_sync(tmp_path / "new.db")
    old = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    migrate(old, tuple(m for m in MIGRATIONS if m.version < 16))
    for i, (at, tokens) in enumerate(rows):
        for conn in (new, old):
            conn.execute(
                "INSERT INTO compaction_events (id, session_id, source, tokens_before,"
                " created_at) VALUES (?, 's1', 'claude', ?, ?)",
                (f"c{i}", tokens, at),
            )
    table = "SELECT * FROM compaction_totals"
    assert new.execute(table).fetchall() == old.execute(table).fetchall()
    new.close()
    old.close()


# -- a group's sessions rows of one id upserted as one (db/merge.py fold_rows) --


def session_row(rng: random.Random, sid: str) -> dict:
    def at():
        roll = rng.random()
        if roll < 0.03:
            return rng.choice([2.5, "late"])  # not an integer: that id's rows are not merged
        return rng.choice([None, rng.randrange(100, 130)])

    values: dict = {"id": sid, "source": rng.choice(["claude", "opencode"])}
    for column in ("created_at", "updated_at", "ended_at", "redactions"):
        values[column] = at()
    for column in ("title", "project_path", "model"):
        values[column] = rng.choice([None, None, "a", "b"])
    for column, time in (("status", "status_at"), ("outcome", "outcome_at"),
                         ("last_error", "last_error_at")):  # fmt: skip
        value = rng.choice([None, "x", "y", "z"])
        values[column] = value
        values[time] = at() if value is not None else None
        if values[time] is None and value is not None:
            values[time] = rng.randrange(100, 130)  # as ingest.py sets it
        if rng.random() < 0.04:
            values[time], values[column] = rng.randrange(100, 130), None  # a time alone
    if rng.random() < 0.02:
        values["source"] = None  # fails alone: the batch must fail merged too
    return values


def test_folded_rows_upsert_to_what_the_rows_upsert_to_in_turn(tmp_path: Path) -> None:
    """Random stored rows (or none) and groups of rows for them, upserted one by one on one
    database and folded on another: the same sessions table, or the same failure."""
    rng = random.Random(3)
    old = connect_sync(tmp_path / "old.db")
    new = connect_sync(tmp_path / "new.db")
    columns = table_columns(new)["sessions"]
    upsert = upsert_sql("sessions", columns)
    assert (
        tuple(r[1] for r in new.execute("PRAGMA table_info(sessions)") if r[3] and r[1] != "id")
        == store_module.SESSIONS_NOT_NULL
    )
    bind = store_module.Binder({"sessions": columns})
    folded = 0
    for conn in (old, new):
        conn.execute("PRAGMA synchronous=OFF")
    for trial in range(1000):
        ids = [f"s{trial}", f"s{trial}b"]
        stored = [bind(Row("sessions", session_row(rng, sid))) for sid in ids if rng.random() < 0.6]
        group = [bind(Row("sessions", session_row(rng, rng.choice(ids)))) for _ in range(4)]
        outcomes = []
        for conn, rows in (
            (old, group),
            (new, fold_rows(columns, group, store_module.SESSIONS_NOT_NULL)),
        ):
            conn.execute("BEGIN")
            try:
                conn.executemany(upsert, [r for r in stored if r[1] is not None])
                conn.executemany(upsert, rows)
                conn.execute("COMMIT")
                outcomes.append("ok")
            except sqlite3.IntegrityError:
                conn.execute("ROLLBACK")
                outcomes.append("failed")
            if conn is new:
                folded += len(rows) < len(group)
        assert outcomes[0] == outcomes[1], trial
        assert sessions_table(old) == sessions_table(new), trial
    assert folded > 300
    old.close()
    new.close()
