"""What the OpenCode normalizer (opencode.py) decides about turns, not single events: how a
session ended (outcome), which user messages a person typed, how a model is named, and the status
code of a retried model call. Pure functions over OpenCode's own objects; the importers
(importers/opencode.py, importers/opencode_legacy.py) use the same prompt test.
"""

from __future__ import annotations

from typing import Any

from agentd.normalizers._values import as_dict, as_int, as_str, truncate
from agentd.rows import Context, Row

__all__ = [
    "CONTINUE_PROMPT",
    "diff_counts",
    "error_outcome",
    "is_machine_prompt_part",
    "message_outcome",
    "model_name",
    "retry_part_rows",
    "retry_status_code",
    "snapshot_lines",
]

# The text OpenCode sends on its own after an automatic compaction (a synthetic text part of a
# new user message). Versions before ~1.2 mark it only by this text; later ones also set
# metadata.compaction_continue.
CONTINUE_PROMPT = "Continue if you have next steps"
_ABORTED = "MessageAbortedError"
# finish reasons after which OpenCode's loop calls the model again: not the end of a turn.
_NOT_FINAL = frozenset({"tool-calls", "unknown"})


def model_name(model: str | None, provider: str | None) -> str | None:
    """`provider/model`, OpenCode's own way to name a model (`opencode run -m fake/model`, the
    `model` key of opencode.json): the same model id from two providers is two prices."""
    if model is None or provider is None or model.startswith(f"{provider}/"):
        return model
    return f"{provider}/{model}"


def is_machine_prompt_part(part: dict[str, Any]) -> bool:
    """A part that makes its user message one OpenCode wrote, not a person: the compaction request
    (a `compaction` part) or the "Continue ..." prompt after an automatic compaction (a synthetic
    text part). OpenCode's own Copilot plugin tells these apart the same way (it sends them with
    `x-initiator: agent`)."""
    ptype = part.get("type")
    if ptype == "compaction":
        return True
    if ptype != "text" or part.get("synthetic") is not True:
        return False
    if as_dict(part.get("metadata")).get("compaction_continue") is True:
        return True
    text = part.get("text")
    return isinstance(text, str) and text.startswith(CONTINUE_PROMPT)


def _error_text(error: dict[str, Any]) -> str | None:
    data = as_dict(error.get("data"))
    message = as_str(data.get("message")) or as_str(error.get("name"))
    code = as_int(data.get("statusCode"))
    if message and code is not None and str(code) not in message:
        return f"HTTP {code}: {message}"
    return message


def error_outcome(error: Any, limit: int) -> dict[str, Any]:
    """sessions.outcome / last_error for an error that ended a run (a session.error, or the error
    an assistant message finished with: OpenCode reports the one error both ways, so both give the
    same values). An abort (Esc, or a cancelled run) is `interrupted`, anything else `error`."""
    error = as_dict(error)
    if not error:
        return {}
    text = _error_text(error)
    return {
        "outcome": "interrupted" if error.get("name") == _ABORTED else "error",
        "last_error": truncate(text, limit) if text else None,
    }


def message_outcome(info: dict[str, Any], limit: int) -> dict[str, Any]:
    """What a finished assistant message says about the turn: its error ends the run with that
    error; a clean final answer (finish `stop`, `length`, ..., not `tool-calls`) is outcome `ok`.
    A message still streaming, one that asks for tools, or a compaction summary (the run goes on
    after it) says nothing."""
    if info.get("role") != "assistant":
        return {}
    if info.get("error"):
        return error_outcome(info.get("error"), limit)
    completed = as_int(as_dict(info.get("time")).get("completed"))
    finish = as_str(info.get("finish"))
    if completed is None or finish is None or finish in _NOT_FINAL:
        return {}
    if info.get("summary") is True or info.get("mode") == "compaction":
        return {}
    return {"outcome": "ok"}


def retry_status_code(value: Any) -> int | None:
    """The HTTP status of a retried call where OpenCode gives one: an APIError (`data.statusCode`),
    as a retry part's `error` carries it, or a plain `statusCode`."""
    value = as_dict(value)
    for holder in (value, as_dict(value.get("error"))):
        code = as_int(as_dict(holder.get("data")).get("statusCode"))
        if code is None:
            code = as_int(holder.get("statusCode"))
        if code is not None:
            return code
    return None


def diff_counts(diff: Any) -> tuple[int, int] | None:
    """(added, removed) lines of a unified diff (the `diff` some tools' metadata carry), without
    its `---` / `+++` headers; None when it is not a diff."""
    if not isinstance(diff, str) or "\n@@" not in diff and not diff.startswith("@@"):
        return None
    added = removed = 0
    for line in diff.splitlines():
        if line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
    return added, removed


def snapshot_lines(props: dict[str, Any]) -> tuple[int, int] | None:
    """Lines a write changed by OpenCode's snapshot diff of its turn, as the importers attach them
    (`agentd_snapshot_diff`, importers/_opencode_turns.py); None when absent."""
    diff = as_dict(props.get("agentd_snapshot_diff"))
    added, removed = as_int(diff.get("additions")), as_int(diff.get("deletions"))
    return (added, removed) if added is not None and removed is not None else None


def retry_part_rows(part: dict[str, Any], session: str | None, ctx: Context) -> list[Row]:
    """A retry part (`{attempt, error: APIError, time}`): a failed model call OpenCode retried,
    with the APIError's status code."""
    part_id = as_str(part.get("id"))
    if part_id is None:
        return []
    message = as_dict(as_dict(part.get("error")).get("data")).get("message")
    values = {
        "id": part_id,
        "session_id": as_str(part.get("sessionID")) or session,
        "error_type": "retry",
        "error_message": truncate(message, ctx.output_limit_bytes)
        if isinstance(message, str)
        else None,
        "status_code": retry_status_code(part),
        "created_at": as_int(as_dict(part.get("time")).get("created")) or ctx.received_at,
    }
    return [Row("session_errors", {k: v for k, v in values.items() if v is not None})]
