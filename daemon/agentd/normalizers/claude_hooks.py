# Over 400 lines on purpose: one normalizer per agent event family (Claude Code hooks) is one job.
"""Claude Code hooks -> rows. The payload is a hook's stdin JSON object, exactly as Claude Code sent it.

`kind` is `hook_event_name`, the session is `session_id`. Subagents share their parent's session_id and
are told apart by `agent_id` (set on tools and messages, never a session row of their own).

Row ids (derived from Claude's own identifiers, so a replayed or re-ordered event lands on one row):

| table | id |
|---|---|
| tools | `{session_id}:{tool_use_id}` (Pre, Post, Failure, PermissionDenied and PostToolBatch of one call meet) |
| file_operations | `{tools.id}:{file_path}` (one per tool call and path; only from PostToolUse) |
| messages | `{session_id}:{prompt_id}`, else `{session_id}:{event_id}` (UserPromptSubmit only) |
| session_errors | StopFailure: `{session_id}:{prompt_id}:stop_failure` (what the transcript importer uses too), else `{session_id}:{event_id}`; PermissionDenied: `{session_id}:{tool_use_id}:denied` |
| compaction_events | `{session_id}:{prompt_id}`: PreCompact and PostCompact of one compaction carry the same prompt_id (a `/compact` is its own prompt). Two auto-compactions inside one prompt merge into one row (latest tokens win). Without a prompt_id: `{session_id}:{event_id}`, so Pre and Post stay two rows. |

`event_id` is the deterministic hash of the raw payload (Context.event_id).

Choices worth knowing:
- file_operations.operation_type: Read `read`; Write `created` (tool_response.type == "create") else
  `edited`; Edit, NotebookEdit `edited`; Glob, Grep `searched`; any other tool whose input names a
  `file_path` / `notebook_path` / `path`: the tool name lowercased (`lsp`, `mcp__fs__read_file`).
  Relative paths are resolved against `cwd`. Lines come from structuredPatch hunks (`+` / `-` lines),
  a created file counts its content lines, NotebookEdit counts the inserted / deleted cell source.
- tools.tool_output: the tool_response as JSON text (a string response is stored as it is), and
  tools.error_message: the error text; both cut to Context.output_limit_bytes on a UTF-8 boundary with
  a visible `…[truncated N of M bytes]` suffix (the whole value stays within the limit). The raw
  payload in `events` keeps everything. tools.tool_input is stored whole so that json_extract works.
- sessions.status: SessionStart (not source "compact") `active`; UserPromptSubmit `busy`; main-thread
  (no agent_id) PreToolUse / PostToolUse / PostToolUseFailure / PostToolBatch `busy` (back to work
  after a permission wait); PermissionRequest and Notification permission_prompt, elicitation_dialog,
  agent_needs_input `waiting`; Notification idle_prompt, Stop and StopFailure `idle`; SessionEnd
  `ended`. Status follows the events' own time (rows.py), not their arrival order.
- sessions.outcome, how the last turn went: Stop `ok`; StopFailure `error` (and last_error,
  `<error>: <message>`); a main-thread PostToolUseFailure with is_interrupt `interrupted` (Stop
  does not fire after a user interrupt). NULL until a turn ends: unknown.
- PreSkillShellCommand (Claude Code 2.1.332: a shell command a skill runs): a tools row keyed on
  its tool_use_id, with tool_name, tool_input and started_at; no hook reports how it ended.
- sessions.project_path: the ancestor of `cwd` (or cwd itself) whose Claude encoding is the
  transcript's project directory name, i.e. the directory the session started in, even after a `cd`
  into a subdirectory; when that cannot be matched, `cwd`.
- messages.role: `user` for typed prompts (UserPromptSubmit source user / sdk / absent); `system` for
  the synthetic ones (source system, loop_wakeup, ...; `<task-notification>` prompts), so that
  prompt_count counts what a person wrote.
- PermissionDenied fails the tools row (success 0, error_message = reason) and adds a session_errors
  row of type `permission_denied`.
- Compaction tokens (tokens_before / tokens_after) are not in any hook payload: the daemon's
  transcript follower (agentd/follow.py) reads them from the transcript's `compact_boundary`
  record, under the same row id. This normalizer reads no file: it runs on the event loop.

Limits: Pre and Post set the same columns to the same values except when another PreToolUse hook
rewrote the input (`updatedInput`): then the later arrival's tool_input wins.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import msgspec

from agentd.normalizers import register
from agentd.normalizers._claude import api_status_code, stop_failure_id
from agentd.normalizers._values import (
    as_dict as _dict,
    as_int as _int,
    as_str as _str,
    count_lines,
    truncate,
)
from agentd.rows import Context, Normalized, Row

__all__ = ["normalize"]

_EXIT_CODE = re.compile(r"^(?:Error: )?Exit code (-?\d{1,10})(?!\d)")
_NOT_ALNUM = re.compile(r"[^a-zA-Z0-9]")

_TOOL_EVENTS = (
    "PreToolUse",
    "PostToolUse",
    "PostToolUseFailure",
    "PostToolBatch",
    "PreSkillShellCommand",
)
_WAITING_NOTIFICATIONS = {"permission_prompt", "elicitation_dialog", "agent_needs_input"}
_TYPED_PROMPT_SOURCES = {"user", "sdk"}
_FILE_KEYS = ("file_path", "notebook_path", "path")
_FILE_OPS = {"Read": "read", "Edit": "edited", "Glob": "searched", "Grep": "searched"}


def _text(value: Any) -> str | None:
    """A value as stored text: strings as they are, anything else as JSON."""
    if value is None or isinstance(value, str):
        return value
    try:
        return msgspec.json.encode(value).decode()
    except (TypeError, ValueError, OverflowError):
        return str(value)


def _patch_counts(patch: Any) -> tuple[int | None, int | None]:
    if not isinstance(patch, list):
        return None, None
    added = removed = 0
    for hunk in patch:
        lines = _dict(hunk).get("lines")
        for line in lines if isinstance(lines, list) else ():
            if isinstance(line, str) and line:
                added += line[0] == "+"
                removed += line[0] == "-"
    return added, removed


def _file_path(tool_input: Any, cwd: str | None) -> str | None:
    tool_input = _dict(tool_input)
    for key in _FILE_KEYS:
        path = _str(tool_input.get(key))
        if path:
            if not os.path.isabs(path) and cwd and os.path.isabs(cwd):
                path = os.path.normpath(os.path.join(cwd, path))
            return path
    return None


def _hash36(text: str) -> str:
    """Claude's suffix for project directory names over 200 characters: a Java-style 32-bit string
    hash over UTF-16 code units, absolute value, base 36."""
    units = text.encode("utf-16-le", "surrogatepass")
    h = 0
    for i in range(0, len(units), 2):
        h = (h * 31 + int.from_bytes(units[i : i + 2], "little")) & 0xFFFFFFFF
    n = abs(h - (1 << 32) if h & 0x80000000 else h)
    digits = ""
    while True:
        n, r = divmod(n, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[r] + digits
        if not n:
            return digits


def _project_path(cwd: str | None, transcript_path: str | None) -> str | None:
    """The directory the session's transcript is filed under (see formats.md B1), else cwd."""
    if not cwd:
        return None
    if transcript_path:
        project_dir = os.path.basename(os.path.dirname(transcript_path))
        candidate = cwd.rstrip("/") or "/"
        for _ in range(64):
            encoded = _NOT_ALNUM.sub("-", candidate)
            if encoded == project_dir or (
                len(encoded) > 200
                and project_dir.startswith(encoded[:200] + "-")
                and project_dir[201:] in (_hash36(candidate), _hash36(encoded))
            ):
                return candidate
            parent = os.path.dirname(candidate)
            if parent == candidate:
                break
            candidate = parent
    return cwd


class _Event:
    """One hook payload being turned into rows."""

    def __init__(self, payload: dict[str, Any], ctx: Context, kind: str, session_id: str) -> None:
        self.p = payload
        self.ctx = ctx
        self.kind = kind
        self.sid = session_id
        self.now = ctx.received_at
        self.agent_id = _str(payload.get("agent_id"))
        self.cwd = _str(payload.get("cwd"))
        self.session: dict[str, Any] = {}
        self.rows: list[Row] = []

    def add(self, table: str, values: dict[str, Any]) -> None:
        values["session_id"] = self.sid
        self.rows.append(Row(table, values))

    def status(self, status: str) -> None:
        self.session["status"] = status

    # -- sessions -------------------------------------------------------------------------------

    def session_fields(self) -> None:
        p = self.p
        for column, key in (("permission_mode", "permission_mode"), ("title", "session_title")):
            value = _str(p.get(key))
            if value:
                self.session[column] = value
        project = _project_path(self.cwd, _str(p.get("transcript_path")))
        if project:
            self.session["project_path"] = project
            self.session["project_name"] = os.path.basename(project.rstrip("/")) or project

    def session_start(self) -> None:
        if _str(self.p.get("model")):
            self.session["model"] = self.p["model"]
        if self.p.get("source") != "compact":  # mid-turn compaction: the session keeps its state
            self.status("active")

    def session_end(self) -> None:
        self.status("ended")
        self.session["ended_at"] = self.now
        if _str(self.p.get("reason")):
            self.session["end_reason"] = self.p["reason"]

    def user_prompt(self) -> None:
        self.status("busy")
        prompt = self.p.get("prompt")
        source = self.p.get("source")
        typed = source is None or _str(source) in _TYPED_PROMPT_SOURCES
        if isinstance(prompt, str) and prompt.lstrip().startswith("<task-notification>"):
            typed = False
        key = _str(self.p.get("prompt_id")) or self.ctx.event_id
        self.add(
            "messages",
            {
                "id": f"{self.sid}:{key}",
                "role": "user" if typed else "system",
                "agent_id": self.agent_id,
                "created_at": self.now,
            },
        )

    def notification(self) -> None:
        kind = _str(self.p.get("notification_type"))
        if kind in _WAITING_NOTIFICATIONS:
            self.status("waiting")
        elif kind == "idle_prompt":
            self.status("idle")

    def stop_failure(self) -> None:
        self.status("idle")
        message = _str(self.p.get("last_assistant_message")) or _text(self.p.get("error_details"))
        error = _str(self.p.get("error")) or "unknown"
        self.session["outcome"] = "error"
        self.session["last_error"] = truncate(
            f"{error}: {message}" if message else error, self.ctx.output_limit_bytes
        )
        self.add(
            "session_errors",
            {
                # The turn's prompt id, which the transcript importer keys the same error on, so
                # live and imported rows meet; the event's hash when there is no prompt id.
                "id": stop_failure_id(self.sid, prompt_id)
                if (prompt_id := _str(self.p.get("prompt_id")))
                else f"{self.sid}:{self.ctx.event_id}",
                "error_type": error,
                "error_message": truncate(message, self.ctx.output_limit_bytes),
                "status_code": api_status_code(message),
                "created_at": self.now,
            },
        )

    def model_switch(self) -> None:
        if _str(self.p.get("to_model")):
            self.session["model"] = self.p["to_model"]

    # -- tools ----------------------------------------------------------------------------------

    def tool_row(self, call: dict[str, Any]) -> dict[str, Any] | None:
        tool_use_id = _str(call.get("tool_use_id"))
        if tool_use_id is None:
            return None
        tool_input = call.get("tool_input")
        return {
            "id": f"{self.sid}:{tool_use_id}",
            "agent_id": self.agent_id,
            "tool_name": _str(call.get("tool_name")),
            "tool_input": _text(tool_input),
            "file_path": _file_path(tool_input, self.cwd),
        }

    def timing(self, values: dict[str, Any]) -> None:
        """Post events: ended now, started duration_ms earlier when that is known."""
        duration = _int(self.p.get("duration_ms"))
        if duration is not None and duration < 0:
            duration = None
        started = self.now - duration if duration is not None else self.now
        values.update(
            duration_ms=duration,
            ended_at=self.now,
            started_at=started if duration is not None else None,
            created_at=started,
        )

    def pre_tool(self) -> None:
        values = self.tool_row(self.p)
        if values:
            values.update(started_at=self.now, created_at=self.now)
            self.add("tools", values)

    def post_tool(self) -> None:
        values = self.tool_row(self.p)
        if not values:
            return
        response = self.p.get("tool_response")
        interrupted = _dict(response).get("interrupted")
        values.update(
            success=1,
            tool_output=truncate(_text(response), self.ctx.output_limit_bytes),
            interrupted=int(interrupted) if isinstance(interrupted, bool) else None,
        )
        self.timing(values)
        self.add("tools", values)
        self.file_operation(values, response)

    def tool_failure(self) -> None:
        values = self.tool_row(self.p)
        if not values:
            return
        error = _text(self.p.get("error"))
        match = _EXIT_CODE.match(error) if error else None
        interrupt = self.p.get("is_interrupt")
        if interrupt is True and self.agent_id is None:
            self.session["outcome"] = "interrupted"
        values.update(
            success=0,
            error_message=truncate(error, self.ctx.output_limit_bytes),
            exit_code=int(match.group(1)) if match else None,
            interrupted=int(interrupt) if isinstance(interrupt, bool) else None,
        )
        self.timing(values)
        self.add("tools", values)

    def permission_denied(self) -> None:
        reason = _str(self.p.get("reason")) or "permission denied"
        values = self.tool_row(self.p)
        if values:
            values.update(success=0, error_message=reason, ended_at=self.now, created_at=self.now)
            self.add("tools", values)
        tool_use_id = _str(self.p.get("tool_use_id"))
        tool = _str(self.p.get("tool_name"))
        self.add(
            "session_errors",
            {
                "id": f"{self.sid}:{tool_use_id}:denied"
                if tool_use_id
                else f"{self.sid}:{self.ctx.event_id}",
                "error_type": "permission_denied",
                "error_message": f"{tool}: {reason}" if tool else reason,
                "created_at": self.now,
            },
        )

    def tool_batch(self) -> None:
        """Names and inputs only: here tool_response is the model-facing text, not the structured one."""
        calls = self.p.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            values = self.tool_row(_dict(call))
            if values:
                values["created_at"] = self.now
                self.add("tools", values)

    def file_operation(self, tool: dict[str, Any], response: Any) -> None:
        path = tool["file_path"]
        name = tool["tool_name"] or ""
        if not path:
            return
        response = _dict(response)
        tool_input = _dict(self.p.get("tool_input"))
        added: int | None = None
        removed: int | None = None
        if name == "Write":
            if response.get("type") == "create":
                operation = "created"
                added = count_lines(tool_input.get("content"))
                if added is None:
                    added = count_lines(response.get("content"))
                removed = 0
            else:
                operation = "edited"
                added, removed = _patch_counts(response.get("structuredPatch"))
        elif name == "NotebookEdit":
            operation = "edited"
            mode = _str(tool_input.get("edit_mode")) or _str(response.get("edit_mode"))
            if mode == "insert":
                added, removed = count_lines(tool_input.get("new_source")), 0
            elif mode == "delete":
                added, removed = 0, count_lines(response.get("old_source"))
        else:
            operation = _FILE_OPS.get(name) or name.lower() or "touched"
            added, removed = _patch_counts(response.get("structuredPatch"))
            if added is None and name == "Edit":
                diff = _dict(response.get("gitDiff"))
                added, removed = _int(diff.get("additions")), _int(diff.get("deletions"))
        self.add(
            "file_operations",
            {
                "id": f"{tool['id']}:{path}",
                "tool_id": tool["id"],
                "file_path": path,
                "operation_type": operation,
                "lines_added": added,
                "lines_removed": removed,
                "created_at": self.now,
            },
        )

    # -- compaction -----------------------------------------------------------------------------

    def compaction(self) -> None:
        prompt_id = _str(self.p.get("prompt_id"))
        trigger = _str(self.p.get("trigger"))
        values: dict[str, Any] = {
            "id": f"{self.sid}:{prompt_id or self.ctx.event_id}",
            "trigger": trigger,
            "created_at": self.now,
        }
        self.add("compaction_events", values)

    def stop(self) -> None:
        self.status("idle")
        self.session["outcome"] = "ok"

    def skill_shell_command(self) -> None:
        values = self.tool_row(self.p)
        if values:
            values.update(started_at=self.now, created_at=self.now)
            self.add("tools", values)


_HANDLERS: dict[str, Callable[[_Event], None]] = {
    "SessionStart": _Event.session_start,
    "SessionEnd": _Event.session_end,
    "UserPromptSubmit": _Event.user_prompt,
    "Stop": _Event.stop,
    "StopFailure": _Event.stop_failure,
    "Notification": _Event.notification,
    "PermissionRequest": lambda e: e.status("waiting"),
    "PermissionDenied": _Event.permission_denied,
    "PreToolUse": _Event.pre_tool,
    "PostToolUse": _Event.post_tool,
    "PostToolUseFailure": _Event.tool_failure,
    "PostToolBatch": _Event.tool_batch,
    "PreCompact": _Event.compaction,
    "PostCompact": _Event.compaction,
    "PostModelSwitch": _Event.model_switch,
    "PreSkillShellCommand": _Event.skill_shell_command,
}


@register("claude")
def normalize(payload: Any, ctx: Context) -> Normalized:
    if not isinstance(payload, dict):
        return Normalized(kind="unknown", session_id=None)
    kind = _str(payload.get("hook_event_name")) or "unknown"
    session_id = _str(payload.get("session_id"))
    if session_id is None:
        return Normalized(kind=kind, session_id=None)
    event = _Event(payload, ctx, kind, session_id)
    event.session_fields()
    if kind in _TOOL_EVENTS and event.agent_id is None:
        event.status("busy")
    handler = _HANDLERS.get(kind)
    if handler is not None:
        handler(event)
    rows = event.rows
    if event.session:
        rows.insert(
            0, Row("sessions", {"id": session_id, "updated_at": event.now, **event.session})
        )
    return Normalized(kind=kind, session_id=session_id, rows=rows)
