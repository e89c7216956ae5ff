"""`agentd prune` and `agentd vacuum`, through a running daemon and directly."""

import json
import subprocess
import sys
import time

from conftest import load_jsonl, query_db

DAY_MS = 86_400_000
NOW = int(time.time() * 1000)
SAMPLES = [r["stdin"] for r in load_jsonl("claude_hooks_examples.jsonl")]


def agentd(env, *args):
    return subprocess.run([sys.executable, "-m", "agentd", *args], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def ingest_two_sessions(daemon):
    """An old session (100 days ago) and a recent one, each with tool rows and raw events."""
    for payload in SAMPLES:
        daemon.ingest("claude", dict(payload, session_id="old-session"), NOW - 100 * DAY_MS)
        daemon.ingest("claude", dict(payload, session_id="new-session"), NOW - DAY_MS)


def counts(db):
    """Rows of the old session in each table."""
    found = {
        "sessions": query_db(db, "SELECT count(*) AS n FROM sessions WHERE id = 'old-session'")[0][
            "n"
        ]
    }
    for t in ("tools", "file_operations", "compaction_events", "session_errors", "messages"):
        found[t] = query_db(db, f"SELECT count(*) AS n FROM {t} WHERE session_id = 'old-session'")[
            0
        ]["n"]
    return found


def test_prune_through_the_daemon_deletes_old_sessions_whole(daemon, agentd_env):
    ingest_two_sessions(daemon)
    db = daemon.config.db_path
    before_new = query_db(db, "SELECT count(*) AS n FROM tools WHERE session_id = 'new-session'")
    assert counts(db)["tools"] > 0 and counts(db)["sessions"] == 1
    result = agentd(agentd_env, "prune", "--older-than", "30d", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["deleted"]["sessions"] == 1 and report["deleted"]["events"] == len(SAMPLES)
    assert report["deleted"]["tools"] == before_new[0]["n"]  # the same calls, in the old session
    assert set(counts(db).values()) == {0}
    again = agentd(agentd_env, "prune", "--older-than", "30d", "--format", "csv")
    header, row = again.stdout.splitlines()  # nothing left to delete: every count 0
    assert header.startswith("before,deleted.") and set(row.split(",")[1:]) == {"0"}
    assert (
        query_db(db, "SELECT count(*) AS n FROM tools WHERE session_id = 'new-session'")
        == before_new
    )
    assert query_db(db, "SELECT count(*) AS n FROM events") == [{"n": len(SAMPLES)}]
    assert daemon.alive and daemon.call("ping")


def test_vacuum_through_the_daemon(daemon, agentd_env):
    ingest_two_sessions(daemon)
    agentd(agentd_env, "prune", "--older-than", "30d")
    result = agentd(agentd_env, "vacuum", "--json")
    assert result.returncode == 0, result.stderr
    sizes = json.loads(result.stdout)
    assert 0 < sizes["bytes_after"] <= sizes["bytes_before"]
    daemon.ingest("claude", dict(SAMPLES[0], session_id="after-vacuum"))  # still writing fine
    assert query_db(daemon.config.db_path, "PRAGMA integrity_check") == [{"integrity_check": "ok"}]


def test_prune_and_vacuum_without_a_daemon(make_daemon, agentd_env, config):
    daemon = make_daemon().start()
    ingest_two_sessions(daemon)
    daemon.stop()
    result = agentd(agentd_env, "prune", "--older-than", "30d")
    assert result.returncode == 0, result.stderr
    assert "Deleted" in result.stdout and "sessions" in result.stdout
    assert set(counts(config.db_path).values()) == {0}
    assert agentd(agentd_env, "vacuum").returncode == 0
    again = agentd(agentd_env, "vacuum", "--format", "ndjson")
    assert again.returncode == 0, again.stderr
    assert set(json.loads(again.stdout)) == {"bytes_before", "bytes_after"}
    assert not config.pid_path.exists()  # the lock it held while writing is released


def test_bad_age_and_missing_database(agentd_env):
    bad = agentd(agentd_env, "prune", "--older-than", "soon")
    assert bad.returncode == 2 and "--older-than" in bad.stderr and "Traceback" not in bad.stderr
    missing = agentd(agentd_env, "prune", "--older-than", "90d")
    assert missing.returncode == 1 and "no database" in missing.stderr
    assert agentd(agentd_env, "vacuum").returncode == 1


def test_write_says_which_writer_it_used_and_both_return_the_same_result(make_daemon, config):
    from agentd.db import access

    daemon = make_daemon().start()
    ingest_two_sessions(daemon)
    mode, through_daemon = access.write(config, "prune", {"before": NOW - 30 * DAY_MS})
    assert mode == "daemon" and through_daemon["deleted"]["sessions"] == 1
    daemon.stop()
    mode, direct = access.write(config, "prune", {"before": NOW - 30 * DAY_MS})
    assert mode == "direct" and direct == {"deleted": dict.fromkeys(through_daemon["deleted"], 0)}
    mode, sizes = access.write(config, "vacuum")
    assert mode == "direct" and set(sizes) == {"bytes_before", "bytes_after"}
    assert not config.pid_path.exists()


def test_a_held_writer_lock_is_a_clear_error(agentd_env, config):
    from agentd import pidfile
    from agentd.db.store import connect_sync

    connect_sync(config.db_path).close()
    fd = pidfile.acquire(config.pid_path)  # a daemon starting, or an import writing directly
    try:
        result = agentd(agentd_env, "prune", "--older-than", "90d")
    finally:
        pidfile.release(config.pid_path, fd)
    assert result.returncode == 1 and "holds the database's writer lock" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_second_vacuum_through_the_daemon_works(daemon, agentd_env):
    """The first vacuum's checkpoint left a statement open on the writer's connection, and the
    second failed with "cannot VACUUM - SQL statements in progress"."""
    ingest_two_sessions(daemon)
    for _ in range(2):
        result = agentd(agentd_env, "vacuum", "--json")
        assert result.returncode == 0, result.stderr
    daemon.ingest("claude", dict(SAMPLES[0], session_id="after-two-vacuums"))
    assert query_db(daemon.config.db_path, "PRAGMA integrity_check") == [{"integrity_check": "ok"}]
