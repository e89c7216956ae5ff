"""Claude Code statusLine samples (source `claude_statusline`, sent by `agentd statusline`).

The payload is the object Claude Code gives its statusLine command (shared/reference/formats.md
G): session_id, model, workspace, cost, context_window, rate_limits. Migration 0010's trigger
copies its figures from the raw event into `statusline_samples`; here the session row only
learns what the sample says of it, under source `claude` (the session is Claude's, whichever
of its events came first).

| table | id | from |
|---|---|---|
| sessions | `session_id` | model (`model.id`), project_path (`workspace.project_dir`, else `cwd`) |
"""

from __future__ import annotations

import os
from typing import Any

from agentd.normalizers import register
from agentd.normalizers._values import as_dict, as_str
from agentd.rows import Context, Normalized, Row

__all__ = ["normalize"]

SOURCE = "claude_statusline"


@register(SOURCE)
def normalize(payload: Any, ctx: Context) -> Normalized:
    sample = as_dict(payload)
    session = as_str(sample.get("session_id"))
    result = Normalized(kind="statusline", session_id=session)
    if session is None:
        return result
    values: dict[str, Any] = {"id": session, "source": "claude"}
    model = as_str(as_dict(sample.get("model")).get("id"))
    if model:
        values["model"] = model
    workspace = as_dict(sample.get("workspace"))
    project = as_str(workspace.get("project_dir")) or as_str(sample.get("cwd"))
    if project:
        values["project_path"] = project
        values["project_name"] = os.path.basename(project.rstrip("/")) or project
    result.rows.append(Row("sessions", values))
    return result
