"""Capture from the real Claude Code CLI (the pinned 2.1.332), driven offline by a scripted fake model.

The hooks are installed the way a user installs them (`agentd install claude --scope project`),
the daemon is real, and each test asserts the rows that land in every table.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from realclients.agents import Scratch, parse_claude_json, run_claude
from realclients.fake_model import FakeModelServer, http_error, text, tool

from conftest import query_db, spool_empty, wait_for

pytestmark = pytest.mark.realclient

WRITE_CONTENT = "line one\nline two\nline three\n"


@pytest.fixture
def scratch(agentd_env):
    with Scratch.create(prefix="cc-") as s:
        install = subprocess.run(
            [sys.executable, "-m", "agentd", "install", "claude", "--scope", "project",
             "--project-dir", str(s.proj)],
            env=dict(agentd_env, HOME=str(s.home)), capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert install.returncode == 0, install.stderr
        yield s


def agent_env(agentd_env: dict[str, str], **extra: str) -> dict[str, str]:
    """What the hooks need to find agentd: its home, and autostart off (a hook whose ack is late
    must not start a daemon beside the test's). Nothing else of ours leaks into Claude."""
    return {"AGENTD_HOME": agentd_env["AGENTD_HOME"], "AGENTD_AUTOSTART": "0", **extra}


def tools_script(proj: Path) -> list[dict]:
    note = str(proj / "note.txt")
    return [
        tool("Bash", {"command": "echo hello-from-bash", "description": "Say hello"}),
        tool("Write", {"file_path": note, "content": WRITE_CONTENT}),
        tool("Read", {"file_path": note}),
        tool("Edit", {"file_path": note, "old_string": "line two", "new_string": "line 2"}),
        tool("Bash", {"command": "echo oops >&2; exit 3", "description": "Fail on purpose"}),
        text("All done."),
    ]


def run_tools_scenario(scratch: Scratch, env: dict[str, str]) -> str:
    with FakeModelServer(tools_script(scratch.proj)) as server:
        result = run_claude(scratch, server, "please do the scripted steps", extra_env=env)
    assert result.returncode == 0, result.stderr
    return parse_claude_json(result)["session_id"]


def rows(db: Path, sql: str, *params) -> list[dict]:
    return query_db(db, sql, params)


def session_ended(config, session: str) -> bool:
    """The last hooks of a finished run are in: each hook event is acked, or spooled (its 0.5 s
    budget missed on a loaded machine) and then drained by the daemon."""
    kinds = {r["kind"] for r in rows(config.db_path, "SELECT kind FROM events WHERE session_id = ?",
                                     session)}  # fmt: skip
    status = rows(config.db_path, "SELECT status FROM sessions WHERE id = ?", session)
    ended = status == [{"status": "ended"}]
    return spool_empty(config) and {"Stop", "SessionEnd"} <= kinds and ended


def assert_tools_scenario_rows(db: Path, session: str, proj: Path) -> None:
    note = str(proj / "note.txt")
    (s,) = rows(db, "SELECT * FROM sessions WHERE id = ?", session)
    assert s["source"] == "claude"
    assert s["project_path"] == str(proj) and s["project_name"] == proj.name
    assert s["status"] == "ended" and s["end_reason"] == "other"
    assert s["permission_mode"] == "bypassPermissions"
    assert (s["tool_call_count"], s["prompt_count"]) == (5, 1)
    assert s["created_at"] <= s["updated_at"] and s["ended_at"] >= s["created_at"]

    tools = rows(db, "SELECT * FROM tools WHERE session_id = ? ORDER BY started_at", session)
    assert [(t["tool_name"], t["success"]) for t in tools] == [
        ("Bash", 1), ("Write", 1), ("Read", 1), ("Edit", 1), ("Bash", 0),
    ]  # fmt: skip
    hello, write, read, edit, failing = tools
    assert json.loads(hello["tool_input"])["command"] == "echo hello-from-bash"
    assert json.loads(hello["tool_output"])["stdout"] == "hello-from-bash"
    assert (write["file_path"], read["file_path"], edit["file_path"]) == (note, note, note)
    assert failing["exit_code"] == 3 and failing["error_message"].startswith("Exit code 3")
    assert "oops" in failing["error_message"] and failing["interrupted"] == 0
    for t in tools:
        assert t["id"].startswith(f"{session}:")
        assert t["duration_ms"] is not None and t["duration_ms"] >= 0
        assert t["started_at"] <= t["ended_at"]
        assert t["agent_id"] is None

    ops = rows(db, "SELECT tool_id, file_path, operation_type, lines_added, lines_removed "
                   "FROM file_operations WHERE session_id = ? ORDER BY created_at", session)  # fmt: skip
    assert ops == [
        {"tool_id": write["id"], "file_path": note, "operation_type": "created", "lines_added": 3, "lines_removed": 0},
        {"tool_id": read["id"], "file_path": note, "operation_type": "read", "lines_added": None, "lines_removed": None},
        {"tool_id": edit["id"], "file_path": note, "operation_type": "edited", "lines_added": 1, "lines_removed": 1},
    ]  # fmt: skip
    assert (proj / "note.txt").read_text() == "line one\nline 2\nline three\n"  # the real tools ran
    kinds = {r["kind"] for r in rows(db, "SELECT kind FROM events WHERE session_id = ?", session)}
    assert {"SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse", "PostToolUseFailure",
            "PostToolBatch", "Stop", "SessionEnd"} <= kinds  # fmt: skip


def test_tool_scenario_fills_every_table(scratch, daemon, agentd_env):
    session = run_tools_scenario(scratch, agent_env(agentd_env))
    assert wait_for(lambda: session_ended(daemon.config, session))
    assert_tools_scenario_rows(daemon.config.db_path, session, scratch.proj)
    assert rows(daemon.config.db_path, "SELECT * FROM session_errors") == []


def test_tool_scenario_with_the_daemon_stopped_is_spooled_then_drained_once(
    scratch, make_daemon, config, agentd_env
):
    session = run_tools_scenario(scratch, agent_env(agentd_env, AGENTD_AUTOSTART="0"))
    spooled = sorted(config.spool_dir.glob("*.ndjson"))
    assert len(spooled) >= 15  # every hook event of the run
    expected_events = {json.loads(p.read_text())["payload"]["hook_event_name"] for p in spooled}
    daemon = make_daemon().start()
    assert wait_for(lambda: not list(config.spool_dir.glob("*.ndjson")))
    assert daemon.call("status")["spool_events_drained"] == len(spooled)
    assert_tools_scenario_rows(config.db_path, session, scratch.proj)
    events = rows(
        config.db_path,
        "SELECT kind FROM events WHERE session_id = ? AND source = 'claude'",
        session,
    )
    assert len(events) == len(spooled)  # each spooled event stored exactly once
    assert {e["kind"] for e in events} == expected_events


def test_subagent_work_is_attributed_to_its_session(scratch, daemon, agentd_env):
    main = [
        tool("Agent", {"description": "Run sub task", "prompt": "SUBAGENT_TASK: run echo from-subagent",
                       "subagent_type": "general-purpose"}),
        text("Started the subagent."),
        text("The subagent finished."),
    ]  # fmt: skip
    sub = [tool("Bash", {"command": "echo from-subagent", "description": "Echo"}), text("sub done")]
    with FakeModelServer(main, subscripts={"SUBAGENT_TASK": sub}) as server:
        result = run_claude(scratch, server, "delegate the task", extra_env=agent_env(agentd_env))
    assert result.returncode == 0, result.stderr
    session = parse_claude_json(result)["session_id"]
    db = daemon.config.db_path
    assert wait_for(
        lambda: len(rows(db, "SELECT id FROM tools WHERE session_id = ?", session)) == 2
    )
    agent, bash = rows(db, "SELECT * FROM tools WHERE session_id = ? ORDER BY started_at", session)
    assert (agent["tool_name"], agent["success"], agent["agent_id"]) == ("Agent", 1, None)
    agent_id = json.loads(agent["tool_output"])["agentId"]
    assert (bash["tool_name"], bash["success"], bash["agent_id"]) == ("Bash", 1, agent_id)
    assert json.loads(bash["tool_output"])["stdout"] == "from-subagent"
    assert [r["id"] for r in rows(db, "SELECT id FROM sessions")] == [
        session
    ]  # no session of its own
    kinds = [r["kind"] for r in rows(db, "SELECT kind FROM events WHERE session_id = ?", session)]
    assert "SubagentStart" in kinds and "SubagentStop" in kinds


def test_compact_on_a_resumed_session(scratch, daemon, agentd_env):
    env = agent_env(agentd_env)
    session = run_tools_scenario(scratch, env)
    with FakeModelServer([text("unused")]) as server:
        result = run_claude(scratch, server, "/compact", resume=session, extra_env=env)
    assert result.returncode == 0, result.stderr
    db = daemon.config.db_path
    assert wait_for(
        lambda: rows(
            db, "SELECT tokens_after FROM compaction_events WHERE tokens_after IS NOT NULL"
        )
    )
    (c,) = rows(db, "SELECT * FROM compaction_events")
    assert (c["session_id"], c["source"], c["trigger"]) == (session, "claude", "manual")
    boundary = next(
        json.loads(line)["compactMetadata"]
        for line in scratch.claude_transcript(session).read_text().splitlines()
        if '"compact_boundary"' in line
    )
    assert (c["tokens_before"], c["tokens_after"]) == (
        boundary["preTokens"],
        boundary["postTokens"],
    )
    assert c["tokens_before"] > 0


def test_http_500_ends_in_stop_failure(scratch, daemon, agentd_env):
    with FakeModelServer([http_error(500)]) as server:
        result = run_claude(scratch, server, "this will fail", extra_env=agent_env(agentd_env))
    db = daemon.config.db_path

    def last_hooks_in() -> bool:  # acked, or spooled and drained (as session_ended says)
        kinds = {r["kind"] for r in rows(db, "SELECT kind FROM events")}
        return spool_empty(daemon.config) and {"StopFailure", "SessionEnd"} <= kinds

    assert wait_for(last_hooks_in, 60)
    assert wait_for(lambda: rows(db, "SELECT id FROM session_errors WHERE error_type != 'retry'"))
    (e,) = rows(db, "SELECT * FROM session_errors WHERE error_type != 'retry'")
    session = e["session_id"]
    assert (e["source"], e["error_type"]) == ("claude", "server_error")
    assert "500" in e["error_message"] and e["status_code"] == 500
    # Claude Code retried (CLAUDE_CODE_MAX_RETRIES=2) before giving up: the transcript says so.
    assert wait_for(lambda: rows(db, "SELECT id FROM session_errors WHERE error_type = 'retry'"))
    retries = rows(db, "SELECT status_code FROM session_errors WHERE error_type = 'retry'")
    assert {r["status_code"] for r in retries} == {500}
    (s,) = rows(
        db,
        "SELECT status, outcome, last_error, tool_call_count FROM sessions WHERE id = ?",
        session,
    )
    assert s["status"] in ("idle", "ended") and s["tool_call_count"] == 0
    assert s["outcome"] == "error" and "500" in s["last_error"]
    assert result.returncode != 0 or "500" in result.stdout


def test_the_repository_loads_as_a_claude_code_plugin(daemon, agentd_env):
    """`claude --plugin-dir <repo>`: hooks/hooks.json and its launcher, no settings.json hooks."""
    from conftest import REPO

    with Scratch.create(prefix="cp-") as plain:  # no `agentd install` in this project
        with FakeModelServer(
            [tool("Bash", {"command": "echo via-plugin"}), text("done")]
        ) as server:
            result = run_claude(
                plain, server, "run it", extra_env=agent_env(agentd_env), plugin_dirs=[REPO]
            )
        assert result.returncode == 0, result.stderr
        session = parse_claude_json(result)["session_id"]
    db = daemon.config.db_path
    assert wait_for(
        lambda: (
            rows(db, "SELECT success FROM tools WHERE session_id = ?", session) == [{"success": 1}]
        )
    )
    (tool_row,) = rows(
        db, "SELECT tool_input, tool_output FROM tools WHERE session_id = ?", session
    )
    assert json.loads(tool_row["tool_output"])["stdout"] == "via-plugin"
    expected = {"SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse", "Stop"}
    kinds = lambda: {  # noqa: E731
        r["kind"] for r in rows(db, "SELECT kind FROM events WHERE session_id = ?", session)
    }
    # The last hooks may have spooled (their ack budget missed on a loaded machine): drained soon.
    assert wait_for(lambda: spool_empty(daemon.config) and expected <= kinds())
    assert expected <= kinds()
