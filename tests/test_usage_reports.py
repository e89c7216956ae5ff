"""The usage reports' windows (query/usage_reports.py) as users run them: the real CLI in a
subprocess on a database made by the real migrations, filled with messages whose hourly rollup
the real triggers keep. The 5-hour blocks are anchored on the history, not on --since; an empty
window has no rows; --show-sql runs back as printed; options a report does not take are refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from agentd.db.store import connect_sync
from agentd.query.times import TimeError, parse_time

M = 60_000
H = 3_600_000
DAY1 = 1794268800000  # 2026-11-10 00:00 UTC
DAY2 = DAY1 + 24 * H
DAY3 = DAY2 + 24 * H
A = "aaaa0000-1111-4a2b-9c3d-00000000000a"
B = "bbbb0000-1111-4a2b-9c3d-00000000000b"
C = "ses_cccc0000opencode"
D = "dddd0000-1111-4a2b-9c3d-00000000000d"


def _messages() -> list[tuple[str, str, int, float | None]]:
    """(session, source, created_at, cost): cost None is a model without a price."""
    day1 = [
        # One block, 11:00-16:00: two sessions, each with messages in three of its hours.
        (A, "claude", DAY1 + 11 * H + 12 * M, 0.25),
        (B, "claude", DAY1 + 11 * H + 40 * M, 0.25),
        (A, "claude", DAY1 + 12 * H + 30 * M, 0.25),
        (B, "claude", DAY1 + 12 * H + 50 * M, 0.25),
        (A, "claude", DAY1 + 13 * H + 5 * M, 0.25),
        (B, "claude", DAY1 + 13 * H + 20 * M, None),
        # 16:10 is after 16:00, the block's end: a new block, 16:00-21:00.
        (A, "claude", DAY1 + 16 * H + 10 * M, 0.5),
        (C, "opencode", DAY1 + 17 * H, 0.5),
    ]
    # A message every hour of day 2, no 5-hour pause: blocks at 00, 05, 10, 15 and 20.
    day2 = [(A, "claude", DAY2 + h * H + 30 * M, 0.01) for h in range(24)]
    day3 = [(D, "claude", DAY3 + 9 * H + 1 * M, 0.1), (D, "claude", DAY3 + 9 * H + 20 * M, 0.1)]
    return day1 + day2 + day3


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("usage-reports")
    conn = connect_sync(home / "agentd.db")
    conn.executemany(
        "INSERT INTO sessions (id, source, project_path, created_at, updated_at)"
        " VALUES (?, ?, '/home/ana/src/shop', ?, ?)",
        [(s, src, DAY1, DAY3) for s, src in ((A, "claude"), (B, "claude"), (C, "opencode"), (D, "claude"))],
    )  # fmt: skip
    conn.executemany(
        "INSERT INTO messages (id, session_id, source, role, model, prompt_tokens,"
        " completion_tokens, computed_cost, cost_source, created_at)"
        " VALUES (?, ?, ?, 'assistant', ?, 100, 10, ?, ?, ?)",
        [
            (f"m{n}", s, src, "claude-sonnet-4-5" if cost is not None else "mystery-model",
             cost, "computed" if cost is not None else "unknown", at)
            for n, (s, src, at, cost) in enumerate(_messages())
        ],
    )  # fmt: skip
    # A subagent's response, moved to it by the real update trigger.
    conn.execute("UPDATE messages SET agent_id = 'sub1' WHERE id = 'm12'")
    conn.execute(
        "INSERT INTO compaction_events (id, session_id, source, trigger, tokens_before,"
        " tokens_after, created_at) VALUES ('k1', ?, 'claude', 'auto', 150000, 30000, ?)",
        (D, DAY3 + 9 * H + 30 * M),
    )
    conn.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTD_")}
    return {**env, "AGENTD_HOME": str(home), "TZ": "UTC"}  # the table shows local times


def q(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentd", "query", *args],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def rows(env: dict[str, str], *args: str) -> list[dict]:
    result = q(env, *args, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def at(ms: int) -> str:
    return str(ms)  # an epoch in ms: exact to the millisecond


def blocks(env: dict[str, str], *args: str) -> list[tuple[int, int, int, float | None]]:
    return [
        (r["block_start"], r["sessions"], r["responses"], r["cost"])
        for r in rows(env, "blocks", "--limit", "0", *args)
    ]


# --- blocks ---------------------------------------------------------------------------------


def test_a_block_counts_each_session_once(env):
    """Two sessions with messages in three hours of one block are two sessions, not six."""
    got = blocks(env, "--source", "claude", "--since", at(DAY1), "--until", at(DAY2))
    assert got == [(DAY1 + 16 * H, 1, 1, 0.5), (DAY1 + 11 * H, 2, 6, 1.25)]
    # All agents: the 16:00 block has A (claude) and C (opencode).
    got = blocks(env, "--since", at(DAY1), "--until", at(DAY2))
    assert got[0] == (DAY1 + 16 * H, 2, 2, 1.0)


def test_since_chooses_the_blocks_shown_not_where_they_start(env):
    whole = (DAY1 + 11 * H, 2, 6, 1.25)
    for since in (DAY1 + 11 * H + 30 * M, DAY1 + 12 * H, DAY1 + 15 * H + 59 * M):
        got = blocks(env, "--source", "claude", "--since", at(since), "--until", at(DAY1 + 16 * H))
        assert got == [whole], since  # the 11:12 message is in it, the block starts at 11:00
    # A block overlaps [since, until) to the millisecond: it ends at 16:00, exclusive.
    assert blocks(env, "--source", "claude", "--since", at(DAY1 + 16 * H), "--until", at(DAY2)) == [
        (DAY1 + 16 * H, 1, 1, 0.5)
    ]
    assert (
        blocks(env, "--source", "claude", "--since", at(DAY1), "--until", at(DAY1 + 11 * H)) == []
    )
    got = blocks(env, "--source", "claude", "--since", at(DAY1), "--until", at(DAY1 + 11 * H + 1))
    assert got == [whole]  # shown whole, messages after --until included


def test_blocks_follow_the_history_through_hours_without_a_pause(env):
    """Day 2 has a message every hour: blocks start at 00, 05, 10, 15 and 20 however late
    --since falls, found by looking back past the day's start."""
    every = [(DAY2 + h * H, 1, 5 if h < 20 else 4, None) for h in (20, 15, 10, 5, 0)]
    full = blocks(env, "--source", "claude", "--since", at(DAY2), "--until", at(DAY3))
    assert [(s, n, r) for s, n, r, _ in full] == [(s, n, r) for s, n, r, _ in every]
    for since in range(DAY2, DAY3, 2 * H + 17 * M):
        got = blocks(env, "--source", "claude", "--since", at(since), "--until", at(DAY3))
        assert got == [b for b in full if b[0] + 5 * H > since], since
    got = blocks(env, "--source", "claude", "--since", at(DAY2 + 13 * H + 30 * M),
                 "--until", at(DAY2 + 16 * H))  # fmt: skip
    assert [b[0] for b in got] == [DAY2 + 15 * H, DAY2 + 10 * H]
    # --since all: the same blocks, every one of them.
    assert blocks(env, "--source", "claude", "--since", "all")[1:6] == full


def test_blocks_with_since_after_every_message(env):
    assert blocks(env, "--since", at(DAY3 + 20 * H)) == []


# --- context --------------------------------------------------------------------------------


def test_context_is_bounded_by_until(env):
    def context(until: int) -> dict:
        (row,) = rows(env, "context", "--since", at(DAY3 + 9 * H), "--until", at(until))
        assert row["session_id"] == D
        return row

    early = context(DAY3 + 9 * H + 10 * M)  # the 09:20 message and the 09:30 compaction: after
    assert (early["last_at"], early["compactions"], early["auto_compactions"]) == (
        DAY3 + 9 * H + 1 * M, 0, 0,
    )  # fmt: skip
    middle = context(DAY3 + 9 * H + 25 * M)
    assert (middle["last_at"], middle["compactions"]) == (DAY3 + 9 * H + 20 * M, 0)
    late = context(DAY3 + 9 * H + 40 * M)
    assert (late["last_at"], late["compactions"], late["auto_compactions"]) == (
        DAY3 + 9 * H + 20 * M, 1, 1,
    )  # fmt: skip
    # Every message of the hour came after --until: no message in the window, no row.
    assert rows(env, "context", "--since", at(DAY3 + 9 * H), "--until", at(DAY3 + 9 * H + 1)) == []


# --- windows --------------------------------------------------------------------------------

USAGE_REPORTS = ("usage", "blocks", "cache", "context", "subagents")


@pytest.mark.parametrize("name", USAGE_REPORTS)
def test_an_empty_window_has_no_rows(env, name):
    moment = at(DAY2 + 4 * H + 40 * M)  # inside an hour with messages, a subagent's among them
    assert rows(env, name, "--since", moment, "--until", moment) == []
    assert q(env, name, "--since", "now", "--until", "now").stderr == "(no rows)\n"


def test_a_window_that_ends_before_it_starts_is_a_usage_error(env):
    result = q(env, "usage", "--since", "1h", "--until", "2h")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Error: --since 1h is after --until 2h" in result.stderr
    result = q(env, "--sql", "SELECT 1", "--since", at(DAY2), "--until", at(DAY1))
    assert result.returncode == 2 and "is after --until" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("--since", "99999999999999999999"),
        ("--until", "99999999999999999999"),
        ("--since", "99999999999999999999w"),
        ("--since", "1" + "0" * 400 + "d"),  # a float's infinity
        ("--until", "9" * 5000),  # past int()'s digit limit
        ("--since", "0001-01-01"),  # before 0001-01-02, the first time every zone can name
    ],
)
def test_a_time_out_of_range_is_a_clear_error(env, args):
    for name in ("usage", "blocks", "sessions"):
        result = q(env, name, *args)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        option = args[0]
        assert result.stderr.startswith(f"Error: bad {option}: "), result.stderr
        assert "is out of range: a time from 0001-01-02 to 9999-12-30" in result.stderr


def test_prune_refuses_a_time_out_of_range(env):
    result = subprocess.run(
        [sys.executable, "-m", "agentd", "prune", "--older-than", "99999999999999999999"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "is out of range" in result.stderr


def test_parse_time_range_and_short_epochs():
    for bad in ("99999999999999999999", "99999999999999999999w", "9999-12-31T23:59"):
        with pytest.raises(TimeError, match="out of range"):
            parse_time(bad)
    for short in ("0", "1", "17943012000"):
        with pytest.raises(TimeError, match=r"an epoch in milliseconds \(12 digits or more"):
            parse_time(short)
    assert parse_time("100000000000") == 100000000000
    assert parse_time("9999-12-29T00:00Z") == 253402041600000
    # Digits of other scripts are not durations ("١٢٣d" was taken as 123 days).
    for foreign in ("١٢٣d", "１２h", "1d٢h"):
        with pytest.raises(TimeError):
            parse_time(foreign)


# --- --show-sql -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("usage", "--by", "model", "--period", "week"),
        ("usage", "--by", "machine", "--period", "month"),
        ("usage", "--by", "project"),
        ("usage",),
        ("blocks",),
        ("blocks", "--source", "claude"),
        ("cache",),
        ("context",),
        ("subagents",),
    ],
)
def test_show_sql_runs_back_with_the_filters_alone(env, args):
    """The printed SQL run through --sql with the same filters (not the report's own options)
    gives the report's rows."""
    name, *options = args
    report_only = [o for o in options if o in ("--by", "--period")]
    report_only += [options[options.index(o) + 1] for o in list(report_only)]
    filters = [o for o in options if o not in report_only]
    window = ["--since", at(DAY1 + 12 * H), "--until", at(DAY3), *filters]
    printed = q(env, name, *options, *window, "--show-sql")
    assert printed.returncode == 0, printed.stderr
    expected = rows(env, name, *options, *window)
    assert expected  # the comparison is not between two empty lists
    via_sql = subprocess.run(
        [sys.executable, "-m", "agentd", "query", "--sql", "-", *window, "--format", "json"],
        env=env, input=printed.stdout, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert via_sql.returncode == 0, via_sql.stderr
    assert json.loads(via_sql.stdout) == expected


# --- options a report does not take ---------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("blocks", "--by", "model"),
        ("blocks", "--period", "week"),
        ("blocks", "--period", "day"),  # the default, but given: still not blocks'
        ("cache", "--by", "agent"),
        ("sessions", "--period", "month"),
    ],
)
def test_an_option_the_report_does_not_take_is_refused(env, args):
    result = q(env, *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"Error: {args[1]} is not an option of the {args[0]} report (only usage takes it)" in (
        result.stderr
    )


def test_usage_and_sql_take_period_and_by(env):
    got = rows(env, "usage", "--by", "agent", "--period", "month", "--since", at(DAY1))
    assert [(r["period"], r["key"], r["sessions"]) for r in got] == [
        ("2026-11", "claude", 3),
        ("2026-11", "opencode", 1),
    ]
    sql = "SELECT :period AS period, :by AS split"
    assert rows(env, "--sql", sql, "--period", "week", "--by", "model") == [
        {"period": "week", "split": "model"}
    ]


# --- cache ----------------------------------------------------------------------------------


def test_cache_counts_the_unpriced_responses(env):
    got = rows(env, "cache", "--since", at(DAY1), "--until", at(DAY2))
    assert [(r["model"], r["cost"], r["unpriced"]) for r in got] == [
        ("claude-sonnet-4-5", 2.25, 0),
        ("mystery-model", None, 1),
    ]
