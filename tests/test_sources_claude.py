"""The Claude Code normalizer, against the real hook payloads in tests/payloads."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from agentd.db.store import Store
from agentd.ingest import event_id
from agentd.normalizers import normalize
from agentd.normalizers.claude_hooks import (
    normalize as claude_normalize,
    truncate,
)
from agentd.rows import TYPED_TABLES, Context, Normalized
from conftest import load_jsonl, query_db

NOW = 1_795_000_000_000
LIMIT = 10 * 1024
RECORDS = load_jsonl("claude_hooks_examples.jsonl")

MAIN = "bbce9559-ac03-43d5-abf7-5a5bf173473b"
SUBAGENT_SESSION = "6087c44d-4f26-44de-a67d-49deaec348a0"
SUBAGENT_ID = "abb204bb3a040e500"
HELLO = "/home/dev/runs/claude-main/proj/hello.txt"
COMPACT_PROMPT = "d3c02cba-6ea1-454f-bde8-f3b6cd983522"


def sample(event: str, *, scenario: str | None = None, **match: Any) -> dict[str, Any]:
    """A deep copy of the one sample payload with this hook_event_name (and scenario, fields)."""
    found = [
        r["stdin"]
        for r in RECORDS
        if r["hook_event_name"] == event
        and (scenario is None or r["scenario"] == scenario)
        and all(r["stdin"].get(k) == v for k, v in match.items())
    ]
    assert len(found) == 1, (event, scenario, match, len(found))
    return copy.deepcopy(found[0])


def run(payload: Any, *, received_at: int = NOW, limit: int = LIMIT) -> Normalized:
    ctx = Context(
        source="claude",
        event_id=event_id("claude", payload),
        received_at=received_at,
        output_limit_bytes=limit,
    )
    return normalize(payload, ctx)


def rows(result: Normalized, table: str) -> list[dict[str, Any]]:
    """The rows of one table, without the None columns (which the store's merge ignores)."""
    return [
        {k: v for k, v in r.values.items() if v is not None}
        for r in result.rows
        if r.table == table
    ]


def one(result: Normalized, table: str) -> dict[str, Any]:
    found = rows(result, table)
    assert len(found) == 1, (table, found)
    return found[0]


def session(result: Normalized) -> dict[str, Any]:
    return one(result, "sessions")


# -- every sample ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "record", RECORDS, ids=[f"{r['scenario']}-{r['hook_event_name']}" for r in RECORDS]
)
def test_normalize_every_sample(record):
    payload = record["stdin"]
    result = run(payload)
    assert result.kind == record["hook_event_name"]
    assert result.session_id == payload["session_id"]
    for row in result.rows:
        assert row.table in TYPED_TABLES
        assert row.values["id"]
        assert all(v is None or isinstance(v, str | int) for v in row.values.values()), row
        if row.table == "sessions":
            assert row.values["id"] == payload["session_id"]
        else:
            assert row.values["session_id"] == payload["session_id"]
    # Counters and token sums are the store's job.
    for s in rows(result, "sessions"):
        assert not {"tool_call_count", "prompt_count", "message_count", "cost"} & s.keys()
        assert not any(k.endswith("_tokens") for k in s)
    assert session(result)["project_path"] == payload["cwd"]
    assert session(result)["project_name"] == "proj"


def test_normalize_does_not_mutate_payload():
    for record in RECORDS:
        payload = copy.deepcopy(record["stdin"])
        run(payload)
        assert payload == record["stdin"]


# -- tools ----------------------------------------------------------------------------------------


def test_pre_tool_use_starts_tool_row():
    result = run(sample("PreToolUse", scenario="claude-main", tool_name="Bash"))
    assert one(result, "tools") == {
        "id": f"{MAIN}:toolu_fake_c13916e3ced54f22",
        "session_id": MAIN,
        "tool_name": "Bash",
        "tool_input": '{"command":"echo hi","description":"Say hi"}',
        "started_at": NOW,
        "created_at": NOW,
    }
    assert rows(result, "file_operations") == []
    assert session(result)["status"] == "busy"
    assert session(result)["permission_mode"] == "bypassPermissions"


def test_pre_tool_use_sets_file_path_without_file_operation():
    result = run(sample("PreToolUse", tool_name="Edit"))
    assert one(result, "tools")["file_path"] == HELLO
    assert rows(result, "file_operations") == []  # only Post events say what happened


def test_post_tool_use_completes_tool_row():
    result = run(sample("PostToolUse", scenario="claude-main", tool_name="Bash"))
    tool = one(result, "tools")
    assert tool == {
        "id": f"{MAIN}:toolu_fake_c13916e3ced54f22",
        "session_id": MAIN,
        "tool_name": "Bash",
        "tool_input": '{"command":"echo hi","description":"Say hi"}',
        "tool_output": tool["tool_output"],
        "success": 1,
        "interrupted": 0,
        "duration_ms": 21,
        "started_at": NOW - 21,
        "created_at": NOW - 21,
        "ended_at": NOW,
    }
    assert json.loads(tool["tool_output"]) == {
        "stdout": "hi",
        "stderr": "",
        "interrupted": False,
        "isImage": False,
        "noOutputExpected": False,
    }
    assert rows(result, "file_operations") == []


def test_post_tool_use_failure_parses_exit_code():
    result = run(sample("PostToolUseFailure"))
    assert one(result, "tools") == {
        "id": f"{MAIN}:toolu_fake_49daeee70f534108",
        "session_id": MAIN,
        "tool_name": "Bash",
        "tool_input": '{"command":"ls /definitely/not/here && echo never","description":"Failing command"}',
        "success": 0,
        "error_message": "Exit code 2\nls: cannot access '/definitely/not/here': No such file or directory",
        "exit_code": 2,
        "interrupted": 0,
        "duration_ms": 6,
        "started_at": NOW - 6,
        "created_at": NOW - 6,
        "ended_at": NOW,
    }
    assert rows(result, "file_operations") == []


def test_post_tool_use_failure_exit_code_and_interrupt():
    # A Bash `exit 3` fails with error "Exit code 3\n<stderr>" (docs/claude-code.md), here
    # with an interrupt too.
    payload = sample("PostToolUseFailure")
    payload.update(
        tool_input={"command": "echo oops >&2; exit 3", "description": "Fail on purpose"},
        error="Exit code 3\noops",
        is_interrupt=True,
    )
    tool = one(run(payload), "tools")
    assert (tool["exit_code"], tool["success"], tool["interrupted"]) == (3, 0, 1)
    assert tool["error_message"] == "Exit code 3\noops"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ("Error: Exit code 127\nsh: nope: not found", 127),
        ("Exit code 1", 1),
        ("Command timed out after 2m 0s", None),
        ("File has not been read yet. Read it first before writing to it.", None),
        ("oops\nExit code 4", None),  # only the first line says the exit code
    ],
)
def test_post_tool_use_failure_exit_code_variants(error, code):
    payload = sample("PostToolUseFailure")
    payload["error"] = error
    tool = one(run(payload), "tools")
    assert tool.get("exit_code") == code
    assert tool["error_message"] == error


def test_subagent_tool_rows_carry_agent_id():
    for event in ("PreToolUse", "PostToolUse"):
        result = run(sample(event, scenario="claude-subagent", tool_name="Bash"))
        tool = one(result, "tools")
        assert tool["agent_id"] == SUBAGENT_ID
        assert tool["id"] == f"{SUBAGENT_SESSION}:toolu_fake_7306ac16e6eb46e8"
        assert result.session_id == SUBAGENT_SESSION  # no session of its own
        assert "status" not in session(result)  # a subagent's work does not move the status
    main_agent_call = one(run(sample("PreToolUse", tool_name="Agent")), "tools")
    assert "agent_id" not in main_agent_call
    assert main_agent_call["tool_name"] == "Agent"


def test_agent_tool_post_stores_launch_response():
    tool = one(run(sample("PostToolUse", tool_name="Agent")), "tools")
    assert tool["success"] == 1
    assert json.loads(tool["tool_output"])["agentId"] == SUBAGENT_ID
    assert tool["duration_ms"] == 11


def test_post_tool_batch_fills_names_only():
    result = run(sample("PostToolBatch", scenario="claude-main"))
    assert one(result, "tools") == {
        "id": f"{MAIN}:toolu_fake_c13916e3ced54f22",
        "session_id": MAIN,
        "tool_name": "Bash",
        "tool_input": '{"command":"echo hi","description":"Say hi"}',
        "created_at": NOW,
    }
    sub = one(run(sample("PostToolBatch", scenario="claude-subagent")), "tools")
    assert sub["agent_id"] == SUBAGENT_ID


def test_permission_request_waits_and_denied_fails_the_call():
    result = run(sample("PermissionRequest"))
    assert session(result)["status"] == "waiting"
    assert rows(result, "tools") == []  # PermissionRequest has no tool_use_id

    denied = sample("PermissionRequest")
    denied.update(hook_event_name="PermissionDenied", tool_use_id="toolu_x", reason="not allowed")
    denied.pop("permission_suggestions")
    result = run(denied)
    sid = denied["session_id"]
    assert one(result, "tools") == {
        "id": f"{sid}:toolu_x",
        "session_id": sid,
        "tool_name": "Bash",
        "tool_input": '{"command":"touch should_not_exist","description":"Needs permission"}',
        "success": 0,
        "error_message": "not allowed",
        "ended_at": NOW,
        "created_at": NOW,
    }
    assert one(result, "session_errors") == {
        "id": f"{sid}:toolu_x:denied",
        "session_id": sid,
        "error_type": "permission_denied",
        "error_message": "Bash: not allowed",
        "created_at": NOW,
    }


# -- file operations ------------------------------------------------------------------------------


def test_file_operations_from_edit_write_read():
    expected = {
        "Edit": ("toolu_fake_84b704f8f99f40dc", "edited", 1, 1),
        "Write": ("toolu_fake_ede77cf238a74fc8", "created", 1, 0),
        "Read": ("toolu_fake_dad258ce16cc4286", "read", None, None),
    }
    for tool_name, (tool_use_id, operation, added, removed) in expected.items():
        result = run(sample("PostToolUse", tool_name=tool_name))
        tool_id = f"{MAIN}:{tool_use_id}"
        assert one(result, "tools")["file_path"] == HELLO
        op = one(result, "file_operations")
        assert op == {
            k: v
            for k, v in {
                "id": f"{tool_id}:{HELLO}",
                "session_id": MAIN,
                "tool_id": tool_id,
                "file_path": HELLO,
                "operation_type": operation,
                "lines_added": added,
                "lines_removed": removed,
                "created_at": NOW,
            }.items()
            if v is not None
        }, tool_name


def test_write_update_counts_patch_lines():
    payload = sample("PostToolUse", tool_name="Write")
    payload["tool_input"]["content"] = "a\nB\nc\nd\n"
    payload["tool_response"].update(
        type="update",
        originalFile="a\nb\nc\n",
        structuredPatch=[
            {
                "oldStart": 1,
                "oldLines": 3,
                "newStart": 1,
                "newLines": 4,
                "lines": [" a", "-b", "+B", " c", "+d"],
            }
        ],
    )
    op = one(run(payload), "file_operations")
    assert (op["operation_type"], op["lines_added"], op["lines_removed"]) == ("edited", 2, 1)


def test_write_create_counts_content_lines():
    payload = sample("PostToolUse", tool_name="Write")
    payload["tool_input"]["content"] = "one\ntwo\nthree"  # no final newline
    op = one(run(payload), "file_operations")
    assert (op["operation_type"], op["lines_added"], op["lines_removed"]) == ("created", 3, 0)


def test_notebook_and_other_tools_file_operations(tmp_path):
    notebook = sample("PostToolUse", tool_name="Write")
    notebook.update(
        tool_name="NotebookEdit",
        tool_input={
            "notebook_path": "/p/n.ipynb",
            "new_source": "x = 1\ny = 2",
            "edit_mode": "insert",
        },
        tool_response={"new_source": "x = 1\ny = 2", "cell_type": "code", "edit_mode": "insert"},
    )
    result = run(notebook)
    assert one(result, "tools")["file_path"] == "/p/n.ipynb"
    op = one(result, "file_operations")
    assert (op["operation_type"], op["lines_added"], op["lines_removed"]) == ("edited", 2, 0)

    grep = sample("PostToolUse", tool_name="Read")
    grep.update(tool_name="Grep", tool_input={"pattern": "x", "path": "src"}, tool_response={})
    op = one(run(grep), "file_operations")
    # A relative path is resolved against the event's cwd.
    assert (op["operation_type"], op["file_path"]) == (
        "searched",
        "/home/dev/runs/claude-main/proj/src",
    )

    mcp = sample("PostToolUse", tool_name="Read")
    mcp.update(tool_name="mcp__fs__read_file", tool_input={"file_path": "/etc/hosts"})
    mcp["tool_response"] = [{"type": "text", "text": "127.0.0.1 localhost"}]
    op = one(run(mcp), "file_operations")
    assert (op["operation_type"], op["file_path"]) == ("mcp__fs__read_file", "/etc/hosts")

    bash = run(sample("PostToolUse", scenario="claude-main", tool_name="Bash"))
    assert rows(bash, "file_operations") == []


def test_failed_tool_has_no_file_operation():
    payload = sample("PostToolUseFailure")
    payload.update(tool_name="Edit", tool_input={"file_path": HELLO, "old_string": "x"})
    result = run(payload)
    assert one(result, "tools")["file_path"] == HELLO
    assert rows(result, "file_operations") == []


# -- output truncation ----------------------------------------------------------------------------


def test_truncate_keeps_utf8_boundary_and_says_how_much():
    text = "é" * 100  # 200 bytes
    out = truncate(text, 101)
    assert out is not None
    data = out.encode()
    assert len(data) <= 101
    kept, marker = out.split("…[truncated ")
    assert set(kept) == {"é"}
    cut = 200 - len(kept.encode())
    assert marker == f"{cut} of 200 bytes]"
    assert truncate(text, 200) == text
    assert truncate(None, 10) is None
    assert (
        truncate("abc", 0) == "…[truncated 3 of 3 bytes]"
    )  # a limit below the marker: marker only


def test_tool_output_and_error_are_truncated():
    payload = sample("PostToolUse", scenario="claude-main", tool_name="Bash")
    payload["tool_response"]["stdout"] = "😀" * 5000  # 20 000 bytes of 4-byte characters
    tool = one(run(payload, limit=1000), "tools")
    output = tool["tool_output"]
    assert len(output.encode()) <= 1000
    assert output.startswith('{"stdout":"😀😀')
    encoded = json.dumps(payload["tool_response"], ensure_ascii=False, separators=(",", ":"))
    total_bytes = len(encoded.encode())
    kept = output.split("…[truncated ")[0]
    assert output.endswith(
        f"…[truncated {total_bytes - len(kept.encode())} of {total_bytes} bytes]"
    )

    failure = sample("PostToolUseFailure")
    failure["error"] = "Exit code 1\n" + "x" * 5000
    tool = one(run(failure, limit=100), "tools")
    assert tool["exit_code"] == 1  # parsed before truncation
    assert tool["error_message"].startswith("Exit code 1\nxxx")
    assert tool["error_message"].endswith(" of 5012 bytes]")
    assert len(tool["error_message"].encode()) <= 100
    # The input is kept whole so that json_extract works on it.
    assert json.loads(tool["tool_input"])["command"].startswith("ls ")


def test_string_tool_response_is_stored_as_text():
    payload = sample("PostToolUse", tool_name="Read")
    payload.update(tool_name="mcp__srv__tool", tool_input={}, tool_response="plain text")
    assert one(run(payload), "tools")["tool_output"] == "plain text"


# -- sessions -------------------------------------------------------------------------------------


def test_session_start_variants():
    startup = session(run(sample("SessionStart", source="startup")))
    assert startup == {
        "id": MAIN,
        "updated_at": NOW,
        "status": "active",
        "project_path": "/home/dev/runs/claude-main/proj",
        "project_name": "proj",
    }
    assert session(run(sample("SessionStart", source="resume")))["status"] == "active"
    compact = session(run(sample("SessionStart", source="compact")))
    assert compact["model"] == "claude-opus-5-5"
    assert "status" not in compact  # compaction mid-turn must not reset "busy"


def test_session_title_and_model_switch():
    start = sample("SessionStart", source="startup")
    start.update(session_title="Fix the parser", model="claude-sonnet-4-5")
    s = session(run(start))
    assert (s["title"], s["model"]) == ("Fix the parser", "claude-sonnet-4-5")
    switch = sample("Stop")
    switch.update(hook_event_name="PostModelSwitch", from_model="a", to_model="claude-haiku-4-5")
    assert session(run(switch))["model"] == "claude-haiku-4-5"


def test_user_prompt_submit_adds_user_message():
    result = run(sample("UserPromptSubmit"))
    assert session(result)["status"] == "busy"
    assert session(result)["permission_mode"] == "bypassPermissions"
    assert one(result, "messages") == {
        "id": f"{MAIN}:2514a302-3387-47d8-b91e-c7556df98dd1",
        "session_id": MAIN,
        "role": "user",
        "created_at": NOW,
    }


def test_user_prompt_without_prompt_id_and_synthetic_prompts():
    payload = sample("UserPromptSubmit")
    del payload["prompt_id"]
    msg = one(run(payload), "messages")
    assert msg["id"] == f"{MAIN}:{event_id('claude', payload)}"
    assert msg["role"] == "user"

    notification = sample("UserPromptSubmit")
    notification["prompt"] = "<task-notification>\n<task-id>abb204bb3a040e500</task-id>"
    assert one(run(notification), "messages")["role"] == "system"
    wakeup = sample("UserPromptSubmit")
    wakeup["source"] = "loop_wakeup"
    assert one(run(wakeup), "messages")["role"] == "system"
    sdk = sample("UserPromptSubmit")
    sdk["source"] = "sdk"
    assert one(run(sdk), "messages")["role"] == "user"


def test_stop_and_session_end():
    assert session(run(sample("Stop")))["status"] == "idle"
    end = session(run(sample("SessionEnd", scenario="claude-main")))
    assert (end["status"], end["end_reason"], end["ended_at"]) == ("ended", "other", NOW)
    end = session(run(sample("SessionEnd", scenario="claude-interactive")))
    assert end["end_reason"] == "prompt_input_exit"


def test_stop_failure_without_a_prompt_id_is_keyed_on_the_event():
    payload = sample("StopFailure", scenario="claude-error400")
    del payload["prompt_id"]
    sid = payload["session_id"]
    assert one(run(payload), "session_errors")["id"] == f"{sid}:{event_id('claude', payload)}"


def test_stop_failure_is_a_session_error_and_the_outcome():
    result = run(sample("StopFailure", scenario="claude-error400"))
    s = session(result)
    assert (s["status"], s["outcome"]) == ("idle", "error")
    assert s["last_error"] == "unknown: API Error: 400 fake bad request"
    sid = "3aadc1b9-4fd9-4d7e-8f42-f89e125d6e28"
    payload = sample("StopFailure", scenario="claude-error400")
    assert one(result, "session_errors") == {
        "id": f"{sid}:{payload['prompt_id']}:stop_failure",  # the transcript importer's id too
        "session_id": sid,
        "error_type": "unknown",
        "error_message": "API Error: 400 fake bad request",
        "status_code": 400,
        "created_at": NOW,
    }
    err = one(run(sample("StopFailure", scenario="claude-error500")), "session_errors")
    assert (err["error_type"], err["status_code"]) == ("server_error", 500)
    assert err["error_message"].startswith("API Error: 500 fake internal error.")

    details = sample("StopFailure", scenario="claude-error500")
    del details["last_assistant_message"]
    details.update(error="rate_limit", error_details="429 Too Many Requests")
    err = one(run(details), "session_errors")
    assert (err["error_type"], err["error_message"]) == ("rate_limit", "429 Too Many Requests")


@pytest.mark.parametrize(
    ("notification_type", "status"),
    [
        ("permission_prompt", "waiting"),
        ("elicitation_dialog", "waiting"),
        ("agent_needs_input", "waiting"),
        ("idle_prompt", "idle"),
        ("auth_success", None),
        ("something_new", None),
    ],
)
def test_notification_status(notification_type, status):
    payload = sample("Stop")
    for key in ("stop_hook_active", "last_assistant_message", "background_tasks", "session_crons"):
        del payload[key]
    payload.update(
        hook_event_name="Notification",
        message="Claude needs your permission to use Bash",
        notification_type=notification_type,
    )
    assert session(run(payload)).get("status") == status


def test_subagent_events_stay_raw():
    start = run(sample("SubagentStart"))
    assert (start.kind, start.session_id) == ("SubagentStart", SUBAGENT_SESSION)
    assert [r.table for r in start.rows] == ["sessions"]
    assert "status" not in session(start)
    stop = run(sample("SubagentStop"))
    assert (stop.kind, stop.session_id) == ("SubagentStop", MAIN)
    assert [r.table for r in stop.rows] == ["sessions"]


def test_other_events_update_what_they_can():
    for event in ("InstructionsLoaded", "MessageDisplay"):
        result = run(sample(event))
        assert result.kind == event
        assert result.rows and [r.table for r in result.rows] == ["sessions"]
    cwd_changed = sample("MessageDisplay")
    cwd_changed.update(hook_event_name="CwdChanged", permission_mode="plan")
    assert session(run(cwd_changed))["permission_mode"] == "plan"


def test_project_path_from_transcript_directory():
    # After a `cd` into a subdirectory, cwd moves; the transcript's directory still names the project.
    payload = sample("UserPromptSubmit")
    payload["cwd"] = "/home/dev/runs/claude-main/proj/src/deep"
    s = session(run(payload))
    assert (s["project_path"], s["project_name"]) == ("/home/dev/runs/claude-main/proj", "proj")
    # Dots and underscores are encoded as `-` too.
    payload["cwd"] = "/home/a.b/my_app/sub"
    payload["transcript_path"] = f"/h/.claude/projects/-home-a-b-my-app/{MAIN}.jsonl"
    assert session(run(payload))["project_path"] == "/home/a.b/my_app"
    # Names over 200 characters are cut and suffixed with a hash (value computed with node).
    root = "/home/dev/" + "x" * 250 + "/proj"
    project_dir = root.replace("/", "-")[:200] + "-v2qsj3"
    payload["transcript_path"] = f"/h/.claude/projects/{project_dir}/{MAIN}.jsonl"
    payload["cwd"] = root + "/sub"
    assert session(run(payload))["project_path"] == root
    payload["transcript_path"] = f"/h/.claude/projects/{project_dir[:-1]}0/{MAIN}.jsonl"
    assert session(run(payload))["project_path"] == root + "/sub"  # another project's hash
    # No match (no transcript): the cwd itself.
    del payload["transcript_path"]
    assert session(run(payload))["project_path"] == root + "/sub"


# -- compaction -----------------------------------------------------------------------------------


def write_transcript(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def transcript_records() -> list[dict[str, Any]]:
    return load_jsonl("claude_transcript_trimmed.jsonl")


def boundary_received_at() -> int:
    # The sample boundary was written at 2026-11-21T07:28:45.695Z; PostCompact came right after.
    return 1_795_246_125_695 + 500


def test_pre_and_post_compact_share_one_row(tmp_path):
    transcript = tmp_path / f"{MAIN}.jsonl"
    write_transcript(transcript, transcript_records())
    pre = sample("PreCompact")
    post = sample("PostCompact")
    for p in (pre, post):
        p["transcript_path"] = str(transcript)
    when = boundary_received_at()
    pre_row = one(run(pre, received_at=when - 1000), "compaction_events")
    post_row = one(run(post, received_at=when), "compaction_events")
    assert pre_row == {
        "id": f"{MAIN}:{COMPACT_PROMPT}",
        "session_id": MAIN,
        "trigger": "manual",
        "created_at": when - 1000,
    }
    # The tokens are the transcript's (the follower's); the hook normalizer reads no file.
    assert post_row == {
        "id": f"{MAIN}:{COMPACT_PROMPT}",
        "session_id": MAIN,
        "trigger": "manual",
        "created_at": when,
    }


def test_compaction_without_prompt_id_uses_event_id():
    pre = sample("PreCompact")
    del pre["prompt_id"]
    assert one(run(pre), "compaction_events")["id"] == f"{MAIN}:{event_id('claude', pre)}"


# -- malformed input ------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [None, [], "PreToolUse", 3, 1.5, True, [{"session_id": "s"}]])
def test_non_object_payloads(payload):
    assert run(payload) == Normalized(kind="unknown", session_id=None)


def test_empty_and_partial_objects():
    assert run({}) == Normalized(kind="unknown", session_id=None)
    assert run({"hook_event_name": "Stop"}) == Normalized(kind="Stop", session_id=None)
    assert run({"session_id": 5, "hook_event_name": ["x"]}) == Normalized("unknown", None)
    result = run({"session_id": "s", "hook_event_name": "PreToolUse"})
    assert result.kind == "PreToolUse" and result.session_id == "s"
    assert rows(result, "tools") == []  # no tool_use_id: nothing to pair on


def test_wrong_types_give_fewer_rows():
    payload = sample("PostToolUse", tool_name="Edit")
    payload.update(tool_input="not an object", tool_response=["a", "list"], duration_ms="3")
    result = run(payload)
    tool = one(result, "tools")
    assert tool["tool_input"] == "not an object"
    assert json.loads(tool["tool_output"]) == ["a", "list"]
    assert "file_path" not in tool and "duration_ms" not in tool
    assert "started_at" not in tool  # no duration: no derived start
    assert (tool["created_at"], tool["ended_at"]) == (NOW, NOW)
    assert rows(result, "file_operations") == []

    payload = sample("PostToolUse", tool_name="Edit")
    payload["tool_response"]["structuredPatch"] = [None, {"lines": "-x"}, {"lines": [1, "+a"]}]
    op = one(run(payload), "file_operations")
    assert (op["lines_added"], op["lines_removed"]) == (1, 0)

    batch = sample("PostToolBatch", scenario="claude-main")
    batch["tool_calls"] = [None, "x", {"tool_use_id": 3}, {"tool_use_id": "t", "tool_name": 1}]
    assert one(run(batch), "tools") == {"id": f"{MAIN}:t", "session_id": MAIN, "created_at": NOW}


WEIRD = [
    None,
    0,
    -1,
    2.5,
    2**70,
    True,
    "",
    "x",
    "Exit code " + "9" * 5000,
    [],
    [1, {}],
    {},
    {"a": [None]},
]


def storable(value: Any) -> bool:
    """What SQLite can bind: None, str, and 64-bit integers."""
    return value is None or isinstance(value, str) or (type(value) is int and abs(value) < 2**63)


def mutations(payload: dict[str, Any]):
    """The payload with each field (and each field of its nested objects) set to each odd value."""
    for key in list(payload):
        for value in WEIRD:
            yield {**copy.deepcopy(payload), key: value}
        if isinstance(payload[key], dict):
            for sub in payload[key]:
                for value in WEIRD:
                    changed = copy.deepcopy(payload)
                    changed[key][sub] = value
                    yield changed


def test_never_raises_on_odd_shapes(tmp_path):
    transcript = tmp_path / "t.jsonl"
    transcript.write_text('{"type":"system","subtype":"compact_boundary","compactMetadata":[]}\n')
    count = 0
    for record in RECORDS:
        base = copy.deepcopy(record["stdin"])
        base["transcript_path"] = str(transcript)
        for payload in mutations(base):
            # Called directly: agentd.normalizers.normalize() would swallow an exception.
            result = claude_normalize(payload, Context("claude", "e", NOW, 64))
            name = payload.get("hook_event_name")
            assert result.kind == (name if isinstance(name, str) and name else "unknown")
            for row in result.rows:
                assert all(storable(v) for v in row.values.values()), row
            count += 1
    assert count > 1000


# -- through the real store -----------------------------------------------------------------------


async def ingest_all(db: Path, events: list[tuple[dict[str, Any], int]], limit: int = LIMIT):
    store = Store(db, output_limit_bytes=limit)
    await store.open()
    try:
        for payload, received_at in events:
            await store.ingest("claude", json.dumps(payload).encode(), received_at)
    finally:
        await store.close()


def failing_pre() -> dict[str, Any]:
    failure = sample("PostToolUseFailure")
    pre = sample("PreToolUse", tool_name="Bash", scenario="claude-main")
    pre.update(tool_use_id=failure["tool_use_id"], tool_input=failure["tool_input"])
    return pre


PAIRS = {
    "bash": lambda: (
        sample("PreToolUse", tool_name="Bash", scenario="claude-main"),
        sample("PostToolUse", tool_name="Bash", scenario="claude-main"),
    ),
    "edit": lambda: (
        sample("PreToolUse", tool_name="Edit"),
        sample("PostToolUse", tool_name="Edit"),
    ),
    "write": lambda: (
        sample("PreToolUse", tool_name="Write"),
        sample("PostToolUse", tool_name="Write"),
    ),
    "subagent": lambda: (
        sample("PreToolUse", tool_name="Bash", scenario="claude-subagent"),
        sample("PostToolUse", tool_name="Bash", scenario="claude-subagent"),
    ),
    "failure": lambda: (failing_pre(), sample("PostToolUseFailure")),
}


@pytest.mark.parametrize("name", PAIRS)
async def test_pre_post_any_order_same_row(tmp_path, name):
    pre, post = PAIRS[name]()
    pre_at, post_at = NOW, NOW + 40  # the Post event arrives after the tool ran
    await ingest_all(tmp_path / "a.db", [(pre, pre_at), (post, post_at)])
    await ingest_all(tmp_path / "b.db", [(post, post_at), (pre, pre_at)])
    tables = ("tools", "file_operations")
    a = {t: query_db(tmp_path / "a.db", f"SELECT * FROM {t} ORDER BY id") for t in tables}
    b = {t: query_db(tmp_path / "b.db", f"SELECT * FROM {t} ORDER BY id") for t in tables}
    assert a == b
    [tool] = a["tools"]
    assert tool["id"] == f"{post['session_id']}:{post['tool_use_id']}"
    assert tool["source"] == "claude"
    assert tool["started_at"] == tool["created_at"] == pre_at  # the earliest start wins
    assert tool["ended_at"] == post_at
    assert tool["success"] == (0 if name == "failure" else 1)
    assert tool["duration_ms"] == post["duration_ms"]
    # Replaying both events changes nothing.
    await ingest_all(tmp_path / "a.db", [(post, post_at), (pre, pre_at)])
    assert query_db(tmp_path / "a.db", "SELECT * FROM tools") == a["tools"]


async def test_post_alone_derives_start_from_duration(tmp_path):
    post = sample("PostToolUse", tool_name="Bash", scenario="claude-main")
    await ingest_all(tmp_path / "a.db", [(post, NOW)])
    [tool] = query_db(tmp_path / "a.db", "SELECT started_at, ended_at, success FROM tools")
    assert tool == {"started_at": NOW - 21, "ended_at": NOW, "success": 1}


async def test_all_samples_through_store(tmp_path):
    db = tmp_path / "agentd.db"
    events = [(r["stdin"], NOW + i) for i, r in enumerate(RECORDS)]
    await ingest_all(db, events)
    assert query_db(db, "SELECT count(*) AS n FROM events")[0]["n"] == len(RECORDS)
    [main] = query_db(db, "SELECT * FROM sessions WHERE id = ?", (MAIN,))
    assert main["source"] == "claude"
    assert main["project_path"] == "/home/dev/runs/claude-main/proj"
    assert main["tool_call_count"] == 5  # Bash, Edit, Read, Write, failing Bash
    assert main["prompt_count"] == 1
    assert main["end_reason"] == "other"
    ops = query_db(
        db,
        "SELECT operation_type, lines_added, lines_removed FROM file_operations "
        "WHERE session_id = ? ORDER BY operation_type",
        (MAIN,),
    )
    assert ops == [
        {"operation_type": "created", "lines_added": 1, "lines_removed": 0},
        {"operation_type": "edited", "lines_added": 1, "lines_removed": 1},
        {"operation_type": "read", "lines_added": None, "lines_removed": None},
    ]
    tools = query_db(
        db, "SELECT tool_name, success, exit_code FROM tools WHERE session_id = ?", (MAIN,)
    )
    assert sorted((t["tool_name"], t["success"], t["exit_code"]) for t in tools) == [
        ("Bash", 0, 2),
        ("Bash", 1, None),
        ("Edit", 1, None),
        ("Read", 1, None),
        ("Write", 1, None),
    ]
    [compaction] = query_db(db, "SELECT id, trigger FROM compaction_events")
    assert compaction == {"id": f"{MAIN}:{COMPACT_PROMPT}", "trigger": "manual"}
    sub = query_db(
        db, "SELECT agent_id, tool_name FROM tools WHERE session_id = ?", (SUBAGENT_SESSION,)
    )
    assert sorted((t["tool_name"], t["agent_id"]) for t in sub) == [
        ("Agent", None),
        ("Bash", SUBAGENT_ID),
    ]
    errors = query_db(db, "SELECT error_type, status_code FROM session_errors ORDER BY status_code")
    assert errors == [
        {"error_type": "unknown", "status_code": 400},
        {"error_type": "server_error", "status_code": 500},
    ]
    # Subagents never become sessions of their own.
    ids = {r["id"] for r in query_db(db, "SELECT id FROM sessions")}
    assert ids == {r["stdin"]["session_id"] for r in RECORDS}
