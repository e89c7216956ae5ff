"""The OpenCode normalizer against real plugin payloads (tests/payloads), alone and through the store."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agentd.db.store import Store
from agentd.ingest import event_id
from agentd.normalizers import NORMALIZERS
from agentd.normalizers._values import truncate as truncate_output
from agentd.normalizers.opencode import normalize
from agentd.rows import TYPED_TABLES, Context, Normalized
from conftest import load_jsonl, query_db

EXAMPLES = load_jsonl("opencode_plugin_events_examples.jsonl")
ERRORS = load_jsonl("opencode_session_errors.jsonl")
RUN_JSON = load_jsonl("opencode_run_format_json_stdout_trimmed.jsonl")

MAIN = "ses_e02fabf2effeHoAA45Cl6mOCI7"
PROJ = "/home/dev/runs/oc-main/proj"
HELLO = f"{PROJ}/hello.txt"
MISSING = f"{PROJ}/does-not-exist.txt"
BASH_CALL = f"{MAIN}:toolu_fake_828a13c53f9744ff"
WRITE_CALL = f"{MAIN}:toolu_fake_d97307a4776d465c"
READ_CALL = f"{MAIN}:toolu_fake_0e20e301de744767"
EDIT_CALL = f"{MAIN}:toolu_fake_a76976381f66458c"
MISSING_CALL = f"{MAIN}:toolu_fake_1807e11d9cf44f26"
USER_MSG = "msg_1fd05410e001RijSu8mW4rP6Ta"
BASH_MSG = "msg_1fd05431e001rWM5hZMpzkDQDl"  # the assistant message that ran bash
WRITE_MSG = "msg_1fd05453a001Csk3F5EkGrFbFd"  # the assistant message that ran write
COMPACT = "ses_e02fa161effet9b8L8E3U5N3N6"
COMPACT_MSG = "msg_1fd05ee18001Zgz6bgHbXg6L3M"  # the user message holding the compaction part


def run(record: dict[str, Any], *, limit: int = 10 * 1024, received_at: int | None = None):
    """The normalizer itself (not the never-raising dispatcher), as the store would call it."""
    ctx = Context(
        source="opencode",
        event_id=event_id("opencode", record),
        received_at=received_at if received_at is not None else record.get("ts", 1),
        output_limit_bytes=limit,
    )
    return normalize(record, ctx)


def rows(result: Normalized, table: str) -> list[dict[str, Any]]:
    return [row.values for row in result.rows if row.table == table]


def only(result: Normalized, table: str) -> dict[str, Any]:
    found = rows(result, table)
    assert len(found) == 1, found
    return found[0]


def find(records: list[dict[str, Any]], kind: str, pred=lambda r: True) -> list[dict[str, Any]]:
    out = []
    for r in records:
        if r["kind"] == "event":
            if r["event"]["type"] == kind and pred(r):
                out.append(r)
        elif r["kind"] == kind and pred(r):
            out.append(r)
    return out


def part_of(record: dict[str, Any]) -> dict[str, Any]:
    return record["event"]["properties"]["part"]


def tool_part(call: str, status: str) -> dict[str, Any]:
    (found,) = find(
        EXAMPLES,
        "message.part.updated",
        lambda r: part_of(r).get("callID") == call and part_of(r)["state"]["status"] == status,
    )
    return found


def callback(kind: str, call: str) -> dict[str, Any]:
    (found,) = find(EXAMPLES, kind, lambda r: r["input"].get("callID") == call)
    return found


def bus(event_type: str, properties: dict[str, Any], evt: str = "evt_test") -> dict[str, Any]:
    return {"kind": "event", "event": {"id": evt, "type": event_type, "properties": properties}}


def assistant_update(
    message_id: str,
    evt: str,
    tokens: dict[str, Any] | None,
    completed: int | None,
    created: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A message.updated for an assistant message, shaped like the real one in the samples."""
    (base,) = find(
        EXAMPLES, "message.updated", lambda r: r["event"]["properties"]["info"]["id"] == BASH_MSG
    )
    record = copy.deepcopy(base)
    record["event"]["id"] = evt
    info = record["event"]["properties"]["info"]
    info["id"] = message_id
    if tokens is not None:
        info["tokens"] = tokens
    if created is not None:
        info["time"]["created"] = created
    if completed is not None:
        info["time"]["completed"] = completed
        info["finish"] = "tool-calls"
    info.update(extra)
    return record


# Observed token shapes: the step-finish of the bash step in the payloads, and an assistant message
# whose model call reported prompt=100 incl. 5 cached, completion=20 incl. 3 reasoning (OpenCode's
# `input` leaves out the cache reads, its `output` the reasoning).
STEP_TOKENS = {
    "total": 120,
    "input": 100,
    "output": 20,
    "reasoning": 0,
    "cache": {"write": 0, "read": 0},
}
CACHED_TOKENS = {
    "total": 120,
    "input": 95,
    "output": 17,
    "reasoning": 3,
    "cache": {"write": 0, "read": 5},
}


# --- every sample ---------------------------------------------------------------------------


def _expected_session(record: dict[str, Any]) -> str | None:
    if record["kind"] != "event":
        return record.get("input", {}).get("sessionID")
    props = record["event"]["properties"]
    return (
        props.get("sessionID")
        or props.get("info", {}).get("sessionID")
        or props.get("part", {}).get("sessionID")
    )


@pytest.mark.parametrize(
    "record",
    EXAMPLES + ERRORS,
    ids=[
        f"{r['scenario']}-{i}-{r.get('event', {}).get('type') or r['kind']}"
        for i, r in enumerate(EXAMPLES + ERRORS)
    ],
)
def test_every_sample_gets_its_kind_session_and_well_formed_rows(record: dict[str, Any]) -> None:
    result = run(record)
    expected_kind = record["event"]["type"] if record["kind"] == "event" else record["kind"]
    assert result.kind == expected_kind
    assert result.session_id == _expected_session(record)
    for row in result.rows:
        assert row.table in TYPED_TABLES
        assert isinstance(row.values["id"], str) and row.values["id"]
        assert None not in row.values.values()
        msgspec.json.encode(row.values)  # scalars, or JSON-able input
    # Registered under its source, so the store's dispatcher finds it.
    assert NORMALIZERS["opencode"] is normalize


def test_events_without_typed_meaning_are_kept_raw_only() -> None:
    raw_only = {
        "plugin.init", "chat.params", "chat.headers", "shell.env", "session.diff", "plugin.added",
        "catalog.updated", "reference.updated", "integration.updated", "message.part.delta",
        "file.watcher.updated", "experimental.session.compacting", "session.compacted",
        "permission.asked", "permission.replied",
    }  # fmt: skip
    seen = set()
    for record in EXAMPLES:
        result = run(record)
        if result.kind in raw_only:
            seen.add(result.kind)
            assert result.rows == [], result.kind
    assert seen == raw_only
    # Text, step-start and step-finish parts carry nothing for the typed tables either.
    for record in find(EXAMPLES, "message.part.updated"):
        if part_of(record)["type"] in ("text", "step-start", "step-finish"):
            assert run(record).rows == []


# --- sessions -------------------------------------------------------------------------------


def test_session_created_and_updated_fill_title_project_times_and_model() -> None:
    (created,) = find(EXAMPLES, "session.created")
    assert only(run(created), "sessions") == {
        "id": MAIN,
        "title": "New session - 2026-11-21T07:32:22.353Z",
        "project_path": PROJ,
        "project_name": "proj",
        "created_at": 1795246342353,
        "updated_at": 1795246342353,
    }
    (updated,) = find(EXAMPLES, "session.updated")
    row = only(run(updated), "sessions")
    assert row["model"] == "fake/model" and row["provider"] == "fake"
    assert row["updated_at"] == 1795246342414


def test_child_session_gets_its_parent() -> None:
    (created,) = find(EXAMPLES, "session.created")
    child = copy.deepcopy(created)
    info = child["event"]["properties"]["info"]
    child["event"]["properties"]["sessionID"] = info["id"] = "ses_child"
    info["parentID"] = MAIN
    info["title"] = "Run sub task (@general subagent)"
    row = only(run(child), "sessions")
    assert row["id"] == "ses_child"
    assert row["parent_session_id"] == MAIN
    assert row["title"] == "Run sub task (@general subagent)"


def test_task_tool_links_the_subagent_session_to_its_parent() -> None:
    parent = "ses_e02f9fabdffeE1hHukMb4TZ4sn"
    (after,) = find(EXAMPLES, "tool.execute.after", lambda r: r["input"]["tool"] == "task")
    result = run(after)
    assert rows(result, "sessions") == [
        {"id": "ses_e02f9f6eaffeu0VN82NkjMWScl", "parent_session_id": parent}
    ]
    assert only(result, "tools")["success"] == 1


def test_session_status_idle_and_deleted() -> None:
    statuses = [only(run(r), "sessions") for r in find(EXAMPLES, "session.status")]
    assert [s["status"] for s in statuses] == ["busy", "idle", "retry"]
    (idle,) = find(EXAMPLES, "session.idle")
    assert only(run(idle), "sessions") == {"id": MAIN, "status": "idle"}
    (created,) = find(EXAMPLES, "session.created")
    deleted = copy.deepcopy(created)
    deleted["event"]["type"] = "session.deleted"
    row = only(run(deleted), "sessions")
    assert row["status"] == "deleted" and row["end_reason"] == "deleted"


# --- tools ----------------------------------------------------------------------------------


def test_tool_before_opens_the_row_keyed_by_session_and_call() -> None:
    before = callback("tool.execute.before", "toolu_fake_d97307a4776d465c")
    assert only(run(before, received_at=1000), "tools") == {
        "id": WRITE_CALL,
        "session_id": MAIN,
        "tool_name": "write",
        "tool_input": {"filePath": HELLO, "content": "hello world\n"},
        "file_path": HELLO,
        "started_at": 1000,
        "created_at": 1000,
    }


def test_bash_after_exit_zero_is_a_success_with_exit_code_0() -> None:
    after = callback("tool.execute.after", "toolu_fake_828a13c53f9744ff")
    row = only(run(after, received_at=2000), "tools")
    assert row["id"] == BASH_CALL
    assert row["success"] == 1 and row["exit_code"] == 0
    assert row["tool_output"] == "hi\n"
    assert row["ended_at"] == 2000
    assert "error_message" not in row


def test_bash_after_non_zero_exit_is_a_failure() -> None:
    # OpenCode reports a bash `exit 3` as a completed call, output "oops\n" (docs/opencode.md).
    after = copy.deepcopy(callback("tool.execute.after", "toolu_fake_828a13c53f9744ff"))
    after["input"]["args"] = after["input"]["args"] | {"command": "echo oops; exit 3"}
    after["output"] = {
        "title": "echo oops; exit 3",
        "metadata": {"output": "oops\n", "exit": 3, "truncated": False},
        "output": "oops\n",
    }
    row = only(run(after), "tools")
    assert row["success"] == 0
    assert row["exit_code"] == 3
    assert row["error_message"] == "Exit code 3\noops"
    assert row["tool_output"] == "oops\n"


def test_bash_completed_part_with_exit_2_agrees_with_the_callback() -> None:
    # The real failing-bash tool part from `opencode run --format json`, as the bus delivers it.
    (line,) = [
        r
        for r in RUN_JSON
        if r.get("part", {}).get("state", {}).get("metadata", {}).get("exit") == 2
    ]
    part = line["part"]
    record = bus("message.part.updated", {"sessionID": part["sessionID"], "part": part, "time": 1})
    row = only(run(record), "tools")
    assert row["id"] == f"{part['sessionID']}:toolu_fake_ee282b7386614ff4"
    assert row["tool_name"] == "bash"
    assert row["success"] == 0 and row["exit_code"] == 2
    assert row["error_message"].startswith("Exit code 2\nls: cannot access '/definitely/not/here'")
    assert row["started_at"] == 1795246405011 and row["ended_at"] == 1795246405032
    assert row["duration_ms"] == 21
    assert row["message_id"] == "msg_1fd063573001mvLf7ifk5fxfmo"
    # The same failure through tool.execute.after gives the same verdict on the same row.
    after = {
        "kind": "tool.execute.after",
        "input": {
            "tool": "bash",
            "sessionID": part["sessionID"],
            "callID": part["callID"],
            "args": part["state"]["input"],
        },
        "output": {k: part["state"][k] for k in ("title", "metadata", "output")},
    }
    via_callback = only(run(after), "tools")
    assert via_callback["id"] == row["id"]
    assert {k: via_callback[k] for k in ("success", "exit_code", "error_message")} == {
        k: row[k] for k in ("success", "exit_code", "error_message")
    }


def test_killed_bash_without_exit_code_is_a_failure() -> None:
    after = copy.deepcopy(callback("tool.execute.after", "toolu_fake_828a13c53f9744ff"))
    after["output"]["metadata"]["exit"] = None
    row = only(run(after), "tools")
    assert row["success"] == 0 and "exit_code" not in row
    assert row["error_message"].startswith("Killed (no exit code)")


def test_thrown_read_of_a_missing_file_is_completed_from_its_error_part() -> None:
    result = run(tool_part("toolu_fake_1807e11d9cf44f26", "error"))
    assert only(result, "tools") == {
        "id": MISSING_CALL,
        "session_id": MAIN,
        "message_id": "msg_1fd05462e001aIsoCtY7QqJwH9",
        "tool_name": "read",
        "tool_input": {"filePath": MISSING},
        "file_path": MISSING,
        "created_at": 1795246343752,
        "started_at": 1795246343752,
        "ended_at": 1795246343764,
        "duration_ms": 12,
        "success": 0,
        "error_message": f"File not found: {MISSING}",
    }
    assert rows(result, "file_operations") == []  # nothing was read


def test_rejected_permission_is_a_failed_tool() -> None:
    (record,) = find(EXAMPLES, "message.part.updated", lambda r: r["scenario"] == "oc-perm")
    row = only(run(record), "tools")
    assert row["success"] == 0
    assert row["error_message"] == "The user rejected permission to use this specific tool call."
    assert row["duration_ms"] == 56


def test_aborted_tool_is_marked_interrupted() -> None:
    record = copy.deepcopy(tool_part("toolu_fake_1807e11d9cf44f26", "error"))
    part_of(record)["state"]["error"] = "Tool execution aborted"
    row = only(run(record), "tools")
    assert row["interrupted"] == 1 and row["success"] == 0


def test_tool_part_lifecycle_fills_times_without_claiming_an_outcome_early() -> None:
    pending = only(run(tool_part("toolu_fake_828a13c53f9744ff", "pending")), "tools")
    assert pending == {
        "id": BASH_CALL,
        "session_id": MAIN,
        "message_id": BASH_MSG,
        "tool_name": "bash",
        "created_at": 1795246343394,
    }
    running = only(run(tool_part("toolu_fake_828a13c53f9744ff", "running")), "tools")
    assert running["started_at"] == 1795246343401
    assert running["tool_input"] == {"command": "echo hi", "description": "Say hi"}
    assert "success" not in running and "ended_at" not in running
    completed = only(run(tool_part("toolu_fake_828a13c53f9744ff", "completed")), "tools")
    assert completed["success"] == 1 and completed["exit_code"] == 0
    assert completed["duration_ms"] == 69
    assert completed["ended_at"] == 1795246343470


def test_tool_output_is_truncated_on_a_utf8_boundary_with_a_marker() -> None:
    assert truncate_output("hi\n", 10) == "hi\n"
    assert truncate_output("abc", -1) == "abc"
    # 40 bytes into a 35-byte budget: the marker takes 29 (… is 3 bytes), 6 bytes of text fit.
    assert truncate_output("é" * 20, 35) == "ééé…[truncated 34 of 40 bytes]"
    assert truncate_output("é" * 20, 34) == "éé…[truncated 36 of 40 bytes]"  # never half an é
    after = copy.deepcopy(callback("tool.execute.after", "toolu_fake_828a13c53f9744ff"))
    after["output"]["output"] = "ü" * 3000 + "END"
    out = only(run(after, limit=1001), "tools")["tool_output"]
    assert len(out.encode()) <= 1001
    kept, marker = out.split("…")
    assert kept == "ü" * ((1001 - len("…[truncated 6003 of 6003 bytes]".encode())) // 2)
    assert marker == f"[truncated {6003 - len(kept.encode())} of 6003 bytes]"
    # The error text of a thrown tool is cut the same way.
    error = copy.deepcopy(tool_part("toolu_fake_1807e11d9cf44f26", "error"))
    part_of(error)["state"]["error"] = "x" * 5000
    message = only(run(error, limit=100), "tools")["error_message"]
    assert len(message.encode()) <= 100
    assert message == "x" * 67 + "…[truncated 4933 of 5000 bytes]"


# --- file operations ------------------------------------------------------------------------


def test_write_of_a_new_file_is_created_with_its_line_count() -> None:
    expected = {
        "id": f"{WRITE_CALL}:{HELLO}",
        "session_id": MAIN,
        "tool_id": WRITE_CALL,
        "file_path": HELLO,
        "operation_type": "created",
        "lines_added": 1,
        "lines_removed": 0,
    }
    via_after = only(
        run(callback("tool.execute.after", "toolu_fake_d97307a4776d465c"), received_at=5),
        "file_operations",
    )
    assert via_after == expected | {"created_at": 5}
    via_part = only(run(tool_part("toolu_fake_d97307a4776d465c", "completed")), "file_operations")
    assert via_part == expected | {"created_at": 1795246343542}


def test_overwrite_is_an_edit() -> None:
    after = copy.deepcopy(callback("tool.execute.after", "toolu_fake_d97307a4776d465c"))
    after["output"]["metadata"]["exists"] = True
    op = only(run(after), "file_operations")
    assert op["operation_type"] == "edited" and "lines_added" not in op


def test_edit_counts_lines_from_filediff_and_read_is_a_read() -> None:
    edit = only(
        run(callback("tool.execute.after", "toolu_fake_a76976381f66458c")), "file_operations"
    )
    assert (edit["id"], edit["operation_type"], edit["lines_added"], edit["lines_removed"]) == (
        f"{EDIT_CALL}:{HELLO}", "edited", 1, 1,
    )  # fmt: skip
    read = only(run(tool_part("toolu_fake_0e20e301de744767", "completed")), "file_operations")
    assert (read["id"], read["operation_type"], read["file_path"]) == (
        f"{READ_CALL}:{HELLO}",
        "read",
        HELLO,
    )
    assert "lines_added" not in read


def test_apply_patch_makes_one_op_per_file() -> None:
    after = {
        "kind": "tool.execute.after",
        "input": {
            "tool": "apply_patch",
            "sessionID": MAIN,
            "callID": "call_p",
            "args": {"patchText": "*** Begin Patch"},
        },
        "output": {
            "output": "Success. Updated the following files:\nA new.py\nM old.py\nD gone.py",
            "metadata": {
                "files": [
                    {"filePath": f"{PROJ}/new.py", "type": "add", "additions": 3, "deletions": 0},
                    {
                        "filePath": f"{PROJ}/old.py",
                        "type": "update",
                        "additions": 2,
                        "deletions": 1,
                    },
                    {
                        "filePath": f"{PROJ}/gone.py",
                        "type": "delete",
                        "additions": 0,
                        "deletions": 4,
                    },
                ]
            },
        },
    }
    ops = {op["file_path"]: op for op in rows(run(after), "file_operations")}
    assert {
        p: (o["operation_type"], o["lines_added"], o["lines_removed"]) for p, o in ops.items()
    } == {
        f"{PROJ}/new.py": ("created", 3, 0),
        f"{PROJ}/old.py": ("edited", 2, 1),
        f"{PROJ}/gone.py": ("deleted", 0, 4),
    }
    assert all(o["tool_id"] == f"{MAIN}:call_p" for o in ops.values())


def test_search_tools_record_the_directory_searched() -> None:
    after = {
        "kind": "tool.execute.after",
        "input": {
            "tool": "grep",
            "sessionID": MAIN,
            "callID": "call_g",
            "args": {"pattern": "hello", "path": PROJ},
        },
        "output": {
            "title": "hello",
            "metadata": {"matches": 1, "truncated": False},
            "output": "Found 1 match",
        },
    }
    op = only(run(after), "file_operations")
    assert (op["id"], op["file_path"], op["operation_type"]) == (
        f"{MAIN}:call_g:{PROJ}",
        PROJ,
        "searched",
    )
    del after["input"]["args"]["path"]  # defaults to the working directory, which we do not know
    assert rows(run(after), "file_operations") == []


def test_file_edited_bus_event_is_a_separate_notification_row() -> None:
    (record,) = find(EXAMPLES, "file.edited")
    result = run(record, received_at=7)
    assert result.session_id is None
    assert only(result, "file_operations") == {
        "id": "file.edited:evt_1fd05457300156y2gQeXLDwGNC",
        "file_path": HELLO,
        "operation_type": "file.edited",
        "created_at": 7,
    }


# --- errors ---------------------------------------------------------------------------------


def test_session_error_with_status_code_400() -> None:
    (record,) = [r for r in ERRORS if r["scenario"] == "oc-error400"]
    assert only(run(record, received_at=9), "session_errors") == {
        "id": "evt_1fd0566bb0012z7cGcoHziuQCk",
        "session_id": "ses_e02fa9ce4ffef0gy5CPuAPU5eg",
        "error_type": "APIError",
        "error_message": "fake bad request",
        "status_code": 400,
        "created_at": 9,
    }


def test_every_session_error_sample() -> None:
    got = [
        (e["error_type"], e.get("status_code"), e["error_message"][:20])
        for r in ERRORS
        for e in rows(run(r), "session_errors")
    ]
    assert got == [
        ("UnknownError", None, 'Command not found: "'),
        ("APIError", 400, "fake bad request"),
        ("retry", None, "fake internal error"),
        ("retry", None, "fake internal error"),
        ("retry", None, "fake internal error"),
        ("retry", None, "fake internal error"),
        ("retry", None, "fake internal error"),
        ("APIError", 500, "fake internal error"),
        ("UnknownError", None, "JSON parsing failed:"),
        ("retry", None, "transient fake error"),
    ]
    ids = [e["id"] for r in ERRORS for e in rows(run(r), "session_errors")]
    assert len(set(ids)) == len(ids)


# --- messages and tokens --------------------------------------------------------------------


def test_user_message_from_chat_message_and_message_updated_share_a_row() -> None:
    (chat,) = find(EXAMPLES, "chat.message")
    (updated,) = find(
        EXAMPLES, "message.updated", lambda r: r["event"]["properties"]["info"]["role"] == "user"
    )
    expected = {
        "id": USER_MSG,
        "session_id": MAIN,
        "role": "user",
        "created_at": 1795246342414,
        "model": "fake/model",
        "provider": "fake",
    }
    assert only(run(chat), "messages") == expected
    # message.updated cannot tell a typed prompt from one OpenCode wrote: it leaves role alone.
    assert only(run(updated), "messages") == {k: v for k, v in expected.items() if k != "role"}


def test_streaming_assistant_message_reports_no_tokens_yet() -> None:
    (record,) = find(
        EXAMPLES, "message.updated", lambda r: r["event"]["properties"]["info"]["id"] == BASH_MSG
    )
    result = run(record)
    assert only(result, "messages") == {
        "id": BASH_MSG,
        "session_id": MAIN,
        "role": "assistant",
        "created_at": 1795246342942,
        "model": "fake/model",
        "provider": "fake",
    }
    assert only(result, "sessions") == {"id": MAIN, "model": "fake/model", "provider": "fake"}


def test_finished_assistant_message_carries_its_tokens_and_cost() -> None:
    record = assistant_update(BASH_MSG, "evt_final", CACHED_TOKENS, 1795246343474, cost=0.0123)
    assert only(run(record), "messages") == {
        "id": BASH_MSG,
        "session_id": MAIN,
        "role": "assistant",
        "created_at": 1795246342942,
        "completed_at": 1795246343474,
        "model": "fake/model",
        "provider": "fake",
        "prompt_tokens": 95,
        "completion_tokens": 17,
        "reasoning_tokens": 3,
        "cache_read_tokens": 5,
        "cache_write_tokens": 0,
        "cost": 0.0123,
    }
    # The errored 400 message is finished too: its zeros are real.
    (error,) = find(EXAMPLES, "message.updated", lambda r: r["scenario"] == "oc-error400")
    msg = only(run(error), "messages")
    assert msg["completed_at"] == 1795246352060 and msg["prompt_tokens"] == 0


# --- compaction -----------------------------------------------------------------------------


def summary_message(
    tokens: dict[str, Any],
    evt: str = "evt_summary",
    completed: int | None = 1795246386750,
    **extra: Any,
) -> dict[str, Any]:
    """The compaction's summary message: assistant, summary: true, parentID = the compaction message."""
    record = assistant_update(
        "msg_1fd05ee1a001summary", evt, tokens, completed, created=1795246386720,
        parentID=COMPACT_MSG, sessionID=COMPACT, mode="compaction", agent="compaction", summary=True,
    )  # fmt: skip
    record["event"]["properties"]["sessionID"] = COMPACT
    record["event"]["properties"]["info"].update(extra)
    return record


SUMMARY_TOKENS = {
    "total": 2150,
    "input": 1200,
    "output": 150,
    "reasoning": 0,
    "cache": {"read": 780, "write": 20},
}


def test_compaction_part_gives_the_trigger_and_summary_message_the_tokens() -> None:
    (part,) = find(EXAMPLES, "message.part.updated", lambda r: part_of(r)["type"] == "compaction")
    assert only(run(part), "compaction_events") == {
        "id": f"{COMPACT}:{COMPACT_MSG}",
        "session_id": COMPACT,
        "trigger": "auto",
        "created_at": 1795246386713,
    }
    manual = copy.deepcopy(part)
    part_of(manual)["auto"] = False
    assert only(run(manual), "compaction_events")["trigger"] == "manual"

    result = run(summary_message(SUMMARY_TOKENS))
    assert only(result, "compaction_events") == {
        "id": f"{COMPACT}:{COMPACT_MSG}",
        "session_id": COMPACT,
        "created_at": 1795246386720,
        "tokens_before": 2000,  # what the summarizer read: input + cache read + cache write
        "tokens_after": 150,  # the summary that replaces it
    }
    assert only(result, "messages")["prompt_tokens"] == 1200  # its cost counts for the session
    assert rows(result, "sessions") == []  # the compaction model is not the session's model

    # A summary still streaming, or one that failed, says nothing about tokens.
    zeros = {"input": 0, "output": 0, "reasoning": 0, "cache": {"read": 0, "write": 0}}
    streaming = only(run(summary_message(zeros, completed=None)), "compaction_events")
    assert "tokens_before" not in streaming and "tokens_after" not in streaming
    failed = only(
        run(summary_message(SUMMARY_TOKENS, error={"name": "ContextOverflowError"})),
        "compaction_events",
    )
    assert "tokens_before" not in failed and "tokens_after" not in failed


def test_session_compacted_names_only_the_session() -> None:
    (record,) = find(EXAMPLES, "session.compacted")
    result = run(record)
    assert (result.kind, result.session_id, result.rows) == ("session.compacted", COMPACT, [])


# --- never raises ---------------------------------------------------------------------------


MALFORMED: list[Any] = [
    None, [], "text", 3, {}, {"kind": None}, {"kind": 5}, {"kind": "event"},
    {"kind": "event", "event": []}, {"kind": "event", "event": {"type": 7}},
    {"kind": "event", "event": {"type": "session.status", "properties": {"sessionID": "s", "status": "busy"}}},
    {"kind": "event", "event": {"type": "session.error", "properties": {"error": "boom"}}},
    {"kind": "event", "event": {"type": "message.updated", "properties": {"info": {"id": "m", "role": "assistant", "tokens": {"input": "many"}, "time": []}}}},
    {"kind": "event", "event": {"type": "message.part.updated", "properties": {"part": {"type": "tool", "callID": 5, "state": "weird"}}}},
    {"kind": "event", "event": {"type": "message.part.updated", "properties": {"sessionID": "s", "part": {"type": "tool", "callID": "c", "state": {"status": "completed", "time": {"start": "x", "end": 2.5}, "metadata": {"exit": "1", "files": [3, {"type": "add"}]}}}}}},
    {"kind": "event", "event": {"type": "file.edited", "properties": {"file": ["x"]}}},
    {"kind": "tool.execute.before", "input": "bad", "output": None},
    {"kind": "tool.execute.after", "input": {"sessionID": "s", "callID": "c", "args": []}, "output": {"metadata": [], "output": 5}},
    {"kind": "chat.message", "input": {}, "output": {"message": "hi"}},
    {"kind": "event", "event": {"type": "brand.new.event", "properties": {"sessionID": "s", "x": 1}}},
]  # fmt: skip


@pytest.mark.parametrize("payload", MALFORMED)
def test_malformed_payloads_never_raise(payload: Any) -> None:
    result = normalize(payload, Context("opencode", "eid", 1, 100))
    assert isinstance(result.kind, str) and result.kind
    for row in result.rows:
        assert row.values["id"]


def _mutations(value: Any) -> Iterator[Any]:
    """The record with each nested value in turn replaced by something of the wrong type."""
    if isinstance(value, dict):
        for key in value:
            for wrong in (None, [], "x", 7, {}):
                yield {**value, key: wrong}
            for inner in _mutations(value[key]):
                yield {**value, key: inner}


def test_wrong_types_anywhere_in_real_samples_never_raise() -> None:
    count = 0
    for record in EXAMPLES + ERRORS:
        for mutated in _mutations(record):
            result = normalize(mutated, Context("opencode", "eid", 1, 64))
            assert isinstance(result.kind, str)
            for row in result.rows:
                assert row.table in TYPED_TABLES and row.values["id"]
            count += 1
    assert count > 5000


# --- end to end through the store -----------------------------------------------------------


async def feed(db: Path, records: list[dict[str, Any]]) -> None:
    store = Store(db)
    await store.open()
    try:
        for record in records:
            await store.ingest("opencode", json.dumps(record).encode(), record["ts"])
    finally:
        await store.close()


def main_run() -> list[dict[str, Any]]:
    """The oc-main samples in order, plus the final message.updated of two assistant messages
    (each reported twice, as OpenCode does), inserted where OpenCode sends them."""
    records = [copy.deepcopy(r) for r in EXAMPLES if r["scenario"] == "oc-main"]
    finals = {
        # after the bash step's step-finish part
        "evt_1fd054531001CigXzEbtgxC99F": [
            assistant_update(BASH_MSG, "evt_final_a1", STEP_TOKENS, 1795246343474),
            assistant_update(BASH_MSG, "evt_final_a2", STEP_TOKENS, 1795246343474),
        ],
        # after the write tool completed
        "evt_1fd054576001DGcOPPHX3CJ7iz": [
            assistant_update(WRITE_MSG, "evt_final_b0", None, None, created=1795246343515),
            assistant_update(
                WRITE_MSG, "evt_final_b1", CACHED_TOKENS, 1795246343545, 1795246343515, cost=0.5
            ),
            assistant_update(
                WRITE_MSG, "evt_final_b2", CACHED_TOKENS, 1795246343545, 1795246343515, cost=0.5
            ),
        ],
    }
    out = []
    for record in records:
        out.append(record)
        for extra in finals.get(record.get("event", {}).get("id"), []):
            extra["ts"] = record["ts"] + 1
            out.append(extra)
    return out


async def test_main_run_through_the_store(tmp_path: Path) -> None:
    db = tmp_path / "agentd.db"
    records = main_run()
    await feed(db, records)
    await feed(db, records)  # a full replay (spool drain, re-import) changes nothing

    (session,) = query_db(db, "SELECT * FROM sessions")
    # Migration 9's columns: the status's own time, and the outcome the run's one session.error
    # gave it (OpenCode reported the unknown /compact command as an error).
    assert session.pop("status_at") >= session["created_at"]
    assert session.pop("outcome") == "error"
    assert session.pop("last_error").startswith('Command not found: "compact"')
    assert session.pop("outcome_at") >= session.pop("last_error_at") >= session["created_at"]
    assert session == {
        "id": MAIN,
        "source": "opencode",
        "parent_session_id": None,
        "title": "New session - 2026-11-21T07:32:22.353Z",
        "project_path": PROJ,
        "project_name": "proj",
        "model": "fake/model",
        "provider": "fake",
        "status": "idle",
        "permission_mode": None,
        "end_reason": None,
        # two assistant messages, each reported up to four times: counted once each
        "prompt_tokens": 100 + 95,
        "completion_tokens": 20 + 17,
        "cache_read_tokens": 0 + 5,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0 + 3,
        "cost": 0.5,
        "message_count": 3,
        "prompt_count": 1,
        "tool_call_count": 5,
        "created_at": 1795246342353,
        "updated_at": 1795246371802,
        "ended_at": None,
        "redactions": 0,
        "git_branch": None,
        # the fake model has no price: the message the provider priced at 0 is unknown, not $0
        "computed_cost": None,
        "unpriced_messages": 1,
    }

    tools = {t["id"]: t for t in query_db(db, "SELECT * FROM tools")}
    assert set(tools) == {BASH_CALL, WRITE_CALL, READ_CALL, EDIT_CALL, MISSING_CALL}
    for tool in tools.values():
        assert tool["session_id"] == MAIN and tool["source"] == "opencode"
    bash = tools[BASH_CALL]
    assert json.loads(bash["tool_input"]) == {"command": "echo hi", "description": "Say hi"}
    assert {k: bash[k] for k in ("tool_name", "tool_output", "success", "exit_code", "error_message", "message_id")} == {
        "tool_name": "bash", "tool_output": "hi\n", "success": 1, "exit_code": 0, "error_message": None,
        "message_id": BASH_MSG,
    }  # fmt: skip
    # created = first sighting (pending part), started = tool.execute.before, ended = part end
    assert (bash["created_at"], bash["started_at"], bash["ended_at"], bash["duration_ms"]) == (
        1795246343394, 1795246343399, 1795246343470, 69,
    )  # fmt: skip
    missing = tools[MISSING_CALL]
    assert {k: missing[k] for k in ("tool_name", "file_path", "success", "error_message", "tool_output", "started_at", "ended_at", "duration_ms")} == {
        "tool_name": "read", "file_path": MISSING, "success": 0,
        "error_message": f"File not found: {MISSING}", "tool_output": None,
        "started_at": 1795246343752, "ended_at": 1795246343764, "duration_ms": 12,
    }  # fmt: skip
    assert [(tools[c]["tool_name"], tools[c]["file_path"], tools[c]["success"]) for c in (WRITE_CALL, READ_CALL, EDIT_CALL)] == [
        ("write", HELLO, 1), ("read", HELLO, 1), ("edit", HELLO, 1),
    ]  # fmt: skip
    assert tools[EDIT_CALL]["tool_output"] == "Edit applied successfully."
    assert tools[WRITE_CALL]["duration_ms"] == 17

    ops = query_db(
        db,
        "SELECT id, session_id, tool_id, file_path, operation_type, lines_added, lines_removed,"
        " created_at FROM file_operations ORDER BY created_at",
    )
    assert ops == [
        {"id": "file.edited:evt_1fd05457300156y2gQeXLDwGNC", "session_id": None, "tool_id": None,
         "file_path": HELLO, "operation_type": "file.edited", "lines_added": None, "lines_removed": None,
         "created_at": 1795246343539},
        {"id": f"{WRITE_CALL}:{HELLO}", "session_id": MAIN, "tool_id": WRITE_CALL, "file_path": HELLO,
         "operation_type": "created", "lines_added": 1, "lines_removed": 0, "created_at": 1795246343541},
        {"id": f"{READ_CALL}:{HELLO}", "session_id": MAIN, "tool_id": READ_CALL, "file_path": HELLO,
         "operation_type": "read", "lines_added": None, "lines_removed": None, "created_at": 1795246343605},
        {"id": f"{EDIT_CALL}:{HELLO}", "session_id": MAIN, "tool_id": EDIT_CALL, "file_path": HELLO,
         "operation_type": "edited", "lines_added": 1, "lines_removed": 1, "created_at": 1795246343662},
    ]  # fmt: skip

    messages = {m["id"]: m for m in query_db(db, "SELECT * FROM messages")}
    assert set(messages) == {USER_MSG, BASH_MSG, WRITE_MSG}
    assert (messages[BASH_MSG]["prompt_tokens"], messages[BASH_MSG]["completed_at"]) == (
        100,
        1795246343474,
    )
    assert messages[USER_MSG]["role"] == "user" and messages[USER_MSG]["prompt_tokens"] is None

    (error,) = query_db(db, "SELECT * FROM session_errors")
    assert (error["session_id"], error["error_type"], error["status_code"]) == (
        MAIN,
        "UnknownError",
        None,
    )
    assert error["error_message"].startswith('Command not found: "compact"')

    kinds = query_db(db, "SELECT kind, count(*) AS n FROM events GROUP BY kind")
    assert {k["kind"]: k["n"] for k in kinds}["message.part.updated"] == 16
    assert sum(k["n"] for k in kinds) == len(records)


async def test_compaction_through_the_store(tmp_path: Path) -> None:
    db = tmp_path / "agentd.db"
    part, compacting, compacted = [r for r in EXAMPLES if r["scenario"] == "oc-compact"]
    summary = summary_message(SUMMARY_TOKENS)
    summary["ts"] = compacting["ts"] + 20
    zeros = {"input": 0, "output": 0, "reasoning": 0, "cache": {"read": 0, "write": 0}}
    streaming = summary_message(zeros, evt="evt_s0", completed=None)
    streaming["ts"] = compacting["ts"] + 1
    await feed(db, [part, compacting, streaming, summary, compacted])

    (row,) = query_db(db, "SELECT * FROM compaction_events")
    assert row == {
        "id": f"{COMPACT}:{COMPACT_MSG}",
        "session_id": COMPACT,
        "source": "opencode",
        "trigger": "auto",
        "tokens_before": 2000,
        "tokens_after": 150,
        "messages_before": None,
        "messages_after": None,
        "created_at": 1795246386713,
        "redactions": 0,
    }
    (session,) = query_db(db, "SELECT id, prompt_tokens, completion_tokens, model FROM sessions")
    assert session == {
        "id": COMPACT,
        "prompt_tokens": 1200,
        "completion_tokens": 150,
        "model": None,
    }
