"""Installing agentd into the agents' own configuration: one module per agent (agents.py).

Each installer returns a Plan (what would change, and where) and applies it unless `dry_run`;
the CLI prints the plan with the installer's `summary()`. Nothing here reads input or prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agentd.errors import InstallError

__all__ = ["InstallError", "Plan"]


@dataclass
class Plan:
    path: Path
    changes: list[str] = field(default_factory=list)  # the capture's entries (hooks, plugin)
    backup: Path | None = None
    applied: bool = False
    extras: list[str] = field(default_factory=list)  # other settings changed (Claude's statusLine)
    notes: list[str] = field(default_factory=list)  # more for the user to know (backups kept)

    @property
    def changed(self) -> bool:
        return bool(self.changes)
