"""Session status and outcome follow the events' own time, not the order they arrive in.

A real daemon; events sent as the hook sends them, with the time the hook saw them
(`received_at`), as a spool drained late replays them.
"""

from __future__ import annotations

import subprocess
import sys

from conftest import query_db

SID = "5e5510e0-0000-4000-8000-00000000c0de"


def hook(kind: str, **fields):
    return {"session_id": SID, "hook_event_name": kind, "cwd": "/tmp/p", **fields}


def session(daemon) -> dict:
    (row,) = query_db(daemon.config.db_path, "SELECT * FROM sessions WHERE id = ?", (SID,))
    return row


def test_a_late_busy_does_not_beat_a_newer_idle(daemon):
    daemon.ingest("claude", hook("UserPromptSubmit", prompt="go"), received_at=1000)
    daemon.ingest("claude", hook("Stop"), received_at=3000)
    daemon.ingest("claude", hook("PreToolUse", tool_name="Bash", tool_use_id="t1"), 2000)
    s = session(daemon)
    assert (s["status"], s["status_at"], s["outcome"], s["outcome_at"]) == (
        "idle",
        3000,
        "ok",
        3000,
    )
    daemon.ingest("claude", hook("UserPromptSubmit", prompt="again"), received_at=4000)
    assert (session(daemon)["status"], session(daemon)["outcome"]) == ("busy", "ok")


def test_stop_failure_is_the_outcome_and_the_last_error_in_query_sessions(daemon, agentd_env):
    failure = hook(
        "StopFailure",
        prompt_id="p1",
        error="server_error",
        last_assistant_message="API Error: 500 fake internal error",
    )
    daemon.ingest("claude", failure, received_at=5000)
    daemon.ingest("claude", hook("Stop"), received_at=4000)  # an older turn, drained late
    daemon.ingest("claude", hook("SessionEnd", reason="other"), received_at=6000)
    s = session(daemon)
    assert (s["status"], s["outcome"]) == ("ended", "error")
    assert s["last_error"] == "server_error: API Error: 500 fake internal error"
    out = subprocess.run(
        [sys.executable, "-m", "agentd", "query", "sessions", "--since", "1970-01-01",
         "--format", "json"],
        env=agentd_env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    import json

    (row,) = json.loads(out.stdout)
    assert (row["status"], row["outcome"], row["last_error"]) == (
        "ended",
        "error",
        "server_error: API Error: 500 fake internal error",
    )
    # A later turn that goes well: ok again, and the last error stays readable.
    daemon.ingest("claude", hook("Stop"), received_at=7000)
    s = session(daemon)
    assert (s["outcome"], s["last_error_at"]) == ("ok", 5000)


def test_an_interrupted_tool_makes_the_outcome_interrupted(daemon):
    daemon.ingest("claude", hook("UserPromptSubmit", prompt="go"), received_at=1000)
    interrupted = hook(
        "PostToolUseFailure",
        tool_name="Bash",
        tool_use_id="t1",
        error="[Request interrupted by user for tool use]",
        is_interrupt=True,
    )
    daemon.ingest("claude", interrupted, received_at=2000)
    assert session(daemon)["outcome"] == "interrupted"
