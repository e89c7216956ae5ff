# Over 400 lines on purpose: one normalizer per agent event family (OpenCode plugin) is one job;
# what spans a turn (outcome, typed prompts, retries, model names) is in _opencode.py.
"""OpenCode normalizer: plugin callbacks and bus events -> partial rows.

The plugin shim forwards each callback as it came: `{"kind": "event", "event": {...}}` for the bus,
`{"kind": "<callback>", "input": {...}, "output": {...}}` for the others (tool.execute.before,
tool.execute.after, chat.message, ...). `kind` is the bus event's type, else the callback's name.
Extra keys (a `scenario` label, say) are ignored; unknown events and shapes give fewer rows, never
an exception.

Row ids, all derived from OpenCode's own identifiers so replays and the several reports of one
thing land on one row ("bus event id" = the envelope's `id`, evt_..., else ctx.event_id):

| table | id |
|---|---|
| tools | `{sessionID}:{callID}`: tool.execute.before/after and every message.part.updated snapshot of the tool part (pending, running, completed, error) meet. callID is the provider's id, unique only per session. |
| file_operations | `{tools.id}:{file path}` (one per tool call and path; apply_patch can touch several). `file.edited:{bus event id}` for a file.edited bus event (see below). |
| messages | the message id (msg_...): every message.updated (and chat.message) of a message meets. |
| session_errors | the bus event id (session.error, session.status retry). |
| compaction_events | `{sessionID}:{id of the user message holding the compaction part}`: the compaction part gives the trigger and created_at, the summary assistant message (summary: true, parentID = that user message) the tokens. |

Choices worth knowing:
- tools.success: a throwing tool never reaches tool.execute.after; its error part (state.status
  "error") gives success 0, error_message = state.error, and interrupted 1 for "Tool execution
  aborted". A returned tool is a success unless its metadata has an `exit` (bash): exit 0 -> success 1,
  exit_code 0; any other exit -> success 0, exit_code, error_message "Exit code N" + the output's
  tail; a null exit (killed by timeout or abort) -> success 0, no exit_code. The completed part and
  tool.execute.after compute the same verdict from the same metadata, so neither contradicts the
  other. Running / pending parts never set success.
- tools times: created_at = first sighting (pending part), started_at = tool.execute.before's
  received_at or state.time.start (the earlier wins), ended_at = state.time.end or
  tool.execute.after's received_at (the later wins), duration_ms = state.time.end - start.
- tools.tool_output, tools.error_message, session_errors.error_message: cut to
  Context.output_limit_bytes on a UTF-8 boundary with a `…[truncated N of M bytes]` suffix (the
  Claude normalizer's form). tools.tool_input is stored whole.
- file_operations come only from tool calls that returned (a failed read read nothing): read
  `read`; write `created` when metadata.exists is false (lines_added = its content's lines) else
  `edited` (lines from metadata.diff if any, else from the turn's snapshot diff that the importers
  attach as `agentd_snapshot_diff`: 1.18's write metadata has none, and live capture cannot join
  the turn); edit, multiedit `edited`; glob, grep, list with args.path `searched`; apply_patch one op
  per metadata.files entry (add `created`, update `edited`, delete `deleted`, move `moved` on the
  new path). lines_added / lines_removed from metadata.filediff (additions / deletions) or the
  apply_patch entry. A `file.edited` bus event names only a path (no session, no call), so it cannot
  be merged into its tool's op: it gets its own row with operation_type `file.edited` and no
  session, so that it is never counted as a second edit.
- messages: tokens and cost only for an assistant message that is finished (time.completed) or
  already reports non-zero usage; a streaming message's zeros mean "not known yet". step-finish
  parts (per-step usage) are not used: message.updated carries the message's totals.
- sessions: status from session.status (busy, idle, retry), session.idle (idle), session.deleted
  (deleted, end_reason deleted). title, project_path (info.directory), project_name (its basename),
  parent_session_id (info.parentID), created_at / updated_at (info.time) from session.created /
  updated / deleted; model / provider from session info.model and from assistant messages (not the
  compaction summary's, which may use another model). model is `provider/model`, OpenCode's own
  name for it (messages.model too). A task tool's metadata.sessionId gets a sessions row with
  parent_session_id = the calling session.
- sessions.outcome / last_error (columns another migration adds; the store binds only columns
  that exist): a session.error ends the run: `error` (`interrupted` for MessageAbortedError) and
  last_error = its message (`HTTP <code>: ` in front when it has a status code). The assistant
  message OpenCode was writing carries the same error and gives the same values (the importer
  has only that); a finished assistant message whose finish ends the turn (not tool-calls) and
  has no error gives `ok`. session.idle follows session.error, so it says nothing about outcome.
- messages.role of a user message: `user` from chat.message (OpenCode calls it for typed prompts
  only), `system` from a compaction part or the synthetic "Continue" part after an automatic
  compaction; message.updated leaves it alone. So prompt_count (role user) counts typed prompts,
  whatever order the events come in.
- session_errors: session.error (error_type = error.name, error_message = error.data.message,
  status_code = error.data.statusCode), each session.status retry (error_type `retry`,
  error_message = status.message; 1.18 gives no status code there) and each retry part (keyed by
  its part id, status_code from its APIError): a failed model call OpenCode retried, the only
  trace of a rate limit or 5xx that a later attempt recovered from.
- compaction tokens: tokens_before = what the summarizer read (input + cache read + cache write of
  the summary message: the conversation before compaction), tokens_after = the summary it wrote
  (its output tokens), only from a finished summary without an error. session.compacted and
  experimental.session.compacting name only the session, so they add no row (kept raw).
"""

from __future__ import annotations

import math
from typing import Any

from agentd.normalizers import register
from agentd.normalizers._opencode import (
    diff_counts,
    error_outcome,
    is_machine_prompt_part,
    message_outcome,
    model_name,
    retry_part_rows,
    retry_status_code,
    snapshot_lines,
)
from agentd.normalizers._values import (
    as_dict as _dict,
    as_int as _int,
    as_str as _str,
    count_lines,
    truncate,
)
from agentd.rows import Context, Normalized, Row

__all__ = ["normalize"]

_ERROR_TAIL_CHARS = 500
# Tool names whose arguments name one file (camelCase filePath) and the op a success means.
_READ_TOOLS = frozenset({"read"})
_EDIT_TOOLS = frozenset({"edit", "multiedit"})
_WRITE_TOOLS = frozenset({"write"})
_SEARCH_TOOLS = frozenset({"glob", "grep", "list"})  # args.path: the directory searched
# apply_patch's metadata.files[].type -> operation_type
_PATCH_OPS = {"add": "created", "update": "edited", "delete": "deleted", "move": "moved"}
_ABORTED = "Tool execution aborted"


# --- small, total helpers: a wrong type is "not known", never an exception ------------------


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _row(table: str, **values: Any) -> Row:
    return Row(table, {k: v for k, v in values.items() if v is not None})


def _event_key(event: dict[str, Any], ctx: Context) -> str:
    return _str(event.get("id")) or ctx.event_id


def _text(value: Any, limit: int) -> str | None:
    return truncate(value, limit) if isinstance(value, str) else None


# --- entry point ----------------------------------------------------------------------------


@register("opencode")
def normalize(payload: Any, ctx: Context) -> Normalized:
    if not isinstance(payload, dict):
        return Normalized(kind="unknown", session_id=None)
    kind = payload.get("kind")
    if kind == "event":
        event = _dict(payload.get("event"))
        etype = _str(event.get("type")) or "event"
        props = _dict(event.get("properties"))
        result = Normalized(kind=etype, session_id=_event_session(etype, props))
        handler = _EVENT_HANDLERS.get(etype)
        if handler is not None:
            handler(result, event, props, ctx)
        return result
    kind = _str(kind) or "unknown"
    inp = _dict(payload.get("input"))
    out = _dict(payload.get("output"))
    session = _str(inp.get("sessionID"))
    if session is None and kind == "chat.message":
        session = _str(_dict(out.get("message")).get("sessionID"))
    result = Normalized(kind=kind, session_id=session)
    callback = _CALLBACK_HANDLERS.get(kind)
    if callback is not None:
        callback(result, inp, out, ctx)
    return result


def _event_session(etype: str, props: dict[str, Any]) -> str | None:
    session = _str(props.get("sessionID"))
    if session:
        return session
    info = props.get("info")
    if isinstance(info, dict):
        # session.* events carry the Session itself (its id); message.updated a Message.
        session = _str(info.get("id") if etype.startswith("session.") else info.get("sessionID"))
        if session:
            return session
    return _str(_dict(props.get("part")).get("sessionID"))


# --- tools ----------------------------------------------------------------------------------


def _outcome(output: Any, metadata: dict[str, Any], limit: int) -> dict[str, Any]:
    """success / exit_code / error_message of a tool that returned (did not throw).

    An integer metadata.exit is a process exit status (bash): non-zero is a failure even though
    OpenCode reports the call as completed. A present but null exit means the process was killed
    (timeout, abort). Without an exit key the tool succeeded.
    """
    if "exit" not in metadata:
        return {"success": 1}
    code = _int(metadata.get("exit"))
    if code == 0:
        return {"success": 1, "exit_code": 0}
    head = f"Exit code {code}" if code is not None else "Killed (no exit code)"
    tail = output.strip()[-_ERROR_TAIL_CHARS:] if isinstance(output, str) else ""
    return {
        "success": 0,
        "exit_code": code,
        "error_message": _text(f"{head}\n{tail}" if tail else head, limit),
    }


def _file_ops(
    tool_id: str,
    session: str,
    tool: str | None,
    args: dict[str, Any],
    metadata: dict[str, Any],
    at: int | None,
    snapshot: tuple[int, int] | None = None,
) -> list[Row]:
    """file_operations rows of a tool call that completed (failed calls touched nothing).
    `snapshot`: the lines OpenCode's snapshot diff gives a write over an existing file."""
    name = (tool or "").lower()
    rows: list[Row] = []

    def op_row(path: str, op: str, added: int | None, removed: int | None) -> Row:
        return _row(
            "file_operations",
            id=f"{tool_id}:{path}",
            session_id=session,
            tool_id=tool_id,
            file_path=path,
            operation_type=op,
            lines_added=added,
            lines_removed=removed,
            created_at=at,
        )

    files = metadata.get("files")
    if isinstance(files, list):  # apply_patch: one entry per file touched
        for entry in files:
            entry = _dict(entry)
            op = _PATCH_OPS.get(entry.get("type"))
            path = _str(entry.get("movePath")) or _str(entry.get("filePath"))
            if op is None or path is None:
                continue
            rows.append(
                op_row(path, op, _int(entry.get("additions")), _int(entry.get("deletions")))
            )
        return rows
    if name in _SEARCH_TOOLS:
        path = _str(args.get("path"))
    else:
        path = _str(args.get("filePath")) or _str(metadata.get("filepath"))
    if path is None:
        return rows
    added = removed = None
    if name in _READ_TOOLS:
        op = "read"
    elif name in _SEARCH_TOOLS:
        op = "searched"
    elif name in _EDIT_TOOLS:
        op = "edited"
    elif name in _WRITE_TOOLS:
        if metadata.get("exists") is False:
            op = "created"
            content = args.get("content")
            if isinstance(content, str):
                added, removed = count_lines(content), 0
        else:
            op = "edited"
            added, removed = diff_counts(metadata.get("diff")) or snapshot or (None, None)
    else:
        return rows
    diff = _dict(metadata.get("filediff"))
    if diff:
        added = _int(diff.get("additions"))
        removed = _int(diff.get("deletions"))
    rows.append(op_row(path, op, added, removed))
    return rows


def _child_session(session: str, metadata: dict[str, Any]) -> list[Row]:
    """The task tool runs a subagent in a child session: record the link from the parent side."""
    child = _str(metadata.get("sessionId"))
    if child is None or child == session:
        return []
    return [_row("sessions", id=child, parent_session_id=session)]


def _on_tool_before(
    result: Normalized, inp: dict[str, Any], out: dict[str, Any], ctx: Context
) -> None:
    session, call = result.session_id, _str(inp.get("callID"))
    if session is None or call is None:
        return
    args = out.get("args")
    args = args if isinstance(args, dict) else None
    result.rows.append(
        _row(
            "tools",
            id=f"{session}:{call}",
            session_id=session,
            tool_name=_str(inp.get("tool")),
            tool_input=args,
            file_path=_str(args.get("filePath")) if args else None,
            started_at=ctx.received_at,
            created_at=ctx.received_at,
        )
    )


def _on_tool_after(
    result: Normalized, inp: dict[str, Any], out: dict[str, Any], ctx: Context
) -> None:
    session, call = result.session_id, _str(inp.get("callID"))
    if session is None or call is None:
        return
    tool_id = f"{session}:{call}"
    tool = _str(inp.get("tool"))
    args = _dict(inp.get("args"))
    metadata = _dict(out.get("metadata"))
    output = out.get("output")
    result.rows.append(
        _row(
            "tools",
            id=tool_id,
            session_id=session,
            tool_name=tool,
            tool_input=args or None,
            tool_output=_text(output, ctx.output_limit_bytes),
            file_path=_str(args.get("filePath")),
            ended_at=ctx.received_at,
            created_at=ctx.received_at,
            **_outcome(output, metadata, ctx.output_limit_bytes),
        )
    )
    result.rows.extend(_file_ops(tool_id, session, tool, args, metadata, ctx.received_at))
    result.rows.extend(_child_session(session, metadata))


def _tool_part(
    result: Normalized, part: dict[str, Any], props: dict[str, Any], ctx: Context
) -> None:
    """A tool part snapshot: pending -> running -> completed | error."""
    session = _str(part.get("sessionID")) or result.session_id
    call = _str(part.get("callID"))
    if session is None or call is None:
        return
    tool_id = f"{session}:{call}"
    tool = _str(part.get("tool"))
    state = _dict(part.get("state"))
    status = state.get("status")
    args = _dict(state.get("input"))
    times = _dict(state.get("time"))
    start, end = _int(times.get("start")), _int(times.get("end"))
    seen = _int(props.get("time")) or ctx.received_at
    values: dict[str, Any] = {
        "id": tool_id,
        "session_id": session,
        "message_id": _str(part.get("messageID")),
        "tool_name": tool,
        "tool_input": args or None,  # a pending part's input is {}: not known yet
        "file_path": _str(args.get("filePath")),
        "created_at": min(start, seen) if start is not None else seen,
        "started_at": start,
    }
    if status in ("completed", "error"):
        values["ended_at"] = end
        if start is not None and end is not None and end >= start:
            values["duration_ms"] = end - start
    if status == "completed":
        metadata = _dict(state.get("metadata"))
        output = state.get("output")
        values["tool_output"] = _text(output, ctx.output_limit_bytes)
        values.update(_outcome(output, metadata, ctx.output_limit_bytes))
        result.rows.append(_row("tools", **values))
        result.rows.extend(
            _file_ops(tool_id, session, tool, args, metadata, end or seen, snapshot_lines(props))
        )
        result.rows.extend(_child_session(session, metadata))
        return
    if status == "error":
        error = state.get("error")
        values["success"] = 0
        values["error_message"] = _text(error, ctx.output_limit_bytes)
        if isinstance(error, str) and error.startswith(_ABORTED):
            values["interrupted"] = 1
    result.rows.append(_row("tools", **values))


# --- messages, sessions, compaction ---------------------------------------------------------


def _message_rows(
    result: Normalized,
    info: dict[str, Any],
    session: str | None,
    ctx: Context,
    typed: bool = False,
) -> None:
    """A messages row. A user message's role is left to what tells whether a person typed it:
    chat.message (`typed`: OpenCode calls it only for prompts) says `user`, a compaction or
    "Continue" part says `system` (see _ev_part_updated); message.updated cannot tell and says
    nothing, so the order these arrive in does not matter."""
    message = _str(info.get("id"))
    if message is None:
        return
    session = _str(info.get("sessionID")) or session
    role = _str(info.get("role"))
    times = _dict(info.get("time"))
    completed = _int(times.get("completed"))
    values: dict[str, Any] = {
        "id": message,
        "session_id": session,
        "role": role if role != "user" else "user" if typed else None,
        "created_at": _int(times.get("created")),
        "completed_at": completed,
    }
    if role == "assistant":
        model, provider = _str(info.get("modelID")), _str(info.get("providerID"))
        tokens = _dict(info.get("tokens"))
        cache = _dict(tokens.get("cache"))
        counts = {
            "prompt_tokens": _int(tokens.get("input")),
            "completion_tokens": _int(tokens.get("output")),
            "reasoning_tokens": _int(tokens.get("reasoning")),
            "cache_read_tokens": _int(cache.get("read")),
            "cache_write_tokens": _int(cache.get("write")),
        }
        cost = _num(info.get("cost"))
        # A message still streaming reports zeros: that is "not known yet", not a real zero.
        if completed is not None or cost or any(counts.values()):
            values.update(counts)
            values["cost"] = cost
    else:
        chosen = _dict(info.get("model"))
        model, provider = _str(chosen.get("modelID")), _str(chosen.get("providerID"))
    values["model"] = model_name(model, provider)
    values["provider"] = provider
    result.rows.append(_row("messages", **values))
    if role != "assistant" or session is None:
        return
    ended = message_outcome(info, ctx.output_limit_bytes)
    if info.get("summary") is True or info.get("mode") == "compaction":
        _compaction_from_summary(result, info, session, values)
        if ended:
            result.rows.append(_row("sessions", id=session, **ended))
    elif model or provider or ended:
        result.rows.append(
            _row("sessions", id=session, model=values["model"], provider=provider, **ended)
        )


def _compaction_from_summary(
    result: Normalized, info: dict[str, Any], session: str, values: dict[str, Any]
) -> None:
    """The compaction's summary message: its parentID is the user message holding the compaction
    part, so it lands on that compaction's row.

    tokens_before = what the summarizer read (the whole conversation before compaction):
    input + cache read + cache write. tokens_after = the summary it wrote (output), which replaces
    that history. Both leave out the system prompt and tool definitions, so they are comparable
    (OpenCode itself budgets the post-compaction context with the summary's output tokens).
    Only a finished summary without an error counts.
    """
    parent = _str(info.get("parentID"))
    if parent is None:
        return
    row = {"id": f"{session}:{parent}", "session_id": session, "created_at": values["created_at"]}
    if values.get("completed_at") is not None and not info.get("error"):
        read = [values.get(k) for k in ("prompt_tokens", "cache_read_tokens", "cache_write_tokens")]
        if any(v is not None for v in read):
            row["tokens_before"] = sum(v or 0 for v in read)
        row["tokens_after"] = values.get("completion_tokens")
    result.rows.append(_row("compaction_events", **row))


def _session_info(result: Normalized, props: dict[str, Any], etype: str) -> None:
    info = _dict(props.get("info"))
    session = result.session_id
    if session is None:
        return
    times = _dict(info.get("time"))
    directory = _str(info.get("directory"))
    name = (directory.rstrip("/").rsplit("/", 1)[-1] or None) if directory else None
    model = _dict(info.get("model"))
    values: dict[str, Any] = {
        "id": session,
        "title": _str(info.get("title")),
        "project_path": directory,
        "project_name": name,
        "parent_session_id": _str(info.get("parentID")),
        "model": model_name(_str(model.get("id")), _str(model.get("providerID"))),
        "provider": _str(model.get("providerID")),
        "created_at": _int(times.get("created")),
        "updated_at": _int(times.get("updated")),
    }
    if etype == "session.deleted":
        values["status"] = "deleted"
        values["end_reason"] = "deleted"
    result.rows.append(_row("sessions", **values))


# --- bus event handlers ---------------------------------------------------------------------


def _ev_session_info(
    result: Normalized, event: dict[str, Any], props: dict[str, Any], ctx: Context
) -> None:
    _session_info(result, props, _str(event.get("type")) or "")


def _ev_session_status(
    result: Normalized, event: dict[str, Any], props: dict[str, Any], ctx: Context
) -> None:
    session = result.session_id
    status = _dict(props.get("status"))
    kind = _str(status.get("type"))
    if session is None or kind is None:
        return
    result.rows.append(_row("sessions", id=session, status=kind))
    if kind == "retry":
        # No status code in 1.18's retry status; a later version's may carry the APIError.
        # A failed model call OpenCode will retry (rate limit, 5xx): the only trace of an error
        # that a later attempt recovers from.
        message = status.get("message")
        result.rows.append(
            _row(
                "session_errors",
                id=_event_key(event, ctx),
                session_id=session,
                error_type="retry",
                error_message=_text(message, ctx.output_limit_bytes),
                status_code=retry_status_code(status),
                created_at=ctx.received_at,
            )
        )


def _ev_session_idle(
    result: Normalized, event: dict[str, Any], props: dict[str, Any], ctx: Context
) -> None:
    if result.session_id is not None:
        result.rows.append(_row("sessions", id=result.session_id, status="idle"))


def _ev_session_error(
    result: Normalized, event: dict[str, Any], props: dict[str, Any], ctx: Context
) -> None:
    error = _dict(props.get("error"))
    data = _dict(error.get("data"))
    message = data.get("message")
    if result.session_id is not None:
        # OpenCode publishes session.error when a run stops on an error (its loop ends: idle
        # follows); the same error is on the assistant message it was writing.
        ended = error_outcome(error, ctx.output_limit_bytes)
        if ended:
            result.rows.append(_row("sessions", id=result.session_id, **ended))
    result.rows.append(
        _row(
            "session_errors",
            id=_event_key(event, ctx),
            session_id=result.session_id,
            error_type=_str(error.get("name")),
            error_message=_text(message, ctx.output_limit_bytes),
            status_code=_int(data.get("statusCode")),
            created_at=ctx.received_at,
        )
    )


def _ev_message_updated(
    result: Normalized, event: dict[str, Any], props: dict[str, Any], ctx: Context
) -> None:
    _message_rows(result, _dict(props.get("info")), result.session_id, ctx)


def _ev_part_updated(
    result: Normalized, event: dict[str, Any], props: dict[str, Any], ctx: Context
) -> None:
    part = _dict(props.get("part"))
    ptype = part.get("type")
    message = _str(part.get("messageID"))
    if message is not None and is_machine_prompt_part(part):
        # A user message OpenCode wrote itself: not a prompt (prompt_count counts role user).
        session = _str(part.get("sessionID")) or result.session_id
        result.rows.append(_row("messages", id=message, session_id=session, role="system"))
    if ptype == "tool":
        _tool_part(result, part, props, ctx)
    elif ptype == "retry":
        result.rows.extend(retry_part_rows(part, result.session_id, ctx))
    elif ptype == "compaction":
        session = _str(part.get("sessionID")) or result.session_id
        message = _str(part.get("messageID"))
        if session is None or message is None:
            return
        auto = part.get("auto")
        result.rows.append(
            _row(
                "compaction_events",
                id=f"{session}:{message}",
                session_id=session,
                trigger="auto" if auto is True else "manual" if auto is False else None,
                created_at=_int(props.get("time")) or ctx.received_at,
            )
        )


def _ev_file_edited(
    result: Normalized, event: dict[str, Any], props: dict[str, Any], ctx: Context
) -> None:
    path = _str(props.get("file"))
    if path is None:
        return
    result.rows.append(
        _row(
            "file_operations",
            id=f"file.edited:{_event_key(event, ctx)}",
            session_id=result.session_id,
            file_path=path,
            operation_type="file.edited",
            created_at=ctx.received_at,
        )
    )


_EVENT_HANDLERS = {
    "session.created": _ev_session_info,
    "session.updated": _ev_session_info,
    "session.deleted": _ev_session_info,
    "session.status": _ev_session_status,
    "session.idle": _ev_session_idle,
    "session.error": _ev_session_error,
    "message.updated": _ev_message_updated,
    "message.part.updated": _ev_part_updated,
    "file.edited": _ev_file_edited,
}


# --- other callbacks ------------------------------------------------------------------------


def _on_chat_message(
    result: Normalized, inp: dict[str, Any], out: dict[str, Any], ctx: Context
) -> None:
    _message_rows(result, _dict(out.get("message")), result.session_id, ctx, typed=True)


_CALLBACK_HANDLERS = {
    "tool.execute.before": _on_tool_before,
    "tool.execute.after": _on_tool_after,
    "chat.message": _on_chat_message,
}
