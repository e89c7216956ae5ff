"""The data behind one session's page: its tool calls laid out in lanes (the main agent, each
Claude subagent, each OpenCode child session), files, errors, compactions, tokens and cost over
time, and the newest raw events (the live tail)."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

import msgspec

from agentd.query.costs import MESSAGE_COST, SESSION_COST
from agentd.ui.views import outcome_sql

__all__ = ["session", "MAX_CALLS"]

MAX_CALLS = 2000  # calls drawn per session page; the JSON says when there were more
TAIL = 30
_decode = msgspec.json.Decoder().decode


def _summary(tool_name: str, tool_input: str | None) -> str:
    """One line saying what a call did: its command, file or pattern."""
    try:
        # msgspec first: several times faster than json on the 2 000 calls of a big session.
        args = _decode(tool_input) if tool_input else {}
    except msgspec.DecodeError:
        try:  # what msgspec refuses and json takes (NaN, huge numbers)
            args = json.loads(tool_input or "")
        except ValueError:
            return (tool_input or "")[:120]
    if not isinstance(args, dict):
        return ""
    for key in ("command", "file_path", "filePath", "pattern", "url", "query", "description",
                "prompt", "path"):  # fmt: skip
        value = args.get(key)
        if isinstance(value, str) and value:
            return value.splitlines()[0][:160] if value.strip() else ""
    return ""


def _calls(conn: sqlite3.Connection, session_id: str, lane_of_main: str) -> list[dict[str, Any]]:
    # In start order through the tools_ui_session_order index (migration 0010): only the first
    # MAX_CALLS + 1 rows are read, however long the session.
    cur = conn.cursor()
    cur.row_factory = None  # tuples zipped with the names below: cheaper than sqlite3.Row
    rows = cur.execute(
        "SELECT t.id, t.tool_name, t.agent_id, t.success, t.error_message, t.exit_code, "
        "t.duration_ms, t.started_at, t.ended_at, t.created_at, t.file_path, t.interrupted, "
        "substr(t.tool_input, 1, 2000) AS tool_input FROM tools t WHERE t.session_id = ? "
        "ORDER BY coalesce(t.started_at, t.created_at), t.id LIMIT ?",
        (session_id, MAX_CALLS + 1),
    ).fetchall()
    names = [d[0] for d in cur.description]
    calls = []
    for r in rows:
        call = dict(zip(names, r, strict=True))
        call["summary"] = _summary(call["tool_name"], call.pop("tool_input"))
        start, end, duration = call["started_at"], call["ended_at"], call["duration_ms"]
        # Where the bar goes: the exact start when known, else its end less its duration.
        if start is None and end is not None and duration is not None:
            start = end - duration
        call["start"] = start if start is not None else call["created_at"]
        call["end"] = (call["start"] + duration) if duration is not None else (end or call["start"])
        call["lane"] = f"subagent {call['agent_id']}" if call["agent_id"] else lane_of_main
        call["outcome"] = {1: "ok", 0: "failed"}.get(call["success"], "unknown")
        calls.append(call)
    return calls


def session(conn: sqlite3.Connection, session_id: str) -> dict[str, Any] | None:
    """Everything the session page shows; None when there is no such session."""
    now = int(time.time() * 1000)
    row = conn.execute(
        f"SELECT s.*, {SESSION_COST} AS shown_cost, {outcome_sql(conn)} AS outcome FROM sessions s "
        "WHERE s.id = :id",
        {"id": session_id, "now": now},
    ).fetchone()
    if row is None:
        return None
    info = dict(row)
    info["cost"] = info.pop("shown_cost")  # the agent's figure, else the computed one
    info["agent"] = info["source"]
    calls = _calls(conn, session_id, "main")
    children = [dict(r) for r in conn.execute(
        f"SELECT s.id, s.title, s.source, s.status, {SESSION_COST} AS cost, s.tool_call_count, "
        "s.created_at FROM sessions s WHERE s.parent_session_id = ? ORDER BY s.created_at",
        (session_id,))]  # fmt: skip
    for child in children:  # OpenCode subagents are sessions of their own: one lane each
        calls += _calls(conn, child["id"], f"subagent {child['title'] or child['id'][:12]}")
    truncated = len(calls) > MAX_CALLS
    calls = sorted(calls, key=lambda c: c["start"] or 0)[:MAX_CALLS]

    files = [dict(r) for r in conn.execute(
        "SELECT file_path, count(*) AS operations, group_concat(DISTINCT operation_type) AS kinds, "
        "coalesce(sum(lines_added), 0) AS lines_added, coalesce(sum(lines_removed), 0) AS lines_removed, "
        "max(created_at) AS last_at FROM file_operations WHERE session_id = ? "
        "GROUP BY file_path ORDER BY lines_added + lines_removed DESC, operations DESC",
        (session_id,))]  # fmt: skip
    errors = [dict(r) for r in conn.execute(
        "SELECT error_type, error_message, status_code, created_at FROM session_errors "
        "WHERE session_id = ? ORDER BY created_at", (session_id,))]  # fmt: skip
    compactions = [dict(r) for r in conn.execute(
        "SELECT trigger, tokens_before, tokens_after, messages_before, messages_after, created_at "
        "FROM compaction_events WHERE session_id = ? ORDER BY created_at", (session_id,))]  # fmt: skip
    usage, tokens, cost = [], 0, 0.0
    for m in conn.execute(
        "SELECT coalesce(m.completed_at, m.created_at) AS at, m.model, "
        "coalesce(m.prompt_tokens, 0) + coalesce(m.completion_tokens, 0) "
        "+ coalesce(m.cache_read_tokens, 0) + coalesce(m.cache_write_tokens, 0) AS tokens, "
        f"coalesce({MESSAGE_COST}, 0) AS cost "
        "FROM messages m WHERE m.session_id = ? AND m.role = 'assistant' ORDER BY at",
        (session_id,),
    ):
        tokens += m["tokens"]
        cost += m["cost"]
        usage.append({"at": m["at"], "model": m["model"], "tokens": tokens, "cost": round(cost, 6)})
    tail = [dict(r) for r in conn.execute(
        "SELECT kind, source, received_at FROM events WHERE session_id = ? "
        "ORDER BY received_at DESC LIMIT ?", (session_id, TAIL))]  # fmt: skip
    failed = [c for c in calls if c["outcome"] == "failed"]
    end = info.get("ended_at") or info.get("updated_at")
    info["duration_ms"] = end - info["created_at"] if end and info.get("created_at") else None
    info["live"] = info["outcome"] == "running"
    return {
        "session": info,
        "subagents": children,
        "calls": calls,
        "calls_truncated": truncated,
        "failed_calls": len(failed),
        "files": files,
        "errors": errors,
        "compactions": compactions,
        "usage": usage,
        "tail": tail,
    }
