"""Content levels: how much of what the agents say agentd keeps (config.toml `content_level`).

- `full` (default): everything, tool output cut to `output_limit_bytes`, secrets redacted.
- `metadata`: no bodies: no tool input or output, prompt, message or file content; names, ids,
  paths, sizes, kinds, outcomes and timings stay.
- `none`: counts and timings only: ids, kinds, tool names, statuses, numbers; no paths either.

Normalizers always see the full payload (an exit code is parsed from an error text, line counts
from a patch); the level is applied to what is stored: the typed rows' body columns, and the raw
payload, whose string values are kept or replaced by `[omitted: N chars]` according to their key.
docs/privacy.md lists what each level stores.
"""

from __future__ import annotations

from typing import Any

from agentd.rows import Row

__all__ = ["LEVELS", "apply_to_rows", "strip_payload", "path_ids"]

LEVELS = ("full", "metadata", "none")

# Typed columns that carry bodies (dropped at `metadata`) and those that carry names or paths
# (dropped too at `none`).
_BODY_COLUMNS = {
    "tools": ("tool_input", "tool_output", "error_message"),
    "sessions": ("title",),
    "session_errors": ("error_message",),
}
_PATH_COLUMNS = {
    "tools": ("file_path",),
    "file_operations": ("file_path",),
    "sessions": ("project_path", "project_name"),
}
# Ids made from a path (`{tools.id}:{file_path}`): at `none` they may not leave the machine as
# they are; the push sends them as keyed digests (push/ids.py).
_PATH_IDS = {"file_operations": ("id",)}

# Raw payload string values kept at `metadata` and `none`, by their key.
_KEEP_ALWAYS = {
    "hook_event_name", "type", "kind", "status", "tool_name", "tool", "source", "trigger",
    "reason", "role", "model", "modelID", "provider", "providerID", "permission_mode",
    "agent_type", "subagent_type", "notification_type", "error", "name", "mode", "version",
    "operation", "memory_type", "load_reason", "event", "agent", "service_tier",
}  # fmt: skip
_PATH_HINTS = ("path", "file", "cwd", "directory", "worktree", "dir")


def _is_id(key: str) -> bool:
    return key == "id" or key.endswith(("_id", "Id", "ID"))


def _keeps(key: str, level: str) -> bool:
    if _is_id(key) or key in _KEEP_ALWAYS:
        return True
    return level == "metadata" and any(hint in key.lower() for hint in _PATH_HINTS)


def strip_payload(value: Any, level: str, key: str = "") -> Any:
    """The payload as it may be stored at `level`: strings under body keys become a size."""
    if level == "full":
        return value
    if isinstance(value, dict):
        return {k: strip_payload(v, level, k) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_payload(v, level, key) for v in value]
    if isinstance(value, str) and not _keeps(key, level):
        return f"[omitted: {len(value)} chars]"
    return value


def path_ids(table: str, level: str) -> tuple[str, ...]:
    """The id columns of `table` that embed a path `level` keeps home."""
    return _PATH_IDS.get(table, ()) if level == "none" else ()


def apply_to_rows(rows: list[Row], level: str) -> None:
    """Drop the columns `level` does not keep (in place)."""
    if level == "full":
        return
    for row in rows:
        dropped = _BODY_COLUMNS.get(row.table, ())
        if level == "none":
            dropped += _PATH_COLUMNS.get(row.table, ())
        for column in dropped:
            row.values.pop(column, None)
