import sqlite3

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
