# Over 400 lines: one rollup, checked table by table after every kind of write and report by report against the raw SQL it replaced.
"""The query rollup (db/query_rollup.py, migration 0012) against real SQLite files: after every
kind of write (inserts, replays, Pre-then-Post updates, value changes, a session's project
arriving late or changing, deleted sessions, prune, an import over live capture, an upgrade of
an existing database) each of its tables equals an aggregate computed here, in Python, from
`tools` itself; and the reports that read it answer what the raw rows answer."""

from __future__ import annotations

import random
import sqlite3
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from test_rollup import (  # noqa: F401
    NOW,
    claude_tool_events,
    import_over_live_capture,
    ingest,
    prune,
    rows_source,
)

from agentd.db import rollup
from agentd.db.migrations import MIGRATIONS, migrate
from agentd.db.store import connect_sync
from agentd.query import percentiles
from agentd.query.engine import connect_readonly, run_report
from agentd.query.reports import REPORTS, nearest_rank, render

HOUR, DAY = 3_600_000, 86_400_000
TABLES = ("tool_stats_total", "tool_errors_total", "tool_stats_hourly", "tool_errors_daily", "tool_errors_hourly", "tool_session_hourly",
          "tool_session_errors", "tool_session_totals", "file_session_edits",
          "tool_duration_hourly", "tool_duration_total", "tool_duration_project",
          "tool_duration_session", "session_hourly", "compaction_totals")  # fmt: skip
EDITS = ("created", "edited", "deleted", "moved")


def message(error: str | None) -> str:
    """tool-errors' message key, written in Python: first line, spaces trimmed, 80 chars."""
    first = (error or "").split("\n", 1)[0].strip(" ")[:80]
    return first or "(no message)"


def direct(conn: sqlite3.Connection) -> dict[str, dict[tuple, tuple]]:
    """What each table must hold, computed from the rows (not with the rollup's SQL)."""
    out: dict[str, dict[tuple, list[int]]] = {t: defaultdict(lambda: [0] * 5) for t in TABLES}
    for sid, name, source, success, duration, created, error, project in conn.execute(
        "SELECT t.session_id, t.tool_name, t.source, t.success, t.duration_ms, t.created_at, "
        "t.error_message, s.project_path FROM tools t LEFT JOIN sessions s ON s.id = t.session_id"
    ):
        hour = int(created / HOUR) if created is not None else -1
        day = int(created / DAY) if created is not None else -1
        name, project, sid, failed = name or "", project or "", sid or "", success == 0
        stats = out["tool_stats_hourly"][(hour, name, source, project)]
        for i, v in enumerate((1, failed, success is None, duration is not None, duration or 0)):
            stats[i] += v
        for key in ((sid, hour, name, source), (sid,)):
            table = "tool_session_hourly" if len(key) > 1 else "tool_session_totals"
            out[table][key][0] += 1
            out[table][key][1] += failed
        out["tool_session_hourly"][(sid, hour, name, source)][2] += duration is not None
        out["session_hourly"][(hour, sid)][0] += 1
        out["session_hourly"][(hour, sid)][1] += failed
        total = out["tool_stats_total"][(name, source, project)]
        total[0] += 1
        total[1] += failed
        total[2] += duration is not None
        if duration is not None:
            b = rollup.bucket_of(duration)
            out["tool_duration_hourly"][(hour, name, source, b)][0] += 1
            out["tool_duration_total"][(name, source, b)][0] += 1
            out["tool_duration_project"][(project, name, source, b)][0] += 1
            out["tool_duration_session"][(sid, name, source, b)][0] += 1
        if failed:
            m = message(error)
            out["tool_errors_total"][(name, source, project, m)][0] += 1
            out["tool_errors_daily"][(day, name, source, project, m)][0] += 1
            out["tool_errors_hourly"][(hour, name, source, project, m)][0] += 1
            out["tool_session_errors"][(sid, hour, name, source, m)][0] += 1
    for sid, path, op, created in conn.execute(
        "SELECT session_id, file_path, operation_type, created_at FROM file_operations"
    ):
        if path is not None and op in EDITS:
            hour = int(created / HOUR) if created is not None else -1
            out["file_session_edits"][(sid or "", hour, path)][0] += 1
    compactions: dict[tuple, list[Any]] = defaultdict(lambda: [0, 0, 0, 0, 0.0, 0, 0.0, 0, None])
    for sid, source, trigger, before, after, created in conn.execute(
        "SELECT session_id, source, trigger, tokens_before, tokens_after, created_at "
        "FROM compaction_events"
    ):
        c = compactions[(sid or "", source)]
        c[0] += 1
        c[1] += trigger is not None
        c[2] += trigger == "auto"
        c[3] += trigger == "manual"
        c[4] += before or 0
        c[5] += before is not None
        c[6] += after or 0
        c[7] += after is not None
        c[8] = created if c[8] is None else max(c[8], created if created is not None else c[8])
    out["compaction_totals"] = compactions
    widths = {
        "tool_stats_total": 3,
        "tool_stats_hourly": 5,
        "tool_session_hourly": 3,
        "session_hourly": 2,
        "compaction_totals": 9,
        "tool_session_totals": 2,
    }
    return {
        t: {k: tuple(v[: widths.get(t, 1)]) for k, v in rows.items()} for t, rows in out.items()
    }


def stored(conn: sqlite3.Connection) -> dict[str, dict[tuple, tuple]]:
    keys = {"tool_stats_total": 3, "tool_errors_total": 4, "tool_stats_hourly": 4, "tool_errors_daily": 5, "tool_errors_hourly": 5,
            "tool_session_hourly": 4, "tool_session_errors": 5, "tool_session_totals": 1,
            "file_session_edits": 3, "tool_duration_hourly": 4, "tool_duration_total": 3,
            "tool_duration_project": 4, "tool_duration_session": 4, "session_hourly": 2,
            "compaction_totals": 2}  # fmt: skip
    return {
        t: {r[: keys[t]]: tuple(r[keys[t] :]) for r in conn.execute(f"SELECT * FROM {t}")}
        for t in TABLES
    }


def assert_exact(path: Path) -> dict[str, dict[tuple, tuple]]:
    conn = sqlite3.connect(path)
    try:
        now = stored(conn)
        assert now == direct(conn)
        return now
    finally:
        conn.close()


async def test_query_rollup_follows_real_claude_events_pre_then_post_and_replays(tmp_path):
    path = tmp_path / "a.db"
    events = claude_tool_events()
    pre = [e for e in events if e["hook_event_name"] == "PreToolUse"]
    await ingest(path, "claude", pre)
    first = assert_exact(path)
    assert sum(v[0] for v in first["tool_session_totals"].values()) == len(pre)
    assert first["tool_errors_daily"] == {}  # no outcome yet
    await ingest(path, "claude", events, at=NOW + 5000)  # Post events UPDATE those rows
    after = assert_exact(path)
    assert sum(v[0] for v in after["tool_errors_hourly"].values()) >= 1
    await ingest(path, "claude", events, at=NOW + 5000)  # a replay: no change
    assert assert_exact(path) == after


async def test_query_rollup_exact_after_an_import_over_live_capture_and_its_replay(
    tmp_path, config, monkeypatch
):
    _, imported = await import_over_live_capture(tmp_path, config, monkeypatch, assert_exact)
    assert sum(v[0] for v in imported["tool_session_totals"].values()) == 7


async def test_query_rollup_follows_a_sessions_project_and_prune(tmp_path, rows_source):  # noqa: F811
    path = tmp_path / "a.db"
    calls = [["tools", {"id": f"t{i}", "session_id": "s1", "source": "opencode",
                        "tool_name": "bash", "success": i % 2, "error_message": f"Exit {i}\nx",
                        "duration_ms": 100 + i, "created_at": NOW - 40 * DAY + i * HOUR}]
             for i in range(5)]  # fmt: skip
    calls.append(["tools", {"id": "new", "session_id": "s2", "source": "opencode",
                            "tool_name": "read", "success": 0, "created_at": NOW}])  # fmt: skip
    await ingest(path, rows_source, [{"kind": "calls", "rows": calls}])
    assert {k[3] for k in assert_exact(path)["tool_errors_daily"]} == {""}
    session = {"id": "s1", "source": "opencode", "created_at": NOW - 40 * DAY,
               "updated_at": NOW - 40 * DAY}  # fmt: skip
    await ingest(path, rows_source, [{"kind": "s", "rows": [["sessions", session]]}])
    assert_exact(path)
    for i, project in enumerate(("/src/a", "/src/b")):
        await ingest(path, rows_source, [{"kind": f"p{i}", "rows": [["sessions", {**session,
                     "project_path": project}]]}])  # fmt: skip
        assert {k[3] for k in assert_exact(path)["tool_stats_hourly"]} == {project, ""}
    result = await prune(path, NOW - 10 * DAY)  # s1 and its calls go; "new" stays
    assert result["deleted"]["tools"] == 5
    assert assert_exact(path)["tool_session_totals"] == {("s2",): (1, 1)}


def test_query_rollup_follows_plain_sql_writes_and_deleted_sessions(tmp_path):
    path = tmp_path / "a.db"
    conn = connect_sync(path)
    conn.execute("INSERT INTO sessions (id, source, project_path) VALUES ('s', 'claude', '/p')")
    rng = random.Random(11)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO tools (id, session_id, source, tool_name, success, error_message, "
        "duration_ms, created_at) VALUES (?, ?, 'claude', ?, ?, ?, ?, ?)",
        [(f"t{i}", rng.choice(["s", "s", "other", None]), rng.choice(["Bash", None]),
          rng.choice([0, 0, 1, None]),
          rng.choice([None, "", "  Exit code 1\nmore", "x" * 200, "one\ntwo", "é" * 90]),
          rng.choice([None, 0, 49, 1000]),
          rng.choice([None, NOW, NOW - 9 * DAY, NOW - 5 * HOUR, 5])) for i in range(400)],
    )  # fmt: skip
    conn.executemany(
        "INSERT INTO file_operations (id, session_id, source, file_path, operation_type, "
        "created_at) VALUES (?, ?, 'claude', ?, ?, ?)",
        [(f"f{i}", rng.choice(["s", None]), rng.choice(["/p/a", "/p/b", None]),
          rng.choice([*EDITS, "read", None]), rng.choice([None, NOW, NOW - 5 * HOUR]))
         for i in range(200)],
    )  # fmt: skip
    conn.execute("COMMIT")
    assert_exact(path)
    conn.executemany(
        "INSERT INTO compaction_events (id, session_id, source, trigger, tokens_before, "
        "tokens_after, created_at) VALUES (?, ?, 'claude', ?, ?, ?, ?)",
        [(f"c{i}", rng.choice(["s", "other", None]), rng.choice(["auto", "manual", None]),
          rng.choice([None, 150_000, 170_001]), rng.choice([None, 30_000]),
          rng.choice([None, NOW, NOW - 3 * HOUR])) for i in range(60)],
    )  # fmt: skip
    assert_exact(path)
    conn.execute(
        "UPDATE compaction_events SET trigger = 'auto', created_at = 9 WHERE rowid % 3 = 0"
    )
    conn.execute("UPDATE compaction_events SET session_id = 'moved' WHERE rowid % 4 = 0")
    conn.execute("DELETE FROM compaction_events WHERE rowid % 5 = 0")
    assert_exact(path)
    conn.execute("UPDATE file_operations SET operation_type = 'read' WHERE rowid % 3 = 0")
    conn.execute(
        "UPDATE file_operations SET file_path = '/p/c', created_at = 7 WHERE rowid % 4 = 0"
    )
    conn.execute("UPDATE file_operations SET operation_type = operation_type")  # no change
    assert_exact(path)
    conn.execute("DELETE FROM file_operations WHERE rowid % 2 = 0")
    assert sum(v[0] for v in assert_exact(path)["file_session_edits"].values()) > 0
    conn.execute("UPDATE tools SET tool_name = tool_name, success = success")  # no change
    conn.execute("UPDATE tools SET success = 1 - coalesce(success, 0) WHERE rowid % 5 = 0")
    conn.execute("UPDATE tools SET error_message = 'other' WHERE rowid % 3 = 0")
    conn.execute("UPDATE tools SET created_at = created_at + 3600000 WHERE rowid % 4 = 0")
    conn.execute("UPDATE tools SET session_id = 's' WHERE rowid % 6 = 0")
    assert_exact(path)
    conn.execute("UPDATE sessions SET project_path = '/q'")
    assert {k[3] for k in assert_exact(path)["tool_stats_hourly"]} == {"/q", ""}
    conn.execute("DELETE FROM sessions")  # the calls stay, now of no known project
    assert {k[3] for k in assert_exact(path)["tool_errors_hourly"]} == {""}
    conn.execute("DELETE FROM tools WHERE rowid % 2 = 0")
    assert_exact(path)
    conn.execute("DELETE FROM tools")
    conn.execute("DELETE FROM file_operations")
    conn.execute("DELETE FROM compaction_events")
    assert assert_exact(path) == {t: {} for t in TABLES}
    conn.close()


def test_query_rollup_migration_backfills_an_existing_database(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path, isolation_level=None)
    at = next(i for i, m in enumerate(MIGRATIONS) if m.name.endswith("_query_rollup"))
    migrate(old, MIGRATIONS[:at])  # the schema before this rollup (with 0010's)
    old.execute("INSERT INTO sessions (id, source, project_path) VALUES ('s', 'claude', '/p')")
    rng = random.Random(7)
    old.execute("BEGIN")
    old.executemany(
        "INSERT INTO tools (id, session_id, source, tool_name, success, error_message, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(f"t{i}", rng.choice(["s", "gone", None]), rng.choice(["claude", "opencode"]),
          rng.choice(["Bash", "read", None]), rng.choice([0, 1, None]),
          rng.choice([None, "Exit code 2\nboom", "denied"]),
          rng.choice([None, NOW - rng.randrange(60 * DAY)])) for i in range(2000)],
    )  # fmt: skip
    old.execute("COMMIT")
    old.close()
    conn = connect_sync(path)
    assert MIGRATIONS[at].name in {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
    conn.close()
    backfilled = assert_exact(path)
    assert sum(v[0] for v in backfilled["tool_session_totals"].values()) == 2000


def test_a_rolled_back_write_leaves_no_trace_in_the_query_rollup(tmp_path):
    path = tmp_path / "a.db"
    conn = connect_sync(path)
    conn.execute("BEGIN")
    conn.execute("INSERT INTO tools (id, source, success, created_at) VALUES ('t', 'claude', 0, 1)")
    conn.execute("ROLLBACK")
    conn.close()
    assert assert_exact(path) == {t: {} for t in TABLES}


# tool-errors as it was before the rollup: the reference its answers must equal.
RAW_TOOL_ERRORS = """\
WITH calls AS (
    SELECT t.tool_name, count(*) AS calls
    FROM tools t
    WHERE 1
      AND t.created_at >= :since
      AND t.created_at < :until
      AND t.source = :source
      AND t.session_id IN (SELECT id FROM sessions WHERE project_path = :project OR (project_path >= :project || '/' AND project_path < :project || '0'))
      AND t.session_id = :session
    GROUP BY t.tool_name
),
failures AS MATERIALIZED (
    SELECT t.tool_name, t.error_message, count(*) AS n
    FROM tools t
    WHERE t.success = 0
      AND t.created_at >= :since
      AND t.created_at < :until
      AND t.source = :source
      AND t.session_id IN (SELECT id FROM sessions WHERE project_path = :project OR (project_path >= :project || '/' AND project_path < :project || '0'))
      AND t.session_id = :session
    GROUP BY t.tool_name, t.error_message
),
messages AS (
    SELECT tool_name, coalesce(nullif(substr(trim(substr(error_message, 1,
            instr(error_message || char(10), char(10)) - 1)), 1, 80), ''), '(no message)') AS message,
        sum(n) AS n
    FROM failures
    GROUP BY tool_name, message
),
per_tool AS MATERIALIZED (
    SELECT tool_name, sum(n) AS failed,
        group_concat(CASE WHEN rank <= 3 THEN n || '× ' || message END, ' | ') AS top_errors
    FROM (
        SELECT tool_name, n, message,
            row_number() OVER (PARTITION BY tool_name ORDER BY n DESC, message) AS rank
        FROM messages
        ORDER BY tool_name, rank
    )
    GROUP BY tool_name
)
SELECT
    c.tool_name AS tool_name,
    c.calls AS calls,
    coalesce(p.failed, 0) AS failed,
    round(100.0 * coalesce(p.failed, 0) / c.calls, 1) AS error_pct,
    p.top_errors AS top_errors
FROM calls c
LEFT JOIN per_tool p ON p.tool_name IS c.tool_name
ORDER BY failed DESC, c.calls DESC, c.tool_name
LIMIT :limit"""

# top-sessions as it was before the rollup.
RAW_TOP_SESSIONS = """\
WITH a AS MATERIALIZED (
    SELECT s.id AS session_id,
        (SELECT count(*) FROM tools t
            WHERE t.session_id = s.id
              AND t.created_at >= :since
              AND t.created_at < :until
        ) AS tool_calls
    FROM sessions s
    WHERE 1
      AND s.source = :source
      AND (s.project_path = :project OR (s.project_path >= :project || '/' AND s.project_path < :project || '0'))
      AND s.id = :session
)
SELECT
    a.session_id AS session_id,
    s.source AS source,
    s.project_path AS project,
    a.tool_calls AS tool_calls,
    (SELECT count(*) FROM tools t
        WHERE t.session_id = a.session_id AND t.success = 0
          AND t.created_at >= :since
          AND t.created_at < :until
    ) AS failed,
    (SELECT count(DISTINCT f.file_path) FROM file_operations f
        WHERE f.session_id = a.session_id AND f.operation_type IN ('created', 'edited', 'deleted', 'moved')
          AND f.created_at >= :since
          AND f.created_at < :until
    ) AS files_edited,
    s.created_at AS started_at,
    coalesce(s.ended_at, s.updated_at) - s.created_at AS duration_ms
FROM a
JOIN sessions s ON s.id = a.session_id
WHERE a.tool_calls > 0
ORDER BY a.tool_calls DESC, a.session_id
LIMIT :limit"""
# compactions as before the rollup.
RAW_COMPACTIONS = """\
SELECT
    c.session_id AS session_id,
    s.source AS source,
    s.project_path AS project,
    count(*) AS compactions,
    sum(c.trigger = 'auto') AS auto,
    sum(c.trigger = 'manual') AS manual,
    CAST(round(avg(c.tokens_before)) AS INTEGER) AS avg_tokens_before,
    CAST(round(avg(c.tokens_after)) AS INTEGER) AS avg_tokens_after,
    (max(c.created_at) - min(s.created_at)) / count(*) AS avg_interval_ms,
    max(c.created_at) AS last_at
FROM compaction_events c
LEFT JOIN sessions s ON s.id = c.session_id
WHERE 1
  AND c.created_at >= :since
  AND c.created_at < :until
  AND c.source = :source
  AND (s.project_path = :project OR (s.project_path >= :project || '/' AND s.project_path < :project || '0'))
  AND c.session_id = :session
GROUP BY c.session_id
ORDER BY compactions DESC, last_at DESC
LIMIT :limit"""
RAW = {"tool-errors": RAW_TOOL_ERRORS, "top-sessions": RAW_TOP_SESSIONS,
       "compactions": RAW_COMPACTIONS}  # fmt: skip


def _seeded(path: Path) -> None:
    """A small bench database (bench/gen_db.py): skewed sessions, failures, projects."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from gen_db import build

    build(path, sessions=80, tools=20_000, file_operations=2_000, session_errors=50,
          compactions=400, days=12, seed=3, now=NOW, log=False)  # fmt: skip


# Every report filter unset, no row limit: each case sets what it tests.
NO_FILTERS = {"since": None, "until": None, "source": None, "project": None, "session": None,
              "limit": -1}  # fmt: skip


def _seeded_busiest(path: Path) -> tuple[sqlite3.Connection, str, str]:
    """_seeded(path) opened read-only, with its busiest session (most calls) and its project."""
    _seeded(path)
    conn = connect_readonly(path)
    busiest, project = conn.execute(
        "SELECT id, project_path FROM sessions ORDER BY tool_call_count DESC LIMIT 1"
    ).fetchone()
    return conn, busiest, project


@pytest.mark.parametrize("report", sorted(RAW))
def test_report_from_the_rollup_equals_the_raw_sql(tmp_path, report):
    path = tmp_path / "a.db"
    conn, busiest, project = _seeded_busiest(path)
    windows = [(None, None), (NOW - 7 * DAY, None), (None, NOW - 2 * DAY - 12345),
               (NOW - 5 * DAY - 777, NOW - DAY + 4321), (NOW - 3 * HOUR - 5, NOW - HOUR + 9),
               (NOW - 20 * 60_000, NOW - 10 * 60_000)]  # fmt: skip
    filters = [{}, {"source": "opencode"}, {"project": project}, {"session": busiest},
               {"project": project.rsplit("/", 1)[0], "source": "claude"}]  # fmt: skip
    checked = 0
    for since, until in windows:
        for extra in filters:
            params = {**NO_FILTERS, "since": since, "until": until, **extra}
            columns, batches = run_report(conn, REPORTS[report], params)
            rows = [r for b in batches for r in b]
            ref = conn.execute(render(RAW[report], params), params).fetchall()
            assert rows == ref, (since, until, extra)
            checked += bool(rows)
    assert checked >= 15  # half the combinations have rows: the comparison is not of nothing
    conn.close()


# slow-tools' calls as before the rollup; percentiles by nearest rank over the raw durations.
RAW_SLOW_CALLS = """\
SELECT
    t.tool_name AS tool_name,
    count(*) AS calls,
    NULL AS p50_ms,
    NULL AS p95_ms,
    NULL AS max_ms
FROM tools t
WHERE t.duration_ms IS NOT NULL
  AND t.created_at >= :since
  AND t.created_at < :until
  AND t.source = :source
  AND t.session_id IN (SELECT id FROM sessions WHERE project_path = :project OR (project_path >= :project || '/' AND project_path < :project || '0'))
  AND t.session_id = :session
GROUP BY t.tool_name"""


@pytest.mark.parametrize("exact_limit", [percentiles.EXACT_LIMIT, 0])
def test_slow_tools_exact_or_within_1_percent_of_the_raw_rows(tmp_path, monkeypatch, exact_limit):
    """With few calls the percentiles are the raw rows' nearest-rank values; forced onto the
    histograms (EXACT_LIMIT 0) p50 and p95 are within 1% of them, calls and max exact."""
    monkeypatch.setattr(percentiles, "EXACT_LIMIT", exact_limit)
    path = tmp_path / "a.db"
    conn, busiest, project = _seeded_busiest(path)
    cases = [{}, {"source": "claude"}, {"project": project}, {"session": busiest},
             {"since": NOW - 7 * DAY}, {"since": NOW - 5 * DAY - 777, "until": NOW - DAY + 4321},
             {"since": NOW - 3 * HOUR - 5, "until": NOW - HOUR + 9},
             {"since": NOW - 4 * DAY, "project": project}]  # fmt: skip
    methods = set()
    for case in cases:
        params = {**NO_FILTERS, **case}
        columns, batches = run_report(conn, REPORTS["slow-tools"], params)
        got = {r[0]: r for b in batches for r in b}
        durations = defaultdict(list)
        rows_sql = RAW_SLOW_CALLS.split("FROM tools t", 1)[1].replace("GROUP BY t.tool_name", "")
        sql = f"SELECT t.tool_name, t.duration_ms FROM tools t {rows_sql} ORDER BY 2"
        for tool, d in conn.execute(render(sql, params), params):
            durations[tool].append(d)
        assert set(got) == set(durations), case
        for tool, ds in durations.items():
            row = dict(zip(columns, got[tool], strict=True))
            methods.add(row["percentiles"])
            assert (row["calls"], row["max_ms"]) == (len(ds), ds[-1])
            for column, fraction in (("p50_ms", 0.5), ("p95_ms", 0.95)):
                exact = ds[nearest_rank(fraction, len(ds)) - 1]
                if row["percentiles"] == "exact":
                    assert row[column] == exact
                else:
                    assert abs(row[column] - exact) <= 0.01 * exact, (case, tool, column)
    # Bounded windows with --project are always answered exactly.
    assert methods == ({"exact"} if exact_limit else {"exact", "histogram"})
    conn.close()


def _bare_tools(path: Path, tools: list[tuple[str, str | None, int, int | None]]) -> None:
    """Tool rows (id, tool_name, duration_ms, created_at) of one session with a project."""
    conn = connect_sync(path)
    with conn:
        conn.execute(
            "INSERT INTO sessions (id, source, project_path, created_at) VALUES "
            "('s', 'claude', '/x', 0)"
        )
        conn.executemany(
            "INSERT INTO tools (id, session_id, source, tool_name, success, duration_ms,"
            " created_at) VALUES (?, 's', 'claude', ?, 1, ?, ?)",
            tools,
        )
    conn.close()


def test_slow_tools_max_covers_null_and_empty_names_on_the_histograms(tmp_path, monkeypatch):
    # The rollups file a NULL and an empty tool name as one row (NULL): the exact max must look
    # under both names, whichever holds the longest call.
    monkeypatch.setattr(percentiles, "EXACT_LIMIT", 0)
    _bare_tools(
        tmp_path / "a.db", [("a", None, 10, NOW), ("b", "", 99_999, NOW), ("c", "", 7, NOW)]
    )
    conn = connect_readonly(tmp_path / "a.db")
    params = {"since": None, "until": None, "source": None, "project": None, "session": None,
              "limit": -1}  # fmt: skip
    for case in ({}, {"since": NOW - DAY, "until": NOW + DAY}):
        columns, batches = run_report(conn, REPORTS["slow-tools"], {**params, **case})
        (row,) = [dict(zip(columns, r, strict=True)) for b in batches for r in b]
        assert (row["tool_name"], row["calls"], row["max_ms"]) == (None, 3, 99_999), case
        assert row["percentiles"] == "histogram"


def test_a_window_from_before_1970_leaves_out_the_rows_without_a_time(tmp_path):
    # `--since 1970-01-01` east of UTC is a negative bound: the rollups' hour and day -1 (rows
    # without created_at) must stay outside it, as the raw rows do.
    _bare_tools(tmp_path / "a.db", [("a", "Bash", 5, NOW), ("b", "Bash", 6, None)])
    conn = connect_readonly(tmp_path / "a.db")
    params = {"since": -3_600_000, "until": None, "source": None, "project": None,
              "session": None, "limit": -1}  # fmt: skip
    for report in ("tool-errors", "slow-tools", "top-sessions"):
        columns, batches = run_report(conn, REPORTS[report], params)
        got = [dict(zip(columns, r, strict=True)) for b in batches for r in b]
        calls = got[0]["tool_calls" if report == "top-sessions" else "calls"]
        assert calls == 1, (report, got)
    columns, batches = run_report(conn, REPORTS["tool-errors"], {**params, "since": None})
    assert [r for b in batches for r in b][0][1] == 2  # unbounded: both
