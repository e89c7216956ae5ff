"""`agentd push` against a real PostgreSQL server (initdb on a temp dir, Unix socket only), from
real daemons fed the real payloads: two machines into one server, incremental pushes, prune,
kill -9 mid-push, content levels, the team reports, and the errors a user can meet."""

from __future__ import annotations

import getpass
import itertools
import math
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from pgserver import ALICE_PASSWORD
from pushkit import CLAUDE, OPENCODE, Machine, assert_same, scalar, server_rows

from agentd.push.local import TABLES
from agentd.push.server import SERVER_MIGRATIONS, server_columns
from conftest import wait_for

_names = itertools.count()
DAY_MS = 86_400_000


@pytest.fixture
def url(pg):
    """A fresh database on the server, with agentd's tables (agentd push --init)."""
    return pg.create_database(f"team{next(_names)}")


@pytest.fixture
def machines():
    made: list[Machine] = []

    def make() -> Machine:
        made.append(Machine().start())
        return made[-1]

    yield make
    for m in made:
        m.destroy()


def init(machine: Machine, url: str) -> None:
    result = machine.agentd("push", "--init", url)
    assert result.returncode == 0, result.stderr
    assert "Server schema at version" in result.stdout


def test_push_two_machines_into_one_server_keep_their_own_rows(url, machines):
    a, b = machines(), machines()
    a.feed("claude", CLAUDE)
    b.feed("opencode", OPENCODE)
    init(a, url)
    out = a.push(url).stdout
    b.push(url)
    assert a.machine_id != b.machine_id and len(a.machine_id) == 32
    assert f"machine {a.machine_id}" in out
    assert (a.config.state_dir / "machine-id").stat().st_mode & 0o777 == 0o600
    rows_a, rows_b = assert_same(url, a), assert_same(url, b)
    assert rows_a >= 15 and rows_b >= 15
    users = scalar(url, "SELECT array_agg(DISTINCT user_name) FROM agentd.tools")
    assert users == [getpass.getuser()]
    # The machine id is made once: a second push reuses it.
    a.push(url)
    assert scalar(url, "SELECT count(*) FROM agentd.machines") == 2


def test_push_team_reports_count_each_machine(url, machines):
    a, b = machines(), machines()
    a.feed("claude", CLAUDE)
    b.feed("opencode", OPENCODE)
    init(a, url)
    a.push(url)
    b.push(url)
    with psycopg.connect(url) as conn:
        for m in (a, b):
            tools = m.local_rows("tools").values()
            cols = m.columns("tools")
            name, success, duration = (
                cols.index(c) for c in ("tool_name", "success", "duration_ms")
            )
            errors = {
                r[0]: r[1:]
                for r in conn.execute(
                    "SELECT tool_name, calls, failed FROM agentd.report_tool_errors()"
                    " WHERE machine_id = %s",
                    (m.machine_id,),
                )
            }
            expected = {}
            for t in tools:
                calls, failed = expected.get(t[name], (0, 0))
                expected[t[name]] = (calls + 1, failed + (t[success] == 0))
            assert errors == expected and sum(f for _, f in expected.values()) > 0
            # slow-tools: nearest-rank percentiles, as `agentd query slow-tools`
            slow = conn.execute(
                "SELECT tool_name, calls, p50_ms, p95_ms, max_ms FROM agentd.report_slow_tools()"
                " WHERE machine_id = %s",
                (m.machine_id,),
            ).fetchall()
            assert slow
            for tool, calls, p50, p95, top in slow:
                d = sorted(
                    t[duration] for t in tools if t[name] == tool and t[duration] is not None
                )
                assert calls == len(d) and top == d[-1]
                assert p50 == d[max(1, math.ceil(0.5 * len(d))) - 1]
                assert p95 == d[max(1, math.ceil(0.95 * len(d))) - 1]
            ops = m.local_rows("file_operations").values()
            fcols = m.columns("file_operations")
            path, kind = fcols.index("file_path"), fcols.index("operation_type")
            hot = dict(
                conn.execute(
                    "SELECT file_path, edits FROM agentd.report_hot_files() WHERE machine_id = %s",
                    (m.machine_id,),
                ).fetchall()
            )
            edited = {}
            for op in ops:
                if op[kind] in ("created", "edited", "deleted", "moved") and op[path]:
                    edited[op[path]] = edited.get(op[path], 0) + 1
            assert hot == edited and edited
            summary = conn.execute(
                "SELECT user_name, sessions, tool_calls FROM agentd.team_summary"
                " WHERE machine_id = %s",
                (m.machine_id,),
            ).fetchone()
            assert summary == (getpass.getuser(), len(m.local_rows("sessions")), len(tools))
        for fn in ("report_sessions", "report_top_sessions", "report_compactions", "report_errors"):
            per_machine = dict(
                conn.execute(f"SELECT machine_id, count(*) FROM agentd.{fn}() GROUP BY 1")  # type: ignore[arg-type]
            )
            assert set(per_machine) <= {a.machine_id, b.machine_id} and per_machine, fn
        n = len(a.local_rows("sessions"))
        assert conn.execute(
            "SELECT count(*) FROM agentd.report_sessions(0) WHERE machine_id = %s", (a.machine_id,)
        ).fetchone() == (n,)
        future = conn.execute("SELECT agentd.ms_ago('-3650 days')").fetchone()[0]
        assert conn.execute(
            "SELECT count(*) FROM agentd.report_sessions(%s)", (future,)
        ).fetchone() == (0,)


def test_push_sends_only_what_changed_and_merges_updates(url, machines):
    a = machines()
    # PostToolUse(Failure) complete the tool rows PreToolUse started: outcome, output, duration.
    late = [p for p in CLAUDE if p["hook_event_name"].startswith("PostTool")]
    a.feed("claude", [p for p in CLAUDE if p not in late])
    init(a, url)
    first = a.push(url, "--json")
    assert_same(url, a)
    before = server_rows(url, a, "tools")
    a.feed("claude", late)
    second = a.push(url, "--json")
    assert_same(url, a)
    after = server_rows(url, a, "tools")
    changed = [i for i in before if after[i] != before[i]]
    assert changed, "the Post events should complete some tool rows"
    import json

    total = sum(len(a.local_rows(t)) for t in TABLES)
    assert json.loads(first.stdout)["upserted"] > 0
    assert 0 < json.loads(second.stdout)["upserted"] < total + len(a.local_rows("sessions"))
    # Nothing new: nothing sent.
    assert '"upserted": 0' in a.push(url, "--json").stdout
    # The server has it all: the local log is trimmed to its last entry (seq only grows).
    conn = sqlite3.connect(f"file:{a.config.db_path}?mode=ro", uri=True)
    try:
        (left,), (mark,) = conn.execute(
            "SELECT count(*) FROM push_log UNION ALL SELECT seq FROM push_targets"
        ).fetchall()
        assert left == 1 and mark == conn.execute("SELECT max(seq) FROM push_log").fetchone()[0]
    finally:
        conn.close()


def test_push_removes_what_prune_removed(url, machines):
    a = machines()
    old = int(time.time() * 1000) - 100 * DAY_MS
    a.feed("claude", CLAUDE, received_at=old)
    a.feed("opencode", OPENCODE)
    init(a, url)
    a.push(url, "--raw")
    sessions_before = len(server_rows(url, a, "sessions"))
    pruned = a.agentd("prune", "--older-than", "30d")
    assert pruned.returncode == 0, pruned.stderr
    result = a.push(url, "--raw")
    assert "0 deletions" not in result.stdout
    assert_same(url, a, (*TABLES, "events"))
    assert 0 < len(server_rows(url, a, "sessions")) < sessions_before
    assert not any(r[1] == "claude" for r in server_rows(url, a, "events").values())


def test_push_killed_mid_way_loses_nothing_and_sends_nothing_twice(url, machines):
    a = machines()
    a.feed("claude", CLAUDE)
    a.feed("opencode", OPENCODE)
    init(a, url)
    # Hold the push inside its third server transaction, after its rows went in but before
    # its commit: a trigger waits on an advisory lock that the test holds.
    holder = psycopg.connect(url, autocommit=True)
    try:
        holder.execute(
            """
            CREATE SEQUENCE test_cycles;
            CREATE FUNCTION test_hold() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF nextval('test_cycles') >= 3 THEN PERFORM pg_advisory_xact_lock(4242); END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER test_hold BEFORE UPDATE ON agentd.machines FOR EACH ROW
                WHEN (NEW.last_push_at IS DISTINCT FROM OLD.last_push_at) EXECUTE FUNCTION test_hold();
            """
        )
        holder.execute("SELECT pg_advisory_lock(4242)")
        pusher = subprocess.Popen(
            [sys.executable, "-m", "agentd", "push", url, "--batch-rows", "3"],
            env=a.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:

            def blocked():
                row = holder.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 'agentd push'"
                    " AND wait_event_type = 'Lock'"
                ).fetchone()
                return row and row[0]

            assert wait_for(blocked, timeout=30)
            backend = blocked()
            in_flight = holder.execute(
                "SELECT count(*) FROM agentd.sessions WHERE machine_id = %s", (a.machine_id,)
            ).fetchone()[0]
            pusher.send_signal(signal.SIGKILL)
            pusher.wait(10)
        finally:
            if pusher.poll() is None:
                pusher.kill()
                pusher.wait()
        holder.execute("SELECT pg_terminate_backend(%s)", (backend,))
        holder.execute("SELECT pg_advisory_unlock(4242)")
        holder.execute("DROP TRIGGER test_hold ON agentd.machines")
        # Two transactions committed (6 sessions at 3 a batch), the third was rolled back.
        assert in_flight == 6
        committed = holder.execute(
            "SELECT table_name, copy_after FROM agentd.push_state WHERE machine_id = %s",
            (a.machine_id,),
        ).fetchall()
        assert dict(committed)["sessions"] is not None  # its first copy was under way
    finally:
        holder.close()
    a.push(url, "--batch-rows", "3")
    assert_same(url, a)
    for table in TABLES:
        assert (
            scalar(
                url,
                f"SELECT count(*) - count(DISTINCT id) FROM agentd.{table} WHERE machine_id = %s",
                (a.machine_id,),
            )
            == 0
        )


def test_push_content_level_metadata_keeps_bodies_home(url, machines, pg):
    a = machines()
    a.feed("claude", CLAUDE)
    init(a, url)
    a.push(url, "--raw", "--content-level", "metadata")
    with psycopg.connect(url) as conn:
        n, inputs, names, paths = conn.execute(
            "SELECT count(*), count(tool_input) + count(tool_output) + count(error_message),"
            " count(tool_name), count(file_path) FROM agentd.tools"
        ).fetchone()
        assert n > 0 and inputs == 0 and names == n and paths > 0
        payloads = [r[0] for r in conn.execute("SELECT payload FROM agentd.events")]
    assert payloads and any("[omitted:" in p for p in payloads)
    local_inputs = [
        r for r in a.local_rows("tools").values() if r[a.columns("tools").index("tool_input")]
    ]
    assert local_inputs  # the local rows keep them
    # A push may not be looser than what this machine stores.
    (a.home / "config.toml").write_text('content_level = "metadata"\n')
    refused = a.agentd("push", url, "--content-level", "full")
    assert refused.returncode == 1 and "would push more than this machine stores" in refused.stderr


def test_push_errors_are_one_clear_line(pg, machines):
    a = machines()
    a.feed("claude", CLAUDE[:3])
    name = f"bare{next(_names)}"
    bare = pg.create_database(name, owner="alice")
    cases = {
        "no schema": ([bare], "agentd push --init"),
        "wrong password": (
            [pg.url(name, "alice", "wrong")],
            'password authentication failed for user "alice"',
        ),
        "unreachable socket": (["postgresql://x@/db?host=/tmp/agd-no-such-dir"], "cannot connect"),
        "unreachable host": (["postgresql://x@127.0.0.1:1/db"], "cannot connect"),
    }
    for case, (args, message) in cases.items():
        result = a.agentd("push", *args)
        assert result.returncode == 1, case
        assert message in result.stderr, (case, result.stderr)
        assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, case
        assert ALICE_PASSWORD not in result.stderr and ":wrong@" not in result.stderr
    # The right password works, with the schema made by its owner.
    good = pg.url(name, "alice", ALICE_PASSWORD)
    init(a, good)
    a.push(good)
    assert_same(good, a)
    no_url = a.agentd("push")
    assert no_url.returncode == 2 and "URL" in no_url.stderr


def test_push_init_is_idempotent_and_covers_every_local_column(url, machines):
    a = machines()
    init(a, url)
    again = a.agentd("push", "--init", url, "--json")
    assert again.returncode == 0 and '"applied": []' in again.stdout
    assert scalar(url, "SELECT count(*) FROM agentd.schema_migrations") == len(SERVER_MIGRATIONS)
    with psycopg.connect(url) as conn:
        for table in (*TABLES, "events"):
            remote = set(server_columns(conn, table))
            assert set(a.columns(table)) | {"machine_id", "user_name"} == remote, table


def test_no_push_target_means_no_change_log(machines):
    a = machines()
    a.feed("claude", CLAUDE)
    assert a.local_rows("tools")
    conn = sqlite3.connect(f"file:{a.config.db_path}?mode=ro", uri=True)
    try:
        assert conn.execute("SELECT count(*) FROM push_log").fetchone() == (0,)
    finally:
        conn.close()


def test_a_second_push_for_the_same_machine_is_refused(url, machines):
    a = machines()
    a.feed("claude", CLAUDE[:5])
    init(a, url)
    a.push(url)
    with psycopg.connect(url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(hashtext('agentd push ' || %s))", (a.machine_id,))
        busy = a.agentd("push", url)
    assert busy.returncode == 1
    assert "another `agentd push` for this machine" in busy.stderr


def test_a_replaced_local_database_is_copied_afresh(url, machines):
    a = machines()
    a.feed("claude", CLAUDE[:5])
    init(a, url)
    a.push(url)
    a.feed("claude", CLAUDE[5:])
    a.push(url)  # the server's watermark is now well into the old database's log
    mark = scalar(url, "SELECT min(seq) FROM agentd.push_state")
    a.stop()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{a.config.db_path}{suffix}").unlink(missing_ok=True)
    a.daemon.start()
    a.feed("opencode", OPENCODE[:6])
    conn = sqlite3.connect(f"file:{a.config.db_path}?mode=ro", uri=True)
    try:
        assert conn.execute("SELECT count(*) FROM sessions").fetchone()[0] > 0
    finally:
        conn.close()
    a.push(url)
    assert scalar(url, "SELECT max(seq) FROM agentd.push_state") < mark
    # The new database's rows are all there (its log starts again at 1: the old watermarks
    # must not hide them); the old database's rows stay, as docs/team.md says.
    for table in TABLES:
        remote = server_rows(url, a, table)
        for row_id, row in a.local_rows(table).items():
            assert remote[row_id] == row, (table, row_id)
    assert len(server_rows(url, a, "sessions")) > len(a.local_rows("sessions"))


def test_push_settings_come_from_the_push_section(url, machines):
    a = machines()
    a.feed("claude", CLAUDE)
    init(a, url)
    (a.home / "config.toml").write_text(
        f'[push]\nurl = "{url}"\ncontent_level = "metadata"\nraw = true\n'
    )
    a.push("--format", "json")  # no URL: the [push] section's
    assert scalar(url, "SELECT count(*) FROM agentd.events") == len(a.local_rows("events"))
    assert scalar(url, "SELECT count(tool_input) FROM agentd.tools") == 0
    assert scalar(url, "SELECT content_level FROM agentd.machines") == "metadata"
    (a.home / "config.toml").write_text('[push]\ncontent_level = "some"\n')
    bad = a.agentd("push", url)
    assert bad.returncode == 1 and "[push] 'content_level' must be one of" in bad.stderr
