"""Claude Code transcript records -> rows (source `claude-transcript`, sent by `agentd import claude`).

The payload is one record (one line) of a transcript, `~/.claude/projects/<project>/<session>.jsonl`
or `<session>/subagents/agent-<id>.jsonl` (shared/reference/formats.md B), as Claude Code wrote it.
Two record types lack the prompt id their rows are keyed on, and the importer fills it in as
`promptId` (the field Claude Code uses on user records), from the neighbouring records:
`compact_boundary` gets the first prompt id written after it (the prompt the compaction belongs
to, what the hooks call prompt_id), an API-error assistant record (`isApiErrorMessage`) the last
one before it (the prompt whose turn it ended). A record that already has a promptId keeps it.

`kind` is the record's `type` (`system.<subtype>` for system records); the session is `sessionId`.
Rows are written with source `claude`: the same rows the live hooks produce, under the same ids,
so an import after live capture fills in what the hooks missed and duplicates nothing.

| table | id | from |
|---|---|---|
| tools | `{sessionId}:{tool_use id}` | assistant `tool_use` blocks (name, input, file_path, message_id, agent_id, started_at), user `tool_result` blocks (success, error_message, exit_code, tool_output, interrupted, ended_at) |
| file_operations | `{tools.id}:{file_path}` | successful tool results of Read, Write, Edit, NotebookEdit (the tool is told by its result's shape) |
| messages | `{sessionId}:{promptId}` (prompts), `{sessionId}:{message.id}` (assistant) | a person's prompt (role user, or system for task notifications and other synthetic sources, as claude.py); each API response once, with its usage |
| session_errors | `{sessionId}:{promptId}:stop_failure` (API error that ended a turn), `{sessionId}:{uuid}` (a retried API error, `system.api_error`) | |
| compaction_events | `{sessionId}:{promptId}` | `compact_boundary` (trigger, preTokens, postTokens) |
| sessions | `{sessionId}` | project_path (the cwd of the session's first record), title (custom-title, ai-title, summary), model (main-thread assistant records), permission_mode, cost (the last `cost-state` record's totalCostUSD), git_branch, outcome + last_error (an API-error record that ended a turn: `error`; an interrupted tool: `interrupted`, as the hooks say) |

`host-row` records (Claude Code 2.1.332: a call made by a script, `ranByToolUseId`) are kept raw in
`events` with their session; no typed row yet (their fields are not documented).

Tool results are turned into rows by the live normalizer (normalizers/claude_hooks.py) from the equivalent
PostToolUse / PostToolUseFailure hook payload, prompts from the equivalent UserPromptSubmit, so
exit codes, error texts, file operations, line counts and the prompt role rule are the same code.
What the transcript does not have is left out rather than guessed, so that an import never
overwrites a better value the hooks stored (newest non-null wins, see rows.py):
duration_ms (hooks time the tool itself; a transcript has only when the request was written and
when the result was), the structured output of a subagent's tool (its transcript keeps only the
model-facing text), session status and end. Subagent records (`isSidechain`, `agentId`) carry
agent_id; they share the session id and never make a session row or a prompt of their own.
"""

from __future__ import annotations

import os
import re
from typing import Any

from agentd.normalizers import claude_hooks, register
from agentd.normalizers._claude import api_status_code, stop_failure_id
from agentd.normalizers._values import (
    as_dict as _dict,
    as_int as _int,
    as_str as _str,
    timestamp_ms,
)
from agentd.rows import Context, Normalized, Row

__all__ = ["normalize", "is_prompt", "has_tool_results", "timestamp_ms"]

SOURCE = "claude"
_SYNTHETIC_MODEL = "<synthetic>"
_ERROR_WRAPPER = re.compile(r"^\s*<tool_use_error>(.*?)</tool_use_error>\s*$", re.DOTALL)
# Text of user records that are not a prompt a person (or Claude Code on their behalf) submitted:
# slash-command echoes and local command output (no UserPromptSubmit fires for /compact and the
# like), an interruption notice.
_NOT_PROMPT_PREFIXES = (
    "<command-name>",
    "<command-message>",
    "<local-command-",
    "[Request interrupted",
)
_INTERRUPTED = "[Request interrupted by user"
# Records that say something about the session as a whole: column, key.
_TITLE_KEYS = {"custom-title": "customTitle", "ai-title": "aiTitle", "summary": "summary"}


def _texts(content: Any) -> str | None:
    """The text of a message content: a string, or the text blocks of a block list joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str)
        ]
        return "\n".join(parts) if parts else None
    return None


def has_tool_results(record: dict[str, Any]) -> bool:
    content = _dict(record.get("message")).get("content")
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    )


def is_prompt(record: dict[str, Any]) -> bool:
    """A user record holding a prompt that UserPromptSubmit reported (same session, main thread)."""
    if (
        record.get("isMeta")
        or record.get("isCompactSummary")
        or record.get("isVisibleInTranscriptOnly")
    ):
        return False
    if record.get("isSidechain") is True or _str(record.get("agentId")):
        return False  # a subagent's task: no UserPromptSubmit, and it shares the parent's prompt id
    if not _str(record.get("promptId")):
        return False
    if has_tool_results(record):
        return False
    text = _texts(_dict(record.get("message")).get("content"))
    return text is not None and not text.lstrip().startswith(_NOT_PROMPT_PREFIXES)


def _infer_tool(result: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(tool name, the input keys its file operation needs) told from a structured tool result.

    A tool_result record does not name its tool; the shapes of the file tools' results do
    (formats.md A5). Other tools get no file operation from an import.
    """
    file = _dict(result.get("file"))
    if result.get("type") in ("create", "update") and "structuredPatch" in result:
        return "Write", {"file_path": result.get("filePath"), "content": result.get("content")}
    if "oldString" in result and "newString" in result:
        return "Edit", {"file_path": result.get("filePath")}
    if isinstance(result.get("type"), str) and _str(file.get("filePath")):
        return "Read", {"file_path": file.get("filePath")}
    if "notebook_path" in result and "edit_mode" in result:
        return "NotebookEdit", {
            "notebook_path": result.get("notebook_path"),
            "edit_mode": result.get("edit_mode"),
            "new_source": result.get("new_source"),
        }
    return None, {}


class _Record:
    def __init__(self, record: dict[str, Any], ctx: Context, session: str) -> None:
        self.r = record
        self.sid = session
        self.at = timestamp_ms(record.get("timestamp")) or ctx.received_at
        self.ctx = Context(
            source=SOURCE,
            event_id=ctx.event_id,
            received_at=self.at,
            output_limit_bytes=ctx.output_limit_bytes,
        )
        self.agent_id = _str(record.get("agentId"))
        self.sidechain = record.get("isSidechain") is True or self.agent_id is not None
        self.cwd = _str(record.get("cwd"))
        self.session: dict[str, Any] = {}
        self.rows: list[Row] = []

    def add(self, table: str, values: dict[str, Any]) -> None:
        values["session_id"] = self.sid
        values["source"] = SOURCE
        self.rows.append(Row(table, values))

    def live(self, payload: dict[str, Any], tables: tuple[str, ...]) -> list[Row]:
        """Rows the live normalizer makes of the equivalent hook payload (its session row, which
        carries hook-only state such as status, left out)."""
        payload.update(session_id=self.sid, cwd=self.cwd, agent_id=self.agent_id)
        rows = [
            row for row in claude_hooks.normalize(payload, self.ctx).rows if row.table in tables
        ]
        for row in rows:
            row.values["source"] = SOURCE
        return rows

    # -- session-wide facts ---------------------------------------------------------------------

    def session_fields(self) -> None:
        r = self.r
        if self.sidechain:
            return
        # The session's first record: its cwd is where the session started (the project, the
        # transcript's directory), however far a later `cd` went. A compact_boundary starts a new
        # chain too, but mid-session.
        first = "parentUuid" in r and r["parentUuid"] is None
        if first and r.get("subtype") != "compact_boundary" and self.cwd:
            self.session["project_path"] = self.cwd
            self.session["project_name"] = os.path.basename(self.cwd.rstrip("/")) or self.cwd
        branch = _str(r.get("gitBranch"))
        if branch and branch != "HEAD":  # "HEAD": not a git repository (or a detached head)
            self.session["git_branch"] = branch
        mode = _str(r.get("permissionMode"))
        if mode:
            self.session["permission_mode"] = mode

    # -- records --------------------------------------------------------------------------------

    def user(self) -> None:
        content = _dict(self.r.get("message")).get("content")
        if isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    self.tool_result(block)
        if is_prompt(self.r):
            hook = {
                "hook_event_name": "UserPromptSubmit",
                "prompt_id": self.r["promptId"],
                "prompt": _texts(content),
                "source": self.r.get("promptSource"),
            }
            self.rows += self.live(hook, ("messages",))

    def tool_result(self, block: dict[str, Any]) -> None:
        tool_use_id = _str(block.get("tool_use_id"))
        if tool_use_id is None:
            return
        result = self.r.get("toolUseResult")
        if block.get("is_error") is True:
            text = _texts(block.get("content"))
            if text is None and isinstance(result, str):
                text = result.removeprefix("Error: ")
            wrapped = _ERROR_WRAPPER.match(text or "")
            if wrapped:
                text = wrapped.group(1)
            hook = {
                "hook_event_name": "PostToolUseFailure",
                "tool_use_id": tool_use_id,
                "error": text,
                "is_interrupt": bool(text and text.startswith(_INTERRUPTED)),
            }
        else:
            # Several results in one record share one toolUseResult: it is only theirs when alone.
            single = sum(
                1
                for b in _dict(self.r.get("message")).get("content") or ()
                if isinstance(b, dict) and b.get("type") == "tool_result"
            )
            response = result if single == 1 and result is not None else None
            name, tool_input = _infer_tool(result) if isinstance(response, dict) else (None, {})
            hook = {
                "hook_event_name": "PostToolUse",
                "tool_use_id": tool_use_id,
                "tool_name": name,
                "tool_input": {k: v for k, v in tool_input.items() if v is not None},
                "tool_response": response,
            }
        if hook.get("is_interrupt") is True and not self.sidechain:
            self.session["outcome"] = "interrupted"
        for row in self.live(hook, ("tools", "file_operations")):
            if row.table == "tools":
                # Name, input and path come from the tool_use block; these were only inferred.
                for column in ("tool_name", "tool_input", "file_path"):
                    row.values.pop(column, None)
            self.rows.append(row)

    def assistant(self) -> None:
        message = _dict(self.r.get("message"))
        if self.r.get("isApiErrorMessage") is True:
            self.api_error_message(message)
            return
        model = _str(message.get("model"))
        message_id = _str(message.get("id"))
        if model == _SYNTHETIC_MODEL or message_id is None:
            return
        key = f"{self.sid}:{message_id}"
        usage = _dict(message.get("usage"))
        cache_creation = _dict(usage.get("cache_creation"))
        self.add(
            "messages",
            {
                "id": key,
                "role": "assistant",
                "model": model,
                "agent_id": self.agent_id,
                "prompt_tokens": _int(usage.get("input_tokens")),
                "completion_tokens": _int(usage.get("output_tokens")),
                "cache_read_tokens": _int(usage.get("cache_read_input_tokens")),
                "cache_write_tokens": _int(usage.get("cache_creation_input_tokens")),
                # By cache lifetime (priced apart: 1.25x and 2x input); absent before 2.1.x.
                "cache_write_5m_tokens": _int(cache_creation.get("ephemeral_5m_input_tokens")),
                "cache_write_1h_tokens": _int(cache_creation.get("ephemeral_1h_input_tokens")),
                "speed": _str(usage.get("speed")),
                "reasoning_tokens": _int(
                    _dict(usage.get("output_tokens_details")).get("thinking_tokens")
                ),
                "created_at": self.at,
                "completed_at": self.at,  # one record per content block: the last one wins
            },
        )
        if model and not self.sidechain:
            self.session["model"] = model
        content = message.get("content")
        for block in content if isinstance(content, list) else ():
            if not isinstance(block, dict) or block.get("type") != "tool_use":
                continue
            tool_use_id = _str(block.get("id"))
            if tool_use_id is None:
                continue
            hook = {
                "hook_event_name": "PreToolUse",
                "tool_use_id": tool_use_id,
                "tool_name": block.get("name"),
                "tool_input": block.get("input"),
            }
            for row in self.live(hook, ("tools",)):
                row.values["message_id"] = key
                self.rows.append(row)

    def api_error_message(self, message: dict[str, Any]) -> None:
        """A synthetic assistant message: the API error that ended a turn (the hooks' StopFailure)."""
        text = _texts(message.get("content"))
        prompt = _str(self.r.get("promptId"))
        status = _int(self.r.get("apiErrorStatus"))
        if status is None:
            status = api_status_code(text)
        if prompt and not self.sidechain:
            row_id = stop_failure_id(self.sid, prompt)
            # The turn ended on it, as the hooks' StopFailure says (same outcome, same text).
            error = _str(self.r.get("error")) or "unknown"
            self.session["outcome"] = "error"
            self.session["last_error"] = claude_hooks.truncate(
                f"{error}: {text}" if text else error, self.ctx.output_limit_bytes
            )
        elif uuid := _str(self.r.get("uuid")):
            row_id = f"{self.sid}:{uuid}"
        else:
            return
        self.add(
            "session_errors",
            {
                "id": row_id,
                "error_type": _str(self.r.get("error")) or "unknown",
                "error_message": claude_hooks.truncate(text, self.ctx.output_limit_bytes),
                "status_code": status,
                "created_at": self.at,
            },
        )

    def system(self) -> None:
        subtype = self.r.get("subtype")
        if subtype == "compact_boundary":
            meta = _dict(self.r.get("compactMetadata"))
            key = _str(self.r.get("promptId")) or _str(self.r.get("uuid"))
            if key:
                self.add(
                    "compaction_events",
                    {
                        "id": f"{self.sid}:{key}",
                        "trigger": _str(meta.get("trigger")),
                        "tokens_before": _int(meta.get("preTokens")),
                        "tokens_after": _int(meta.get("postTokens")),
                        "created_at": self.at,
                    },
                )
        elif subtype == "api_error" and _str(self.r.get("uuid")):
            # A failed API call Claude Code retried: no hook reports it.
            error = _dict(self.r.get("error"))
            message = _str(error.get("formatted")) or _str(error.get("message"))
            self.add(
                "session_errors",
                {
                    "id": f"{self.sid}:{self.r['uuid']}",
                    "error_type": "retry",
                    "error_message": claude_hooks.truncate(message, self.ctx.output_limit_bytes),
                    "status_code": _int(error.get("status")),
                    "created_at": self.at,
                },
            )

    def metadata(self, rtype: str) -> None:
        if rtype in _TITLE_KEYS:
            title = _str(self.r.get(_TITLE_KEYS[rtype]))
            if title:
                self.session["title"] = title
        elif rtype == "cost-state":
            cost = self.r.get("totalCostUSD")
            if isinstance(cost, int | float) and not isinstance(cost, bool) and cost >= 0:
                # Cumulative for the session (Claude Code restores it on --resume); messages carry
                # no cost, so the store keeps this as the session's total.
                self.session["cost"] = float(cost)


@register("claude-transcript")
def normalize(payload: Any, ctx: Context) -> Normalized:
    if not isinstance(payload, dict):
        return Normalized(kind="unknown", session_id=None)
    rtype = _str(payload.get("type")) or "unknown"
    subtype = _str(payload.get("subtype"))
    kind = f"system.{subtype}" if rtype == "system" and subtype else rtype
    session = _str(payload.get("sessionId"))
    if session is None:
        return Normalized(kind=kind, session_id=None)
    record = _Record(payload, ctx, session)
    record.session_fields()
    if rtype == "user":
        record.user()
    elif rtype == "assistant":
        record.assistant()
    elif rtype == "system":
        record.system()
    else:
        record.metadata(rtype)
    # Always a session row of our own, with source claude: the store's generic session row for
    # the event (listed before it) takes the ingest source, `claude-transcript`.
    rows = [Row("sessions", {"id": session, "source": SOURCE, **record.session}), *record.rows]
    return Normalized(kind=kind, session_id=session, rows=rows)
