"""The OpenCode normalizer on what spans a turn: how a session ended (outcome, last_error), which
user messages are typed prompts, retries' status codes, a write's line counts, model names.

Records are the real 1.18.33 payloads (tests/payloads) or copies of them changed as noted; the
order of the events in the store tests is the order the real CLI sends them (test_capture_opencode
runs them for real).
"""

from __future__ import annotations

import copy
import json
import sqlite3
from pathlib import Path
from typing import Any

from test_sources_opencode import ERRORS, EXAMPLES, MAIN, USER_MSG, bus, find, only, rows, run

from agentd.db.store import Store, connect_sync
from agentd.normalizers._opencode import diff_counts, is_machine_prompt_part, model_name
from conftest import query_db

ERROR400 = "ses_e02fa9ce4ffef0gy5CPuAPU5eg"
CONTINUE_TEXT = (
    "Continue if you have next steps, or stop and ask for clarification if you are unsure how "
    "to proceed."
)


def session_error_400() -> dict[str, Any]:
    (record,) = [r for r in ERRORS if r["scenario"] == "oc-error400"]
    return copy.deepcopy(record)


def errored_message_400() -> dict[str, Any]:
    (record,) = find(EXAMPLES, "message.updated", lambda r: r["scenario"] == "oc-error400")
    return copy.deepcopy(record)


def text_part(message: str, **fields: Any) -> dict[str, Any]:
    part = {"id": "prt_t", "messageID": message, "sessionID": MAIN, "type": "text", **fields}
    return bus("message.part.updated", {"sessionID": MAIN, "part": part, "time": 5})


# --- outcome --------------------------------------------------------------------------------


def test_session_error_ends_the_session_with_outcome_error() -> None:
    result = run(session_error_400())
    assert only(result, "sessions") == {
        "id": ERROR400,
        "outcome": "error",
        "last_error": "HTTP 400: fake bad request",
    }
    assert only(result, "session_errors")["status_code"] == 400  # still its own row


def test_errored_assistant_message_says_the_same_as_the_session_error() -> None:
    # OpenCode sends the same error on the message it was writing (after session.idle): the
    # import, which has only the message, must agree with live capture.
    assert only(run(errored_message_400()), "sessions") == {
        "id": ERROR400,
        "model": "fake/model",
        "provider": "fake",
        "outcome": "error",
        "last_error": "HTTP 400: fake bad request",
    }


def test_aborted_run_is_interrupted() -> None:
    record = session_error_400()
    record["event"]["properties"]["error"] = {
        "name": "MessageAbortedError",
        "data": {"message": "The operation was aborted."},
    }
    row = only(run(record), "sessions")
    assert (row["outcome"], row["last_error"]) == ("interrupted", "The operation was aborted.")


def test_clean_final_answer_is_ok_and_tool_steps_say_nothing() -> None:
    final = errored_message_400()
    info = final["event"]["properties"]["info"]
    del info["error"]
    info["finish"] = "stop"
    assert only(run(final), "sessions")["outcome"] == "ok"
    info["finish"] = "tool-calls"  # the loop goes on: not the end of the turn
    assert "outcome" not in only(run(final), "sessions")
    info["finish"] = "stop"
    del info["time"]["completed"]  # still streaming
    assert "outcome" not in only(run(final), "sessions")


def test_compaction_summary_is_not_the_end_of_the_turn() -> None:
    final = errored_message_400()
    info = final["event"]["properties"]["info"]
    del info["error"]
    info.update(finish="stop", summary=True, mode="compaction")
    assert rows(run(final), "sessions") == []


def test_idle_says_nothing_about_the_outcome() -> None:
    # session.idle follows session.error: it must not turn an error into a clean end.
    for record in (
        bus("session.idle", {"sessionID": MAIN}),
        bus("session.status", {"sessionID": MAIN, "status": {"type": "idle"}}),
    ):
        assert only(run(record), "sessions") == {"id": MAIN, "status": "idle"}


# --- typed prompts --------------------------------------------------------------------------


def test_compaction_and_continue_parts_mark_their_message_as_opencodes_own() -> None:
    (compaction,) = find(
        EXAMPLES,
        "message.part.updated",
        lambda r: r["event"]["properties"]["part"]["type"] == "compaction",
    )
    message = compaction["event"]["properties"]["part"]["messageID"]
    marked = [r for r in rows(run(compaction), "messages")]
    assert marked == [
        {
            "id": message,
            "session_id": compaction["event"]["properties"]["sessionID"],
            "role": "system",
        }
    ]
    # The "Continue" prompt after an automatic compaction: 1.18 marks it, 1.1 only by its text.
    for fields in (
        {"synthetic": True, "text": CONTINUE_TEXT, "metadata": {"compaction_continue": True}},
        {"synthetic": True, "text": CONTINUE_TEXT},
    ):
        assert only(run(text_part("msg_c", **fields)), "messages")["role"] == "system"
    # A typed prompt's text, or a synthetic part OpenCode adds to one (a file it read for it).
    for fields in (
        {"text": "do the thing"},
        {"synthetic": True, "text": "Called the Read tool with the following input: {}"},
    ):
        assert rows(run(text_part("msg_u", **fields)), "messages") == []


def test_machine_prompt_test_matches_opencodes() -> None:
    assert is_machine_prompt_part({"type": "compaction", "auto": True})
    assert not is_machine_prompt_part({"type": "text", "text": CONTINUE_TEXT})  # typed by a person
    assert not is_machine_prompt_part({"type": "tool", "synthetic": True})


async def feed(db: Path, records: list[dict[str, Any]]) -> None:
    """Through a store whose sessions table has `outcome` and `last_error` (they come with another
    migration; added here when this branch's schema lacks them)."""
    conn = connect_sync(db)
    present = {r[1] for r in conn.execute("PRAGMA table_info(sessions)")}
    for column in ("outcome", "last_error"):
        if column not in present:
            conn.execute(f"ALTER TABLE sessions ADD COLUMN {column} TEXT")
    conn.close()
    store = Store(db)
    await store.open()
    try:
        for tick, record in enumerate(records):
            await store.ingest("opencode", json.dumps(record).encode(), 1000 + tick)
    finally:
        await store.close()


async def test_prompt_count_counts_typed_prompts_in_any_order(tmp_path: Path) -> None:
    (chat,) = find(EXAMPLES, "chat.message")
    (user,) = find(
        EXAMPLES, "message.updated", lambda r: r["event"]["properties"]["info"]["role"] == "user"
    )
    compaction_user = copy.deepcopy(user)
    compaction_user["event"]["properties"]["info"]["id"] = "msg_compact"
    compaction_part = text_part("msg_compact")
    compaction_part["event"]["properties"]["part"] = {
        "id": "prt_c", "messageID": "msg_compact", "sessionID": MAIN, "type": "compaction", "auto": True,
    }  # fmt: skip
    continue_user = copy.deepcopy(user)
    continue_user["event"]["properties"]["info"]["id"] = "msg_continue"
    continue_part = text_part("msg_continue", synthetic=True, text=CONTINUE_TEXT)
    # OpenCode updates a user message again at the end of the turn (its summary): after its parts.
    late = copy.deepcopy(compaction_user)
    late["event"]["properties"]["info"]["summary"] = {"diffs": []}
    for order in (
        [chat, user, compaction_user, compaction_part, continue_user, continue_part, late],
        [compaction_part, continue_part, late, user, chat, continue_user, compaction_user],
    ):
        db = tmp_path / f"{len(list(tmp_path.iterdir()))}.db"
        await feed(db, order)
        (session,) = query_db(db, "SELECT prompt_count, message_count FROM sessions")
        assert session == {"prompt_count": 1, "message_count": 3}
        roles = query_db(db, "SELECT id, role FROM messages ORDER BY id")
        assert {r["id"]: r["role"] for r in roles} == {
            USER_MSG: "user", "msg_compact": "system", "msg_continue": "system",
        }  # fmt: skip


async def test_a_401_session_reads_error_after_idle_in_the_real_order(tmp_path: Path) -> None:
    db = tmp_path / "agentd.db"
    error = session_error_400()
    idle = [
        bus("session.status", {"sessionID": ERROR400, "status": {"type": "idle"}}, "evt_i1"),
        bus("session.idle", {"sessionID": ERROR400}, "evt_i2"),
    ]
    await feed(db, [error, *idle, errored_message_400(), *idle])
    (session,) = query_db(db, "SELECT status, outcome, last_error FROM sessions")
    assert session == {
        "status": "idle",
        "outcome": "error",
        "last_error": "HTTP 400: fake bad request",
    }
    # A later prompt that ends cleanly makes the session ok again (last_error keeps the error).
    final = errored_message_400()
    info = final["event"]["properties"]["info"]
    del info["error"]
    info.update(id="msg_next", finish="stop")
    final["event"]["id"] = "evt_next"
    await feed(db, [final])
    (session,) = query_db(db, "SELECT outcome, last_error FROM sessions")
    assert session == {"outcome": "ok", "last_error": "HTTP 400: fake bad request"}


def test_outcome_columns_are_ignored_by_a_schema_without_them(tmp_path: Path) -> None:
    """Before the migration that adds `outcome` lands, the rows still store (Binder skips
    unknown columns)."""
    import asyncio

    db = tmp_path / "plain.db"

    async def go() -> None:
        store = Store(db)
        await store.open()
        try:
            await store.ingest("opencode", json.dumps(session_error_400()).encode(), 1)
        finally:
            await store.close()

    asyncio.run(go())
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM session_errors").fetchone() == (1,)
    conn.close()


# --- retries, writes, model names -----------------------------------------------------------


def test_retry_keeps_its_status_code_where_opencode_gives_one() -> None:
    retry = {
        "id": "prt_r", "messageID": "msg_a", "sessionID": MAIN, "type": "retry", "attempt": 1,
        "error": {"name": "APIError", "data": {"message": "Rate limited", "statusCode": 429}},
        "time": {"created": 77},
    }  # fmt: skip
    row = only(
        run(bus("message.part.updated", {"sessionID": MAIN, "part": retry})), "session_errors"
    )
    assert row == {
        "id": "prt_r",
        "session_id": MAIN,
        "error_type": "retry",
        "error_message": "Rate limited",
        "status_code": 429,
        "created_at": 77,
    }
    # 1.18's retry status has no code (test_sources_opencode); one that carries the error keeps it.
    status = {"type": "retry", "attempt": 2, "message": "Overloaded", "next": 9,
              "error": {"name": "APIError", "data": {"statusCode": 529}}}  # fmt: skip
    record = bus("session.status", {"sessionID": MAIN, "status": status})
    assert only(run(record), "session_errors")["status_code"] == 529


def test_write_over_an_existing_file_gets_line_counts() -> None:
    (after,) = find(
        EXAMPLES,
        "tool.execute.after",
        lambda r: r["input"]["tool"] == "write",
    )
    after = copy.deepcopy(after)
    metadata = after["output"]["metadata"]
    metadata["exists"] = True
    metadata["diff"] = "Index: f\n===\n--- f\n+++ f\n@@ -1,3 +1,4 @@\n a\n-b\n+B\n c\n+d\n"
    op = only(run(after), "file_operations")
    assert (op["operation_type"], op["lines_added"], op["lines_removed"]) == ("edited", 2, 1)
    # From the turn's snapshot diff, as the importers attach it to the completed part.
    (part,) = find(
        EXAMPLES,
        "message.part.updated",
        lambda r: (
            r["event"]["properties"]["part"].get("tool") == "write"
            and r["event"]["properties"]["part"]["state"]["status"] == "completed"
        ),
    )
    part = copy.deepcopy(part)
    part["event"]["properties"]["part"]["state"]["metadata"]["exists"] = True
    part["event"]["properties"]["agentd_snapshot_diff"] = {"additions": 3, "deletions": 2}
    op = only(run(part), "file_operations")
    assert (op["operation_type"], op["lines_added"], op["lines_removed"]) == ("edited", 3, 2)


def test_diff_counts_and_model_names() -> None:
    assert diff_counts("@@ -1 +1 @@\n-a\n+b\n") == (1, 1)
    assert diff_counts("not a diff") is None
    assert model_name("model", "fake") == "fake/model"
    assert model_name("anthropic/claude", "openrouter") == "openrouter/anthropic/claude"
    assert model_name("fake/model", "fake") == "fake/model"
    assert model_name("model", None) == "model"
