import sqlite3

import pytest

from agentd.db.migrations import MIGRATIONS, migrate
from agentd.db.store import connect_sync


def columns(conn, table):
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def test_fresh_database_gets_every_migration_recorded(tmp_path):
    conn = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    applied = migrate(conn)
    assert applied == [m.name for m in MIGRATIONS]
    recorded = conn.execute(
        "SELECT version, name FROM schema_migrations ORDER BY version"
    ).fetchall()
    assert recorded == [(m.version, m.name) for m in MIGRATIONS]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {
        "sessions",
        "tools",
        "file_operations",
        "session_errors",
        "compaction_events",
        "events",
        "messages",
        "schema_migrations",
    } <= tables


def test_second_run_is_a_no_op(tmp_path):
    conn = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    migrate(conn)
    assert migrate(conn) == []


def test_old_database_is_upgraded_in_place_keeping_its_rows(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path, isolation_level=None)
    assert migrate(old, MIGRATIONS[:1]) == ["0001_initial"]
    old.execute(
        "INSERT INTO tools (id, source, tool_name, success) VALUES ('t1', 'claude', 'Bash', 1)"
    )
    old.execute(
        "INSERT INTO events (id, source, kind, received_at, payload) VALUES ('e1', 'claude', 'Stop', 5, '{}')"
    )
    assert "interrupted" not in columns(old, "tools")
    old.close()

    conn = connect_sync(path)  # what the daemon does at start
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert "interrupted" in columns(conn, "tools")
    assert conn.execute("SELECT id, tool_name, success, interrupted FROM tools").fetchall() == [
        ("t1", "Bash", 1, None)
    ]
    assert conn.execute("SELECT id, kind FROM events").fetchall() == [("e1", "Stop")]
    assert [r[0] for r in conn.execute("SELECT version FROM schema_migrations")] == [
        m.version for m in MIGRATIONS
    ]


def test_a_failing_migration_leaves_nothing_half_applied(tmp_path):
    from agentd.db.migrations import Migration

    conn = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    migrate(conn, MIGRATIONS[:1])
    broken = (
        *MIGRATIONS[:1],
        Migration(2, "0002_broken", "CREATE TABLE x (a); SELECT nope FROM nowhere;"),
    )
    try:
        migrate(conn, broken)
    except sqlite3.OperationalError:
        pass
    else:
        raise AssertionError("the broken migration should fail")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "x" not in tables
    assert [r[0] for r in conn.execute("SELECT version FROM schema_migrations")] == [1]


def _assert_complete(path):
    conn = sqlite3.connect(path)
    recorded = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert recorded == [(m.version,) for m in MIGRATIONS]  # each once, none missing
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()


def test_two_migrators_on_one_fresh_file_at_once_both_succeed(tmp_path):
    """Two `agentd import` (or a daemon and an import) creating one new database together: the
    second waits for the first's lock and applies only what is still missing, never `table
    push_log already exists` (and the wrong advice to move a healthy file away)."""
    import threading

    def migrator(path, start: threading.Barrier, errors: list[BaseException]) -> None:
        try:
            start.wait()
            connect_sync(path).close()
        except BaseException as e:  # the test's failure, reported below
            errors.append(e)

    for round in range(8):
        path = tmp_path / f"{round}.db"
        start = threading.Barrier(2)
        errors: list[BaseException] = []
        threads = [threading.Thread(target=migrator, args=(path, start, errors)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        _assert_complete(path)


def test_two_migrator_processes_on_one_fresh_file_both_succeed(tmp_path):
    """The same with processes, as two `agentd import` with one AGENTD_DB: each opens the file
    at the same moment (a time both wait for once loaded)."""
    import subprocess
    import sys
    import time

    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from agentd.db.store import connect_sync\n"
        "while time.time() < float(sys.argv[2]):\n"
        "    time.sleep(0.001)\n"
        "connect_sync(Path(sys.argv[1])).close()\n"
    )
    at = time.time() + 3.0
    paths = [tmp_path / f"{n}.db" for n in range(3)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(path), str(at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path in paths
        for _ in range(2)
    ]
    try:
        results = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    for path in paths:
        _assert_complete(path)


def test_a_write_lock_held_too_long_is_not_called_a_damaged_file(tmp_path):
    """A healthy file another process keeps locked past the busy timeout: try again, not `move
    it away`."""
    from agentd.errors import DatabaseUnusable, StartupError

    path = tmp_path / "a.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StartupError) as raised:
            connect_sync(path)
    finally:
        holder.rollback()
        holder.close()
    assert not isinstance(raised.value, DatabaseUnusable)
    assert str(raised.value) == (
        f"cannot open {path}: another process held its write lock too long (database is "
        "locked); try again when it is done"
    )
    connect_sync(path).close()  # once it is free, it opens
    _assert_complete(path)
