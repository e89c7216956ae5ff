"""`agentd query` as users run it: the real CLI in a subprocess, on real SQLite files.

The report database is made by the real migrations (`connect_sync`) and filled with plain SQL
inserts: three sessions (two Claude, one OpenCode) whose rows exercise every report.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agentd.cli.query import query as query_command
from agentd.client import Client
from agentd.db.store import connect_sync
from agentd.query.engine import Interrupted, connect_readonly, execute
from agentd.query.reports import (
    DEFAULT_LIMIT,
    DEFAULT_SINCE,
    PERCENTILE_SQL,
    REPORTS,
    render,
)
from agentd.query.times import TimeError, parse_time
from conftest import REPO

DOCS = REPO / "docs" / "queries.md"
M = 60_000
D = 86_400_000
T0 = 1794301200000  # 2026-11-10 09:00 UTC
S1 = "c0ffee00-1111-4a2b-9c3d-000000000001"
S2 = "ses_4f1a9c2e7b3dXkQ8"
S3 = "c0ffee00-3333-4a2b-9c3d-000000000003"
SHOP = "/home/ana/src/shop"
CART = f"{SHOP}/src/cart.py"
SINCE = ("--since", "2026-11-01")


def _insert(conn: sqlite3.Connection, table: str, rows: list[dict]) -> None:
    for row in rows:
        names = ", ".join(row)
        marks = ", ".join(f":{k}" for k in row)
        conn.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", row)


def build_report_db(path: Path) -> None:
    conn = connect_sync(path)
    _insert(
        conn,
        "sessions",
        [
            dict(id=S1, source="claude", project_path=SHOP, status="ended",
                 model="claude-sonnet-4-5", created_at=T0, updated_at=T0 + 45 * M,
                 ended_at=T0 + 45 * M, tool_call_count=6, prompt_tokens=1200,
                 completion_tokens=3400, cache_read_tokens=250000, cache_write_tokens=18000,
                 cost=0.4821, outcome="ok"),
            dict(id=S2, source="opencode", project_path=f"{SHOP}/api", status="idle",
                 model="anthropic/claude-sonnet-4-5", created_at=T0 + D,
                 updated_at=T0 + D + 20 * M, tool_call_count=4, prompt_tokens=800,
                 completion_tokens=2100, cache_read_tokens=90000, cache_write_tokens=0,
                 reasoning_tokens=300, cost=0.1502, outcome="error",
                 last_error="APIError: Rate limited: please try again in 30s"),
            dict(id=S3, source="claude", project_path="/home/ana/src/blog", status="busy",
                 model="claude-opus-4-1", created_at=T0 + 2 * D, updated_at=T0 + 2 * D + 10 * M,
                 tool_call_count=4),
        ],
    )  # fmt: skip
    tools = [
        # id, session, source, tool, success, error, duration, offset from the session start
        ("t1", S1, "claude", "Read", 1, None, 40, 1 * M),
        ("t2", S1, "claude", "Edit", 1, None, 55, 2 * M),
        ("t3", S1, "claude", "Edit", 0, "String to replace not found in file.\nString: total = 0", 12, 3 * M),
        ("t4", S1, "claude", "Bash", 0, "Exit code 1\nFAIL src/cart.test.ts", 5200, 10 * M),
        ("t5", S1, "claude", "Bash", 1, None, 1800, 12 * M),
        ("t6", S1, "claude", "Bash", 0, "Exit code 1\nnpm ERR! missing script: lint", 900, 20 * M),
        ("o1", S2, "opencode", "read", 1, None, 20, D + 1 * M),
        ("o2", S2, "opencode", "edit", 1, None, 30, D + 2 * M),
        ("o3", S2, "opencode", "bash", 0, "Exit code 2\nerror: unknown option '--fast'", 400, D + 5 * M),
        ("o4", S2, "opencode", "bash", 1, None, 600, D + 6 * M),
        ("c1", S3, "claude", "Read", 1, None, 25, 2 * D + 1 * M),
        ("c2", S3, "claude", "Edit", 1, None, 50, 2 * D + 2 * M),
        ("c3", S3, "claude", "WebFetch", 0, "Request failed with status code 404", 2100, 2 * D + 3 * M),
        ("c4", S3, "claude", "Bash", None, None, None, 2 * D + 9 * M),  # still running
    ]  # fmt: skip
    _insert(
        conn,
        "tools",
        [
            dict(id=i, session_id=s, source=src, tool_name=name, success=ok, error_message=err,
                 duration_ms=ms, started_at=T0 + at, created_at=T0 + at)
            for i, s, src, name, ok, err, ms, at in tools
        ],
    )  # fmt: skip
    files = [
        # id, session, source, path, operation, added, removed, offset
        ("f1", S1, "claude", CART, "read", None, None, 1 * M),
        ("f2", S1, "claude", CART, "edited", 12, 3, 2 * M),
        ("f3", S1, "claude", CART, "edited", 4, 4, 15 * M),
        ("f4", S1, "claude", f"{SHOP}/README.md", "created", 30, 0, 16 * M),
        ("g1", S2, "opencode", f"{SHOP}/api/server.ts", "read", None, None, D + 1 * M),
        ("g2", S2, "opencode", f"{SHOP}/api/server.ts", "edited", 5, 2, D + 2 * M),
        ("g3", S2, "opencode", CART, "edited", 1, 1, D + 3 * M),
        ("h1", S3, "claude", "/home/ana/src/blog/posts/hello.md", "read", None, None, 2 * D + 1 * M),
        ("h2", S3, "claude", "/home/ana/src/blog/posts/hello.md", "edited", 10, 1, 2 * D + 2 * M),
    ]  # fmt: skip
    _insert(
        conn,
        "file_operations",
        [
            dict(id=i, session_id=s, source=src, file_path=p, operation_type=op,
                 lines_added=a, lines_removed=r, created_at=T0 + at)
            for i, s, src, p, op, a, r, at in files
        ],
    )  # fmt: skip
    _insert(
        conn,
        "compaction_events",
        [
            dict(id="k1", session_id=S1, source="claude", trigger="auto", tokens_before=168000,
                 tokens_after=31000, created_at=T0 + 30 * M),
            dict(id="k2", session_id=S1, source="claude", trigger="manual", tokens_before=120000,
                 tokens_after=28000, created_at=T0 + 40 * M),
            dict(id="k3", session_id=S3, source="claude", trigger="auto", tokens_before=150000,
                 tokens_after=30000, created_at=T0 + 2 * D + 8 * M),
        ],
    )  # fmt: skip
    _insert(
        conn,
        "session_errors",
        [
            dict(id="e1", session_id=S1, source="claude", error_type="rate_limit",
                 status_code=429, error_message="Rate limited: please try again in 30s",
                 created_at=T0 + 25 * M),
            dict(id="e2", session_id=S3, source="claude", error_type="api_error",
                 status_code=529, error_message="Overloaded", created_at=T0 + 2 * D + 5 * M),
            dict(id="e3", session_id=S2, source="opencode", error_type="api_error",
                 error_message="Request timed out\nretrying in 5s", created_at=T0 + D + 10 * M),
        ],
    )  # fmt: skip
    # Messages for the usage reports (query/usage_reports.py): priced by the agent (OpenCode),
    # computed from tokens (Claude; one by a subagent), and one whose model has no price
    # (unknown, not $0). Idle cache rebuilds are tested in test_usage.py.
    _insert(
        conn,
        "messages",
        [
            dict(id="m0", session_id=S1, source="claude", role="user", created_at=T0),
            dict(id="m1", session_id=S1, source="claude", role="assistant", model="claude-sonnet-4-5",
                 prompt_tokens=200, completion_tokens=1000, cache_read_tokens=100000,
                 cache_write_tokens=10000, cache_write_5m_tokens=10000, cache_write_1h_tokens=0,
                 computed_cost=0.1, cost_source="computed", created_at=T0 + 1 * M),
            dict(id="m2", session_id=S1, source="claude", role="assistant", model="claude-sonnet-4-5",
                 agent_id="a1f3", prompt_tokens=100, completion_tokens=400, cache_read_tokens=50000,
                 cache_write_tokens=8000, cache_write_5m_tokens=0, cache_write_1h_tokens=8000,
                 computed_cost=0.05, cost_source="computed", created_at=T0 + 20 * M),
            dict(id="m3", session_id=S2, source="opencode", role="assistant",
                 model="claude-sonnet-4-5", provider="anthropic", prompt_tokens=800,
                 completion_tokens=2100, cache_read_tokens=90000, cache_write_tokens=0,
                 cost=0.1502, computed_cost=0.0612, cost_source="agent", created_at=T0 + D + 2 * M),
            dict(id="m4", session_id=S3, source="claude", role="assistant", model="mystery-model",
                 prompt_tokens=50, completion_tokens=10, cost_source="unknown",
                 created_at=T0 + 2 * D + 1 * M),
        ],
    )  # fmt: skip
    conn.close()


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTD_")}
    env["AGENTD_HOME"] = str(home)
    env["TZ"] = "UTC"  # the table shows local times
    return env


@pytest.fixture(scope="module")
def report_env(tmp_path_factory) -> dict[str, str]:
    """AGENTD_HOME holding the report database; no daemon runs."""
    home = tmp_path_factory.mktemp("reports")
    build_report_db(home / "agentd.db")
    return _env(home)


def q(env, *args, input=None, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "agentd", "query", *args],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(env, *args, input=None) -> str:
    result = q(env, *args, input=input)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def fails(env, *args, input=None) -> str:
    """Run a query that must fail cleanly; return its stderr."""
    result = q(env, *args, input=input)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: "), result.stderr
    return result.stderr


def rows(env, *args) -> list[dict]:
    return json.loads(ok(env, *args, "--format", "json"))


# --- every report's rows -------------------------------------------------------------------

EXPECTED = {
    "sessions": [
        dict(session_id=S3, source="claude", project="/home/ana/src/blog", status="busy",
             outcome="unknown", last_error=None, model="claude-opus-4-1", started_at=T0 + 2 * D, duration_ms=10 * M, tool_calls=4,
             tokens_in=None, tokens_out=None, cost=None),
        dict(session_id=S2, source="opencode", project=f"{SHOP}/api", status="idle",
             outcome="error", last_error="APIError: Rate limited: please try again in 30s", model="anthropic/claude-sonnet-4-5", started_at=T0 + D, duration_ms=20 * M,
             tool_calls=4, tokens_in=90800, tokens_out=2400, cost=0.1502),
        dict(session_id=S1, source="claude", project=SHOP, status="ended",
             outcome="ok", last_error=None, model="claude-sonnet-4-5", started_at=T0, duration_ms=45 * M, tool_calls=6,
             tokens_in=269200, tokens_out=3400, cost=0.4821),
    ],
    "hot-files": [
        dict(file_path=CART, edits=3, reads=1, lines_added=17, lines_removed=8, sessions=2,
             last_edited_at=T0 + D + 3 * M),
        dict(file_path="/home/ana/src/blog/posts/hello.md", edits=1, reads=1, lines_added=10,
             lines_removed=1, sessions=1, last_edited_at=T0 + 2 * D + 2 * M),
        dict(file_path=f"{SHOP}/README.md", edits=1, reads=0, lines_added=30, lines_removed=0,
             sessions=1, last_edited_at=T0 + 16 * M),
        dict(file_path=f"{SHOP}/api/server.ts", edits=1, reads=1, lines_added=5,
             lines_removed=2, sessions=1, last_edited_at=T0 + D + 2 * M),
    ],
    "tool-errors": [
        dict(tool_name="Bash", calls=4, failed=2, error_pct=50.0, top_errors="2× Exit code 1"),
        dict(tool_name="Edit", calls=3, failed=1, error_pct=33.3,
             top_errors="1× String to replace not found in file."),
        dict(tool_name="bash", calls=2, failed=1, error_pct=50.0, top_errors="1× Exit code 2"),
        dict(tool_name="WebFetch", calls=1, failed=1, error_pct=100.0,
             top_errors="1× Request failed with status code 404"),
        dict(tool_name="Read", calls=2, failed=0, error_pct=0.0, top_errors=None),
        dict(tool_name="edit", calls=1, failed=0, error_pct=0.0, top_errors=None),
        dict(tool_name="read", calls=1, failed=0, error_pct=0.0, top_errors=None),
    ],
    "slow-tools": [
        dict(tool_name="Bash", calls=3, p50_ms=1800, p95_ms=5200, max_ms=5200, percentiles="exact"),
        dict(tool_name="WebFetch", calls=1, p50_ms=2100, p95_ms=2100, max_ms=2100, percentiles="exact"),
        dict(tool_name="bash", calls=2, p50_ms=400, p95_ms=600, max_ms=600, percentiles="exact"),
        dict(tool_name="Edit", calls=3, p50_ms=50, p95_ms=55, max_ms=55, percentiles="exact"),
        dict(tool_name="Read", calls=2, p50_ms=25, p95_ms=40, max_ms=40, percentiles="exact"),
        dict(tool_name="edit", calls=1, p50_ms=30, p95_ms=30, max_ms=30, percentiles="exact"),
        dict(tool_name="read", calls=1, p50_ms=20, p95_ms=20, max_ms=20, percentiles="exact"),
    ],
    "top-sessions": [
        dict(session_id=S1, source="claude", project=SHOP, tool_calls=6, failed=3,
             files_edited=2, started_at=T0, duration_ms=45 * M),
        dict(session_id=S3, source="claude", project="/home/ana/src/blog", tool_calls=4,
             failed=1, files_edited=1, started_at=T0 + 2 * D, duration_ms=10 * M),
        dict(session_id=S2, source="opencode", project=f"{SHOP}/api", tool_calls=4, failed=1,
             files_edited=2, started_at=T0 + D, duration_ms=20 * M),
    ],
    "compactions": [
        dict(session_id=S1, source="claude", project=SHOP, compactions=2, auto=1, manual=1,
             avg_tokens_before=144000, avg_tokens_after=29500, avg_interval_ms=20 * M,
             last_at=T0 + 40 * M),
        dict(session_id=S3, source="claude", project="/home/ana/src/blog", compactions=1,
             auto=1, manual=0, avg_tokens_before=150000, avg_tokens_after=30000,
             avg_interval_ms=8 * M, last_at=T0 + 2 * D + 8 * M),
    ],
    "errors": [
        dict(created_at=T0 + 2 * D + 5 * M, session_id=S3, source="claude",
             project="/home/ana/src/blog", error_type="api_error", status_code=529,
             message="Overloaded"),
        dict(created_at=T0 + D + 10 * M, session_id=S2, source="opencode",
             project=f"{SHOP}/api", error_type="api_error", status_code=None,
             message="Request timed out\nretrying in 5s"),
        dict(created_at=T0 + 25 * M, session_id=S1, source="claude", project=SHOP,
             error_type="rate_limit", status_code=429,
             message="Rate limited: please try again in 30s"),
    ],
    # The usage reports read the messages' hourly rollup (migration 0010's triggers).
    "usage": [
        dict(period="2026-11-12", key="", sessions=1, responses=1, input_tokens=50,
             output_tokens=10, cache_read_tokens=0, cache_write_tokens=0, total_tokens=60,
             cost=None, unpriced=1),
        dict(period="2026-11-11", key="", sessions=1, responses=1, input_tokens=800,
             output_tokens=2100, cache_read_tokens=90000, cache_write_tokens=0,
             total_tokens=92900, cost=0.1502, unpriced=0),
        dict(period="2026-11-10", key="", sessions=1, responses=2, input_tokens=300,
             output_tokens=1400, cache_read_tokens=150000, cache_write_tokens=18000,
             total_tokens=169700, cost=0.15, unpriced=0),
    ],
    "blocks": [
        dict(block_start=T0 + 2 * D, block_end=T0 + 2 * D + 300 * M, active=0, sessions=1,
             responses=1, total_tokens=60, cost=None, unpriced=1, last_at=T0 + 2 * D + 1 * M,
             cost_per_hour=None, tokens_per_minute=60, projected_cost=None),
        dict(block_start=T0 + D, block_end=T0 + D + 300 * M, active=0, sessions=1,
             responses=1, total_tokens=92900, cost=0.1502, unpriced=0, last_at=T0 + D + 2 * M,
             cost_per_hour=4.506, tokens_per_minute=46450, projected_cost=None),
        # 20 minutes from the block's start to its last message: 0.15 $ -> 0.45 $/h
        dict(block_start=T0, block_end=T0 + 300 * M, active=0, sessions=1, responses=2,
             total_tokens=169700, cost=0.15, unpriced=0, last_at=T0 + 20 * M,
             cost_per_hour=0.45, tokens_per_minute=8485, projected_cost=None),
    ],
    "cache": [
        # 240000 read / (1100 uncached + 240000 read + 18000 written)
        dict(model="claude-sonnet-4-5", responses=3, hit_pct=92.6, cache_read_tokens=240000,
             write_5m_tokens=10000, write_1h_tokens=8000, write_other_tokens=0,
             # m2 is a subagent's first response: its own cache, no idle gap to measure
             idle_rebuilds=0, idle_rebuild_tokens=0, idle_rebuild_cost=0.0, cost=0.3002,
             unpriced=0),
        dict(model="mystery-model", responses=1, hit_pct=0.0, cache_read_tokens=0,
             write_5m_tokens=0, write_1h_tokens=0, write_other_tokens=0, idle_rebuilds=0,
             idle_rebuild_tokens=0, idle_rebuild_cost=0.0, cost=None, unpriced=1),
    ],
    "context": [
        dict(session_id=S3, model="claude-opus-4-1", last_at=T0 + 2 * D + 1 * M, turns=1,
             peak_context=50, context_window=200000, peak_pct=0.0, turns_over_80pct=0,
             compactions=1, auto_compactions=1),
        dict(session_id=S2, model="anthropic/claude-sonnet-4-5", last_at=T0 + D + 2 * M,
             turns=1, peak_context=90800, context_window=200000, peak_pct=54.4,
             turns_over_80pct=0, compactions=0, auto_compactions=0),
        # 200 + 100000 + 10000 tokens of a 200000 - 33000 threshold
        dict(session_id=S1, model="claude-sonnet-4-5", last_at=T0 + 20 * M, turns=2,
             peak_context=110200, context_window=200000, peak_pct=66.0, turns_over_80pct=0,
             compactions=2, auto_compactions=1),
    ],
    "subagents": [
        dict(session_id=S1, subagent="a1f3", model="claude-sonnet-4-5", responses=1,
             total_tokens=58500, cost=0.05, unpriced=0, last_at=T0 + 20 * M),
    ],
}  # fmt: skip


def test_expected_rows_cover_every_report():
    assert set(EXPECTED) == set(REPORTS)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_report_rows_json(report_env, name):
    got = rows(report_env, name, *SINCE)
    assert got == EXPECTED[name]
    # Keys are the documented column names, in order, even where the first row has gaps.
    assert list(got[0]) == [c.name for c in REPORTS[name].columns]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_report_rows_ndjson(report_env, name):
    out = ok(report_env, name, *SINCE, "--format", "ndjson")
    assert [json.loads(line) for line in out.splitlines()] == EXPECTED[name]
    assert out.endswith("\n")


@pytest.mark.parametrize("name", list(EXPECTED))
def test_report_rows_csv(report_env, name):
    out = ok(report_env, name, *SINCE, "--format", "csv")
    table = list(csv.reader(io.StringIO(out)))
    assert table[0] == [c.name for c in REPORTS[name].columns]
    expected = [["" if v is None else str(v) for v in row.values()] for row in EXPECTED[name]]
    assert table[1:] == expected


@pytest.mark.parametrize("name", list(EXPECTED))
def test_report_rows_table(report_env, name):
    """The table is the report's first example in docs/queries.md, character for character."""
    command, expected = next(e for e in _doc_examples() if e[0][0] == name)
    assert command[1:] == list(SINCE)
    assert ok(report_env, *command) == expected


def test_every_example_in_the_docs_is_real_output(report_env):
    examples = _doc_examples()
    assert len(examples) > len(REPORTS)
    for command, expected in examples:
        assert ok(report_env, *command) == expected, command


def test_documented_refusals_are_the_real_messages(report_env):
    block = DOCS.read_text().split("Whatever the statement, the database cannot change:")[1]
    pairs = re.findall(r"\$ agentd query (.*)\n(Error: .*)\n", block.split("```")[1])
    assert len(pairs) == 3
    for command, message in pairs:
        assert fails(report_env, *shlex.split(command)) == message + "\n"


def test_documented_one_statement_slow_tools_agrees(report_env):
    """The window-function version in the docs gives the report's figures."""
    text = DOCS.read_text().split("The same report as one statement")[1]
    sql = re.search(r"```sql\n(.*?)```", text, re.S).group(1)
    report = rows(report_env, "slow-tools", *SINCE)
    assert {r.pop("percentiles") for r in report} == {"exact"}  # the one statement is exact
    assert rows(report_env, "--sql", sql, *SINCE, "--limit", "20") == report


def _doc_examples() -> list[tuple[list[str], str]]:
    """The examples in docs/queries.md: each command's arguments and its output."""
    found = re.findall(r"```text\n\$ agentd query (.*?)\n(.*?)```", DOCS.read_text(), re.S)
    return [(shlex.split(command), output) for command, output in found]


# --- filters --------------------------------------------------------------------------------


def test_default_window_is_the_last_7_days(report_env):
    result = q(report_env, "sessions")  # the data is from 2026-11-10..12, over 7 days ago
    assert result.returncode == 0
    assert result.stdout.splitlines()[0].split()[:3] == ["session_id", "source", "project"]
    assert len(result.stdout.splitlines()) == 2  # the header and its rule only
    assert result.stderr == "(no rows in the last 7d (widen it with --since))\n"
    assert DEFAULT_SINCE == "7d"


def test_since_and_until_select_a_window(report_env):
    got = rows(report_env, "sessions", "--since", "2026-11-11", "--until", "2026-11-12")
    assert [r["session_id"] for r in got] == [S2]
    # S2's error came at 2026-11-11 09:10 UTC; a time without a zone is local time (TZ=UTC here).
    got = rows(report_env, "errors", "--since", "2026-11-11T09:00Z", "--until", "2026-11-11T09:30")
    assert [r["session_id"] for r in got] == [S2]
    assert (
        rows(report_env, "errors", "--since", "2026-11-11T09:15", "--until", "2026-11-11T10:00")
        == []
    )


def test_source_filter(report_env):
    got = rows(report_env, "tool-errors", *SINCE, "--source", "opencode")
    assert [r["tool_name"] for r in got] == ["bash", "edit", "read"]
    assert rows(report_env, "compactions", *SINCE, "--source", "opencode") == []


def test_project_filter_takes_the_directory_and_below(report_env):
    got = rows(report_env, "sessions", *SINCE, "--project", SHOP)
    assert [r["session_id"] for r in got] == [S2, S1]
    got = rows(report_env, "sessions", *SINCE, "--project", f"{SHOP}/")
    assert [r["session_id"] for r in got] == [S2, S1]
    assert rows(report_env, "sessions", *SINCE, "--project", "/home/ana/src/sho") == []
    got = rows(report_env, "hot-files", *SINCE, "--project", f"{SHOP}/api")
    assert [(r["file_path"], r["edits"]) for r in got] == [
        (f"{SHOP}/api/server.ts", 1),
        (CART, 1),  # an edit of S2's, outside its project directory: still S2's
    ]


def test_project_filter_resolves_a_relative_path(report_env):
    result = subprocess.run(
        [sys.executable, "-m", "agentd", "query", "top-sessions", *SINCE, "--project", ".",
         "--format", "json"],
        env=report_env, cwd="/", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 3  # "/" holds every project


def test_project_root_is_no_filter(tmp_path):
    # The root holds every project; a session without one counts too, as with no --project
    # (the rollups file "no project" under "", which a "/" filter must not make a project).
    build_report_db(tmp_path / "agentd.db")
    conn = connect_sync(tmp_path / "agentd.db")
    at = T0 + 2 * D + 30 * M
    _insert(conn, "sessions", [dict(id="s-none", source="claude", status="ended", created_at=at,
                                    updated_at=at + M)])  # fmt: skip
    _insert(conn, "tools", [dict(id="n1", session_id="s-none", source="claude", tool_name="Bash",
                                 success=0, error_message="Exit code 1", duration_ms=10,
                                 started_at=at, created_at=at)])  # fmt: skip
    _insert(conn, "file_operations", [dict(id="n2", session_id="s-none", source="claude",
                                           file_path=CART, operation_type="edited",
                                           created_at=at)])  # fmt: skip
    conn.close()
    env = _env(tmp_path)
    for report in ("sessions", "tool-errors", "slow-tools", "top-sessions", "hot-files"):
        everything = rows(env, report, *SINCE)
        assert rows(env, report, *SINCE, "--project", "/") == everything, report
    assert [r for r in rows(env, "tool-errors", *SINCE) if r["tool_name"] == "Bash"][0][
        "calls"
    ] == 5


def test_session_filter(report_env):
    got = rows(report_env, "hot-files", *SINCE, "--session", S1)
    assert [(r["file_path"], r["edits"], r["reads"]) for r in got] == [
        (CART, 2, 1),
        (f"{SHOP}/README.md", 1, 0),
    ]
    got = rows(report_env, "slow-tools", *SINCE, "--session", S2)
    assert [(r["tool_name"], r["p50_ms"], r["p95_ms"]) for r in got] == [
        ("bash", 400, 600),
        ("edit", 30, 30),
        ("read", 20, 20),
    ]


def test_limit(report_env):
    assert [r["tool_name"] for r in rows(report_env, "slow-tools", *SINCE, "--limit", "2")] == [
        "Bash",
        "WebFetch",
    ]
    assert len(rows(report_env, "tool-errors", *SINCE, "--limit", "1")) == 1
    assert len(rows(report_env, "tool-errors", *SINCE, "--limit", "0")) == 7  # 0 = no limit
    # SQLite's largest integer is the largest N; one more is click's usage error, no traceback.
    assert len(rows(report_env, "tool-errors", *SINCE, "--limit", str(2**63 - 1))) == 7
    assert len(rows(report_env, "--sql", "SELECT 1", "--limit", str(2**63 - 1))) == 1
    for too_many in (str(2**63), "99999999999999999999"):
        for args in (["sessions"], ["slow-tools"], ["--sql", "SELECT 1"]):
            result = q(report_env, *args, "--limit", too_many)
            assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
            assert (
                f"Invalid value for '--limit': {too_many} is not in the range "
                "0<=x<=9223372036854775807." in result.stderr
            )


def test_show_sql_runs_as_is_through_sql(report_env):
    """What --show-sql prints is the SQL behind the report: --sql with the same options agrees."""
    for name in ("sessions", "hot-files", "tool-errors", "top-sessions", "compactions"):
        options = [*SINCE, "--project", SHOP, "--limit", "5"]
        sql = ok(report_env, name, *options, "--show-sql")
        assert sql.startswith("-- :since = ")
        via_sql = json.loads(ok(report_env, "--sql", sql, *options, "--format", "json"))
        assert via_sql == rows(report_env, name, *options)


def test_sql_from_stdin_and_named_parameters(report_env):
    out = ok(
        report_env,
        "--sql",
        "-",
        "--source",
        "claude",
        "--format",
        "csv",
        input="SELECT tool_name, count(*) AS n FROM tools WHERE source = :source "
        "GROUP BY tool_name ORDER BY n DESC, tool_name;\n",
    )
    assert out == "tool_name,n\nBash,4\nEdit,3\nRead,2\nWebFetch,1\n"


def test_sql_limit_and_duplicate_column_names(report_env):
    out = ok(report_env, "--sql", "SELECT id, id FROM tools ORDER BY id", "--limit", "2",
             "--format", "ndjson")  # fmt: skip
    assert [json.loads(line) for line in out.splitlines()] == [
        {"id": "c1", "id_2": "c1"},
        {"id": "c2", "id_2": "c2"},
    ]


def test_table_of_sql_results_aligns_numbers_right(report_env):
    out = ok(report_env, "--sql", "SELECT tool_name, duration_ms FROM tools WHERE id IN "
             "('t4', 'o1') ORDER BY id")  # fmt: skip
    assert out == (
        "tool_name  duration_ms\n"
        "---------  -----------\n"
        "read                20\n"
        "Bash              5200\n"
    )


def test_list_shows_one_line_per_report(report_env):
    lines = ok(report_env, "--list").splitlines()
    assert [line.split()[0] for line in lines] == list(REPORTS)
    for line, report in zip(lines, REPORTS.values(), strict=True):
        assert line.endswith(report.description)
    assert json.loads(ok(report_env, "--list", "--format", "json"))[0] == {
        "report": "sessions",
        "description": REPORTS["sessions"].description,
    }


def test_help_has_examples(report_env):
    out = ok(report_env, "--help")
    assert "Example:\n    agentd query --list\n" in out
    words = " ".join(out.split())
    assert f"default {DEFAULT_LIMIT})" in words and f"default {DEFAULT_SINCE})" in words


# --- bad input ------------------------------------------------------------------------------


def test_unknown_report_suggests_the_closest(report_env):
    assert "unknown report 'hotfiles'. Did you mean 'hot-files'?" in fails(report_env, "hotfiles")
    assert "Did you mean 'tool-errors'?" in fails(report_env, "tool-error")
    err = fails(report_env, "zzz")
    assert "unknown report 'zzz'." in err and "Did you mean" not in err
    assert "agentd query --list" in err


def test_bad_since(report_env):
    err = fails(report_env, "sessions", "--since", "last tuesday")
    assert "bad --since: 'last tuesday' is not a time" in err
    assert "7d" in err and "2026-11-01" in err
    assert "bad --until" in fails(report_env, "sessions", "--until", "7x")


def test_sql_syntax_error(report_env):
    err = fails(report_env, "--sql", "SELEC * FROM tools")
    assert err == 'Error: SQL error: near "SELEC": syntax error\n'
    assert "no such table: nope" in fails(report_env, "--sql", "SELECT * FROM nope")
    assert "one statement at a time" in fails(report_env, "--sql", "SELECT 1; SELECT 2")
    assert "no SQL given" in fails(report_env, "--sql", "-", input="")


def test_missing_database_says_how_to_start(tmp_path):
    env = _env(tmp_path)
    for args in (["sessions"], ["--sql", "SELECT 1"]):
        err = fails(env, *args)
        assert f"no database at {tmp_path / 'agentd.db'}" in err
        assert "agentd start" in err
    assert not (tmp_path / "agentd.db").exists()  # looking did not create it


def test_a_file_that_is_not_an_agentd_database(tmp_path):
    plain = tmp_path / "agentd.db"
    sqlite3.connect(plain).execute("CREATE TABLE t (x)").connection.close()
    assert "is not an agentd database" in fails(_env(tmp_path), "sessions")
    (tmp_path / "agentd.db").write_text("not sqlite at all " * 100)
    for args in (["--sql", "SELECT * FROM sqlite_master"], ["sessions"], ["usage"]):
        err = fails(_env(tmp_path), *args)
        # The one line prune, vacuum and reprice print (db/preflight.py), not SQLite's words.
        assert err == (
            f"Error: the database {plain} is not an SQLite database (damaged, or another kind "
            "of file): move it away (or restore a backup) and start again, or point AGENTD_DB "
            "at another file; agentd leaves it as it is\n"
        )


@pytest.mark.parametrize("args", [["sessions"], ["blocks"], ["--sql", "SELECT * FROM tools"]])
def test_a_truncated_or_damaged_database_is_one_line(tmp_path, args):
    db = tmp_path / "agentd.db"
    build_report_db(db)
    whole = db.read_bytes()
    db.write_bytes(whole[:4096])  # a copy cut short: the header says how long it was
    err = fails(_env(tmp_path), *args)
    assert err.startswith(f"Error: the database {db} is truncated (4096 of {len(whole)} bytes)")
    assert err.count("\n") == 1
    # A whole file whose schema page is damaged: SQLite finds it at the first read.
    db.write_bytes(whole[:100] + b"\xff" * 3000 + whole[3100:])
    err = fails(_env(tmp_path), *args)
    assert err == (
        f"Error: the database {db} cannot be read (database disk image is malformed): move it "
        "away (or restore a backup) and start again, or point AGENTD_DB at another file; agentd "
        "leaves it as it is\n"
    )


def test_a_directory_in_place_of_the_database(tmp_path):
    (tmp_path / "agentd.db").mkdir()
    err = fails(_env(tmp_path), "sessions")
    assert err.startswith(f"Error: the database {tmp_path / 'agentd.db'} is a directory: ")


ESCAPES = "\x1b]0;PWNED\x07\x1b[2J"


def test_captured_escape_sequences_never_reach_the_terminal(writable_copy):
    """A cwd, model, tool name or error holding escape sequences (window title, clear screen)
    or bidi controls is shown with them written out in a table; json carries them exactly."""
    db = writable_copy / "agentd.db"
    conn = connect_sync(db)
    _insert(conn, "sessions", [dict(
        id="e5c00000-0000-4000-8000-000000000001", source="claude", project_path=f"/p{ESCAPES}",
        model=f"m\u202e{ESCAPES}", status="ended", created_at=T0, updated_at=T0 + M)])  # fmt: skip
    _insert(conn, "tools", [dict(
        id="e1", session_id="e5c00000-0000-4000-8000-000000000001", source="claude",
        tool_name=f"T{ESCAPES}", success=0, error_message=f"boom{ESCAPES}\x9b", duration_ms=5,
        started_at=T0, created_at=T0)])  # fmt: skip
    conn.close()
    env = _env(writable_copy)
    for report in ("tool-errors", "sessions", "slow-tools"):
        table = ok(env, report, *SINCE, "--limit", "0")
        assert "\\x1b]0;PWNED\\x07\\x1b[2J" in table, table
        assert all(c.isprintable() for c in table if c != "\n"), repr(table)
    assert "m\\u202e\\x1b]0;PWNED" in ok(env, "sessions", *SINCE, "--limit", "0")
    assert "boom\\x1b]0;PWNED\\x07\\x1b[2J\\x9b" in ok(env, "--sql", "SELECT * FROM tools")
    (tool,) = [r for r in rows(env, "tool-errors", *SINCE) if r["tool_name"].startswith("T")]
    assert tool["tool_name"] == f"T{ESCAPES}"  # json: exactly as stored


def test_a_block_that_starts_in_the_future_is_not_active(tmp_path):
    """A transcript stamped 9999-12-30 (a wrong clock, a bogus line) makes a block that would
    otherwise be "active" with a projected cost for ever: it is shown, not active, unprojected.
    The block running now still is active."""
    conn = connect_sync(tmp_path / "agentd.db")
    now = int(time.time() * 1000)
    future = 253402164000000  # 9999-12-30 10:00 UTC
    conn.execute("INSERT INTO sessions (id, source, created_at) VALUES ('s', 'claude', ?)", (now,))
    conn.executemany(
        "INSERT INTO messages (id, session_id, source, role, model, prompt_tokens,"
        " completion_tokens, computed_cost, cost_source, created_at)"
        " VALUES (?, 's', 'claude', 'assistant', 'claude-sonnet-4-5', 100, 10, 0.5, 'computed', ?)",
        [("now", now - 60_000), ("future", future)],
    )
    conn.close()
    later, current = rows(_env(tmp_path), "blocks", "--since", "all")
    assert later["block_start"] == future and later["active"] == 0
    assert later["projected_cost"] is None
    assert current["block_start"] <= now and current["active"] == 1
    assert current["projected_cost"] is not None


# --- read-only by construction --------------------------------------------------------------

REFUSED = [
    "INSERT INTO sessions (id, source) VALUES ('x', 'claude')",
    "UPDATE tools SET success = 1",
    "DELETE FROM tools",
    "DROP TABLE tools",
    "CREATE TABLE x (a)",
    "CREATE TEMP TABLE x (a)",
    "REPLACE INTO events (id, source, received_at, payload) VALUES ('x', 'claude', 0, '{}')",
    "PRAGMA user_version = 7",
    "PRAGMA journal_mode = DELETE",
    "PRAGMA query_only = 0",
    "PRAGMA wal_checkpoint(TRUNCATE)",
    "VACUUM",
    "REINDEX",
    "ANALYZE",
]


@pytest.fixture
def writable_copy(tmp_path):
    """A database of its own, so that a write that got through would show."""
    build_report_db(tmp_path / "agentd.db")
    return tmp_path


@pytest.mark.parametrize("sql", REFUSED)
def test_writes_are_refused(writable_copy, sql):
    env = _env(writable_copy)
    before = (writable_copy / "agentd.db").read_bytes()
    assert "Error: refused: " in fails(env, "--sql", sql)
    assert (writable_copy / "agentd.db").read_bytes() == before
    assert ok(env, "--sql", "SELECT count(*) AS n FROM tools", "--format", "csv") == "n\n14\n"


def test_attach_and_vacuum_into_are_refused(writable_copy):
    env = _env(writable_copy)
    other = writable_copy / "other.db"
    err = fails(env, "--sql", f"ATTACH '{other}' AS other")
    assert "refused: ATTACH, DETACH and VACUUM INTO are not allowed" in err
    assert "refused" in fails(env, "--sql", f"VACUUM INTO '{other}'")
    assert not other.exists()


def test_reading_pragmas_still_work(report_env):
    out = ok(report_env, "--sql", "PRAGMA table_info(sessions)", "--format", "json")
    assert json.loads(out)[0]["name"] == "id"
    out = ok(report_env, "--sql", "SELECT name FROM pragma_table_list WHERE name = 'tools'")
    assert "tools" in out
    assert (
        ok(report_env, "--sql", "PRAGMA journal_mode", "--format", "csv") == "journal_mode\nwal\n"
    )


# --- while the daemon runs and writes --------------------------------------------------------


def test_sql_while_the_daemon_writes(daemon, agentd_env):
    """Readers never block on the writer (WAL), and each read sees a committed state."""
    total = 2000
    failures: list[BaseException] = []

    def ingest() -> None:
        try:
            with Client(daemon.config.socket_path, timeout=10.0) as client:
                for n in range(total):
                    payload = {"session_id": f"s{n % 7}", "hook_event_name": "Stop", "n": n}
                    client.call("ingest", {"source": "claude", "payload": payload})
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            failures.append(e)

    writer = threading.Thread(target=ingest)
    writer.start()
    seen = []
    try:
        while writer.is_alive() or not seen:
            out = ok(agentd_env, "--sql", "SELECT count(*) AS n FROM events", "--format", "csv")
            seen.append(int(out.split()[1]))
    finally:
        writer.join(60)
    assert not failures
    assert seen == sorted(seen)  # monotonic: committed events only, never a partial state
    assert any(n < total for n in seen)  # at least one read overlapped the writes
    final = ok(agentd_env, "--sql", "SELECT count(*) AS n, count(DISTINCT session_id) AS s "
               "FROM events", "--format", "json")  # fmt: skip
    assert json.loads(final) == [{"n": total, "s": 7}]
    # A report too, against the live database (the simple payloads fill no typed tables).
    assert ok(agentd_env, "tool-errors", "--since", "all", "--format", "json") == "[]\n"
    assert daemon.alive


def test_query_works_after_the_daemon_stopped(daemon, agentd_env):
    daemon.ingest("claude", {"session_id": "s1", "hook_event_name": "Stop"})
    daemon.stop()
    out = ok(agentd_env, "--sql", "SELECT kind, session_id FROM events", "--format", "csv")
    assert out == "kind,session_id\nStop,s1\n"


# --- big results stream -----------------------------------------------------------------------

TEN_MILLION = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000000) "
    "SELECT i FROM n"
)


# Runs argv with stdout inherited and reports the peak RSS of that child on stderr. A child forked
# straight from pytest would start with pytest's own resident pages counted in its ru_maxrss
# (hundreds of MiB late in a suite), so the measuring parent must be small.
_PEAK_RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[1:])\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "sys.stderr.write(f'peak_kib={peak}\\n')\n"
    "sys.exit(code)\n"
)


def test_ten_million_rows_stream_in_bounded_memory(report_env):
    """10 000 000 rows go through a pipe while the child's peak RSS stays small."""
    argv = [sys.executable, "-m", "agentd", "query", "--sql", TEN_MILLION, "--format", "csv"]
    with subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _PEAK_RSS_WRAPPER, *argv],
        env=report_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        lines, last = 0, b""
        while chunk := process.stdout.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk
        stderr = process.stderr.read().decode()
    assert process.returncode == 0, stderr
    assert lines == 10_000_001  # the header and ten million rows
    assert last.endswith(b"\n10000000\n")
    peak_mib = int(stderr.rsplit("peak_kib=", 1)[1]) / 1024  # Linux reports KiB
    assert peak_mib < 150, f"peak RSS {peak_mib:.0f} MiB"
    print(f"10M rows: peak RSS {peak_mib:.1f} MiB")


def test_closed_pipe_is_not_an_error(report_env):
    """`agentd query ... | head -1`: the reader goes away; no traceback, exit 0, and it stops.
    The statement never ends by itself: only noticing the closed pipe stops it (no timing)."""
    endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i FROM n"
    for fmt in ("csv", "table", "json", "ndjson"):
        argv = [sys.executable, "-m", "agentd", "query", "--sql", endless, "--format", fmt]
        with subprocess.Popen(
            argv, env=report_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as process:
            assert process.stdout is not None and process.stderr is not None
            try:
                assert process.stdout.readline()
                process.stdout.close()
                code = process.wait(60)  # a child that computes on fails here, and is killed
                stderr = process.stderr.read().decode()
                assert code == 0, stderr
            finally:
                if process.poll() is None:  # it computed on: stop it, the test has failed
                    process.kill()
        assert stderr == ""


def test_ctrl_c_stops_a_long_statement(report_env):
    """SIGINT mid-statement: "Aborted!" and exit 1, as click does for any interrupt."""
    endless = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    )
    argv = [sys.executable, "-m", "agentd", "query", "--sql", endless]
    with subprocess.Popen(argv, env=report_env, stderr=subprocess.PIPE, text=True) as process:
        time.sleep(2)  # well into the statement
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 1 and stderr.endswith("Aborted!\n"), stderr
    assert "Traceback" not in stderr


# --- the pieces, without the CLI --------------------------------------------------------------


def test_engine_raises_interrupted_not_a_click_exception(report_env):
    conn = connect_readonly(Path(report_env["AGENTD_HOME"]) / "agentd.db")
    timer = threading.Timer(0.3, conn.interrupt)
    timer.start()
    try:
        with pytest.raises(Interrupted):
            _, batches = execute(conn, TEN_MILLION + " ORDER BY i DESC", {})
            for _ in batches:
                pass
    finally:
        timer.cancel()
        conn.close()


def test_parse_time_forms():
    now = T0 / 1000
    assert parse_time("7d", now=now) == T0 - 7 * D
    assert parse_time("24h", now=now) == T0 - D
    assert parse_time("90m", now=now) == T0 - 90 * M
    assert parse_time("1d12h", now=now) == T0 - D - 12 * 60 * M
    assert parse_time("2w", now=now) == T0 - 14 * D
    assert parse_time("now", now=now) == T0
    assert parse_time("all", now=now) is None
    assert parse_time("2026-11-10T09:00Z") == T0
    assert parse_time("2026-11-10T10:00+01:00") == T0
    assert parse_time("1794301200000") == T0
    for bad in ("", "7", "7x", "-3d", "yesterdayish", "2026-13-01"):
        with pytest.raises(TimeError):
            parse_time(bad, now=now)


def test_render_drops_the_lines_of_filters_not_given():
    sql = REPORTS["errors"].sql
    plain = render(sql, {"since": None, "limit": 20})
    assert ":since" not in plain and ":source" not in plain and ":session" not in plain
    assert "LIMIT :limit" in plain
    narrowed = render(sql, {"since": 1, "session": "s", "limit": 20})
    assert "e.created_at >= :since" in narrowed and "e.session_id = :session" in narrowed
    assert ":until" not in narrowed


def test_every_report_is_documented():
    """docs/queries.md shows each report's SQL verbatim and documents each column."""
    text = DOCS.read_text()
    for report in REPORTS.values():
        section = re.search(rf"\n## `{report.name}`\n(.*?)(?=\n## |\Z)", text, re.S)
        assert section, report.name
        body = section.group(1)
        assert report.description in body
        assert report.sql in body, f"{report.name}: the SQL in the docs differs"
        if report.percentiles:
            assert PERCENTILE_SQL in body
        for column in report.columns:
            assert f"| `{column.name}` |" in body, f"{report.name}.{column.name}"
    assert query_command.help and "Example:" in query_command.help
