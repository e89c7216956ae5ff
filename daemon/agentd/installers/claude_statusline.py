"""Claude Code's statusLine in a settings document (`agentd install claude --statusline`,
docs/usage.md): agentd's own, set and taken out again, and a user's own kept in a backup.

Pure functions over the parsed settings: installers/claude.py reads the file once, validates the
whole request, applies hooks and statusLine together and writes once.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

from agentd.installers import InstallError

__all__ = ["STATUSLINE_MARKER", "statusline_command", "backup_path", "plan_set", "plan_unset"]

STATUSLINE_MARKER = "# agentd-statusline"
BACKUP_SUFFIX = ".agentd-statusline-backup"


def statusline_command(python: str | None = None, script: str | None = None) -> str:
    """As hook_command(): absolute interpreter and file, `-I -S`, silent if agentd is gone."""
    python = shlex.quote(python or sys.executable)
    script = shlex.quote(script or str(Path(__file__).resolve().parents[1] / "statusline.py"))
    return (
        f"test -x {python} && test -f {script} && exec {python} -I -S {script};"
        f" exit 0 {STATUSLINE_MARKER}"
    )


def is_ours(value: Any) -> bool:
    return isinstance(value, dict) and str(value.get("command", "")).endswith(STATUSLINE_MARKER)


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + BACKUP_SUFFIX)


def plan_set(path: Path, settings: dict[str, Any], *, force: bool) -> tuple[str | None, bool]:
    """Set agentd's statusLine in `settings`: (the change, or None if it is there already;
    whether it replaces a user's own, whose file must then be backed up). A user's own without
    `force` is refused before anything is written."""
    current = settings.get("statusLine")
    wanted = {"type": "command", "command": statusline_command(), "padding": 0}
    if current == wanted:
        return None, False
    users_own = current is not None and not is_ours(current)
    if users_own and not force:
        raise InstallError(
            f"{path} already has a statusLine of your own "
            f"({json.dumps(current, ensure_ascii=False, default=str)}); agentd leaves it alone. "
            "Add --force to replace it (the file is backed up first)."
        )
    settings["statusLine"] = wanted
    return ("update statusLine" if current is not None else "add statusLine"), users_own


def plan_unset(settings: dict[str, Any], previous: dict[str, Any] | None) -> str | None:
    """Take agentd's statusLine out of `settings`, giving back the user's own from `previous`
    (the backed-up settings), if it held one. The change, or None (agentd's is not there)."""
    if not is_ours(settings.get("statusLine")):
        return None
    own = (previous or {}).get("statusLine")
    if own is not None and not is_ours(own):
        settings["statusLine"] = own
        return "restore your statusLine"
    del settings["statusLine"]
    return "remove statusLine"
