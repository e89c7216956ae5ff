"""The file rollup (db/file_rollup.py, migration 0013) against real SQLite files: after every
kind of write (inserts, replays, value changes, a session's project arriving late or changing,
deleted sessions, prune, an import over live capture, an upgrade of an existing database) each
of its tables equals an aggregate computed here, in Python, from `file_operations` itself; and
hot-files answers what the raw SQL it replaced answers, in every window and filter."""

from __future__ import annotations

import random
import sqlite3
from collections import defaultdict
from pathlib import Path

from test_query_rollup import _seeded
from test_rollup import (  # noqa: F401
    NOW,
    claude_tool_events,
    import_over_live_capture,
    ingest,
    prune,
    rows_source,
)

from agentd.db.migrations import MIGRATIONS, migrate
from agentd.db.store import connect_sync
from agentd.query.engine import connect_readonly, run_report
from agentd.query.reports import REPORTS, render

HOUR, DAY = 3_600_000, 86_400_000
EDITS = ("created", "edited", "deleted", "moved")
KEYS = {"file_edit_totals": 1, "file_source_edits": 2, "file_edits_project": 3,
        "file_edits_daily": 4, "file_edits_hourly": 4, "file_stats_hourly": 4}  # fmt: skip


def direct(conn: sqlite3.Connection) -> dict[str, dict[tuple, tuple]]:
    """What each table must hold, computed from the rows (not with the rollup's SQL)."""
    out: dict[str, dict[tuple, list]] = {t: defaultdict(lambda: [0] * 6 + [None]) for t in KEYS}
    for sid, source, path, op, added, removed, created, project in conn.execute(
        "SELECT f.session_id, f.source, f.file_path, f.operation_type, f.lines_added, "
        "f.lines_removed, f.created_at, s.project_path "
        "FROM file_operations f LEFT JOIN sessions s ON s.id = f.session_id"
    ):
        if path is None:
            continue
        hour = int(created / HOUR) if created is not None else -1
        day = int(created / DAY) if created is not None else -1
        project, sid = project or "", sid or ""
        stats = out["file_stats_hourly"][(path, hour, sid, source)]
        for i, v in enumerate((1, op == "read", added or 0, added is not None, removed or 0,
                               removed is not None)):  # fmt: skip
            stats[i] += v
        if op in EDITS:
            if created is not None:
                stats[6] = created if stats[6] is None else max(stats[6], created)
            for table, key in (("file_edit_totals", (path,)), ("file_source_edits", (source, path)),
                               ("file_edits_project", (project, path, source)),
                               ("file_edits_daily", (day, path, source, project)),
                               ("file_edits_hourly", (hour, path, source, project))):  # fmt: skip
                out[table][key][0] += 1
    return {
        t: {k: tuple(v if t == "file_stats_hourly" else v[:1]) for k, v in rows.items()}
        for t, rows in out.items()
    }


def stored(conn: sqlite3.Connection) -> dict[str, dict[tuple, tuple]]:
    return {
        t: {r[:n]: tuple(r[n:]) for r in conn.execute(f"SELECT * FROM {t}")}
        for t, n in KEYS.items()
    }


def assert_exact(path: Path) -> dict[str, dict[tuple, tuple]]:
    conn = sqlite3.connect(path)
    try:
        now = stored(conn)
        assert now == direct(conn)
        return now
    finally:
        conn.close()


async def test_file_rollup_follows_real_claude_events_and_their_replay(tmp_path):
    path = tmp_path / "a.db"
    events = claude_tool_events()
    await ingest(path, "claude", events)
    first = assert_exact(path)
    assert sum(v[0] for v in first["file_stats_hourly"].values()) >= 1
    await ingest(path, "claude", events)  # a replay: no change
    assert assert_exact(path) == first


async def test_file_rollup_exact_after_an_import_over_live_capture_and_its_replay(
    tmp_path, config, monkeypatch
):
    _, imported = await import_over_live_capture(tmp_path, config, monkeypatch, assert_exact)
    assert imported["file_edit_totals"]


async def test_file_rollup_follows_a_sessions_project_and_prune(tmp_path, rows_source):  # noqa: F811
    path = tmp_path / "a.db"
    ops = [["file_operations", {"id": f"f{i}", "session_id": "s1", "source": "opencode",
                                "file_path": f"/src/x{i % 2}", "operation_type": op,
                                "lines_added": i or None, "created_at": NOW - 40 * DAY + i * HOUR}]
           for i, op in enumerate(("edited", "read", "created", "edited", "moved"))]  # fmt: skip
    ops.append(["file_operations", {"id": "new", "session_id": "s2", "source": "opencode",
                                    "file_path": "/src/x0", "operation_type": "edited",
                                    "created_at": NOW}])  # fmt: skip
    await ingest(path, rows_source, [{"kind": "ops", "rows": ops}])
    assert {k[0] for k in assert_exact(path)["file_edits_project"]} == {""}
    session = {"id": "s1", "source": "opencode", "created_at": NOW - 40 * DAY,
               "updated_at": NOW - 40 * DAY}  # fmt: skip
    await ingest(path, rows_source, [{"kind": "s", "rows": [["sessions", session]]}])
    assert_exact(path)
    for i, project in enumerate(("/src/a", "/src/b")):
        await ingest(path, rows_source, [{"kind": f"p{i}", "rows": [["sessions", {**session,
                     "project_path": project}]]}])  # fmt: skip
        assert {k[3] for k in assert_exact(path)["file_edits_daily"]} == {project, ""}
    result = await prune(path, NOW - 10 * DAY)  # s1 and its operations go; "new" stays
    assert result["deleted"]["file_operations"] == 5
    after = assert_exact(path)
    assert after["file_edit_totals"] == {("/src/x0",): (1,)}
    assert list(after["file_stats_hourly"].values()) == [(1, 0, 0, 0, 0, 0, NOW)]


def test_file_rollup_follows_plain_sql_writes_and_deleted_sessions(tmp_path):
    path = tmp_path / "a.db"
    conn = connect_sync(path)
    conn.execute("INSERT INTO sessions (id, source, project_path) VALUES ('s', 'claude', '/p')")
    rng = random.Random(11)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO file_operations (id, session_id, source, file_path, operation_type, "
        "lines_added, lines_removed, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(f"f{i}", rng.choice(["s", "other", None]), rng.choice(["claude", "opencode"]),
          rng.choice(["/p/a", "/p/b", None]), rng.choice([*EDITS, "read", None]),
          rng.choice([None, 0, 3]), rng.choice([None, 1]),
          rng.choice([None, NOW, NOW + 5, NOW - 5 * HOUR, NOW - 3 * DAY]))
         for i in range(300)],
    )  # fmt: skip
    conn.execute("COMMIT")
    assert_exact(path)
    conn.execute("UPDATE file_operations SET operation_type = 'read' WHERE rowid % 3 = 0")
    assert_exact(path)
    conn.execute(
        "UPDATE file_operations SET file_path = '/p/c', created_at = 7 WHERE rowid % 4 = 0"
    )
    assert_exact(path)
    conn.execute("UPDATE file_operations SET created_at = created_at - 1 WHERE rowid % 5 = 0")
    conn.execute("UPDATE file_operations SET lines_added = NULL WHERE rowid % 7 = 0")
    conn.execute(
        "UPDATE file_operations SET source = 'claude', session_id = 's' WHERE rowid % 6 = 0"
    )
    conn.execute("UPDATE file_operations SET operation_type = operation_type")  # no change
    assert_exact(path)
    conn.execute("DELETE FROM file_operations WHERE rowid % 2 = 0")
    latest = assert_exact(path)["file_stats_hourly"]
    assert any(v[6] is not None for v in latest.values())
    conn.execute(
        "DELETE FROM file_operations WHERE created_at = (SELECT max(created_at) "
        "FROM file_operations)"
    )  # the latest edits go: their groups recompute it
    assert_exact(path)
    conn.execute("UPDATE sessions SET project_path = '/q'")
    assert {k[0] for k in assert_exact(path)["file_edits_project"]} == {"/q", ""}
    conn.execute("DELETE FROM sessions")  # the operations stay, now of no known project
    assert {k[3] for k in assert_exact(path)["file_edits_hourly"]} == {""}
    conn.execute("DELETE FROM file_operations")
    assert assert_exact(path) == {t: {} for t in KEYS}
    conn.close()


def test_file_rollup_migration_backfills_an_existing_database(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path, isolation_level=None)
    at = next(i for i, m in enumerate(MIGRATIONS) if m.name.endswith("_file_rollup"))
    migrate(old, MIGRATIONS[:at])
    old.execute("INSERT INTO sessions (id, source, project_path) VALUES ('s', 'claude', '/p')")
    rng = random.Random(7)
    old.execute("BEGIN")
    old.executemany(
        "INSERT INTO file_operations (id, session_id, source, file_path, operation_type, "
        "lines_added, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(f"f{i}", rng.choice(["s", "gone", None]), rng.choice(["claude", "opencode"]),
          rng.choice(["/p/a", "/p/b", "/q/c", None]), rng.choice([*EDITS, "read"]),
          rng.choice([None, 2]), rng.choice([None, NOW - rng.randrange(60 * DAY)]))
         for i in range(2000)],
    )  # fmt: skip
    old.execute("COMMIT")
    old.close()
    conn = connect_sync(path)
    assert MIGRATIONS[at].name in {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
    conn.close()
    backfilled = assert_exact(path)
    assert 1000 < sum(v[0] for v in backfilled["file_stats_hourly"].values()) < 2000


def test_a_rolled_back_write_leaves_no_trace_in_the_file_rollup(tmp_path):
    path = tmp_path / "a.db"
    conn = connect_sync(path)
    conn.execute("BEGIN")
    conn.execute("INSERT INTO file_operations (id, source, file_path, operation_type, created_at) "
                 "VALUES ('f', 'claude', '/a', 'edited', 1)")  # fmt: skip
    conn.execute("ROLLBACK")
    conn.close()
    assert assert_exact(path) == {t: {} for t in KEYS}


# hot-files as it was before the rollup: the reference its answers must equal.
RAW_HOT_FILES = """\
WITH hot AS (
    SELECT f.file_path, count(*) AS edits
    FROM file_operations f
    WHERE f.file_path IS NOT NULL
      AND f.operation_type IN ('created', 'edited', 'deleted', 'moved')
      AND f.created_at >= :since
      AND f.created_at < :until
      AND f.source = :source
      AND f.session_id IN (SELECT id FROM sessions WHERE project_path = :project OR (project_path >= :project || '/' AND project_path < :project || '0'))
      AND f.session_id = :session
    GROUP BY f.file_path
    ORDER BY edits DESC, f.file_path
    LIMIT :limit
)
SELECT
    h.file_path AS file_path,
    h.edits AS edits,
    sum(f.operation_type = 'read') AS reads,
    sum(f.lines_added) AS lines_added,
    sum(f.lines_removed) AS lines_removed,
    count(DISTINCT f.session_id) AS sessions,
    max(CASE WHEN f.operation_type IN ('created', 'edited', 'deleted', 'moved') THEN f.created_at END) AS last_edited_at
FROM hot h
JOIN file_operations f ON f.file_path = h.file_path
WHERE 1
  AND f.created_at >= :since
  AND f.created_at < :until
  AND f.source = :source
  AND f.session_id IN (SELECT id FROM sessions WHERE project_path = :project OR (project_path >= :project || '/' AND project_path < :project || '0'))
  AND f.session_id = :session
GROUP BY h.file_path
ORDER BY h.edits DESC, h.file_path"""


def test_hot_files_from_the_rollup_equals_the_raw_sql(tmp_path):
    path = tmp_path / "a.db"
    _seeded(path)
    conn = connect_readonly(path)
    busiest, project = conn.execute(
        "SELECT f.session_id, s.project_path FROM file_operations f JOIN sessions s "
        "ON s.id = f.session_id GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
    ).fetchone()
    base = {"since": None, "until": None, "source": None, "project": None, "session": None}
    windows = [(None, None), (NOW - 7 * DAY, None), (None, NOW - 2 * DAY - 12345),
               (NOW - 5 * DAY - 777, NOW - DAY + 4321), (NOW - 3 * HOUR - 5, NOW - HOUR + 9),
               (NOW - 20 * 60_000, NOW - 10 * 60_000)]  # fmt: skip
    filters = [{}, {"source": "opencode"}, {"project": project}, {"session": busiest},
               {"project": project.rsplit("/", 1)[0], "source": "claude"},
               {"session": busiest, "source": "claude"}]  # fmt: skip
    checked = 0
    for limit in (20, -1):
        for since, until in windows:
            for extra in filters:
                params = {**base, "limit": limit, "since": since, "until": until, **extra}
                columns, batches = run_report(conn, REPORTS["hot-files"], params)
                rows = [r for b in batches for r in b]
                ref = conn.execute(render(RAW_HOT_FILES, params), params).fetchall()
                assert rows == ref, (limit, since, until, extra)
                checked += bool(rows)
    assert checked >= 30  # most combinations have rows: the comparison is not of nothing
    conn.close()
