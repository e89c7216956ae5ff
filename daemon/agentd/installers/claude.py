"""Installing agentd into Claude Code: its hook on every hook event, merged into settings.json.

Idempotent (a second run changes nothing), reversible (`uninstall` removes exactly the entries
whose command ends in HOOK_MARKER), backed up (the previous file is kept beside it).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentd.installers import InstallError, Plan

__all__ = [
    "EVENTS",
    "HOOK_MARKER",
    "config_dir",
    "settings_files",
    "target",
    "hook_command",
    "install",
    "uninstall",
    "summary",
]

SCOPE_HELP = "user: ~/.claude/settings.json (all projects); project: DIR/.claude/settings.json."
INSTALL_HELP = """Add agentd's hook to every Claude Code hook event.

    Merges into settings.json: your other hooks and keys stay, the previous file is kept as
    settings.json.agentd-backup, and running it again changes nothing. The hook command names
    this Python and agentd's hook by absolute path, so it works from any directory without PATH
    or an activated virtualenv.

    \b
    Example:
      agentd install claude --dry-run
      agentd install claude --scope project --project-dir ~/src/myapp
    """
UNINSTALL_HELP = """Remove agentd's hooks from Claude Code's settings.json (nothing else).

    \b
    Example:
      agentd uninstall claude --scope project
    """
AFTER_INSTALL = "Claude Code picks the hooks up by itself; check with: agentd status"
MANAGED_SETTINGS = Path("/etc/claude-code/managed-settings.json")

# Claude Code 2.1.329's hook events (https://code.claude.com/docs/en/hooks; tests/test_install.py),
# all but WorktreeCreate: a WorktreeCreate hook *replaces* git worktree creation, so registering
# one would break worktrees.
EVENTS = (
    "PreToolUse", "PostToolUse", "PostToolUseFailure", "PostToolBatch", "Notification",
    "UserPromptSubmit", "UserPromptExpansion", "SessionStart", "SessionEnd", "Stop", "StopFailure",
    "SubagentStart", "SubagentStop", "PreCompact", "PostCompact", "PreModelSwitch",
    "PostModelSwitch", "PermissionRequest", "PermissionDenied", "Setup", "TeammateIdle",
    "TaskCreated", "TaskCompleted", "Elicitation", "ElicitationResult", "ConfigChange",
    "WorktreeRemove", "InstructionsLoaded", "CwdChanged", "FileChanged", "DirectoryAdded",
    "MessageDisplay",
)  # fmt: skip
# Events whose hooks take no matcher (Claude Code's hooks reference); the others get "*".
_NO_MATCHER = {
    "UserPromptSubmit", "PostToolBatch", "Stop", "TeammateIdle", "TaskCreated", "TaskCompleted",
    "WorktreeCreate", "WorktreeRemove", "MessageDisplay", "CwdChanged",
}  # fmt: skip
HOOK_MARKER = "# agentd-hook"  # ends every command agentd writes: how uninstall finds exactly them
HOOK_TIMEOUT_S = 5  # the hook bounds itself at 0.5 s; this is Claude's backstop


def config_dir(env: Mapping[str, str]) -> Path:
    """Claude Code's user configuration directory: `$CLAUDE_CONFIG_DIR`, else `~/.claude`. The one
    place that resolves it (settings, transcripts under `projects/`, plugins)."""
    explicit = env.get("CLAUDE_CONFIG_DIR")
    if explicit:
        return Path(explicit).expanduser()
    return Path(env.get("HOME") or Path.home()) / ".claude"


def settings_files(env: Mapping[str, str], cwd: Path) -> list[tuple[str, Path]]:
    """Claude Code's settings files, highest precedence first (its settings documentation)."""
    return [
        ("managed", MANAGED_SETTINGS),
        ("local", cwd / ".claude" / "settings.local.json"),
        ("project", cwd / ".claude" / "settings.json"),
        ("user", config_dir(env) / "settings.json"),
    ]


def target(scope: str, project_dir: Path | None, env: Mapping[str, str]) -> Path:
    """The settings file `agentd install claude --scope SCOPE` writes."""
    if scope == "project":
        return (project_dir or Path.cwd()).resolve() / ".claude" / "settings.json"
    return config_dir(env) / "settings.json"


def hook_command() -> str:
    """The command for settings.json (run by Claude Code through a shell): absolute interpreter and
    hook file, so PATH and any activated virtualenv do not matter; `-I -S` because the hook needs
    only the standard library and starts faster without the site-packages scan."""
    hook = Path(__file__).resolve().parents[1] / "hook.py"
    # `trap '' TERM HUP`: Claude Code SIGTERMs a -p session's hooks as it exits (StopFailure fires
    # last), sometimes before Python has started; an ignored signal stays ignored across exec.
    python = shlex.quote(sys.executable)
    return f"trap '' TERM HUP; exec {python} -I -S {shlex.quote(str(hook))} {HOOK_MARKER}"


def _is_ours(handler: Any) -> bool:
    return isinstance(handler, dict) and str(handler.get("command", "")).endswith(HOOK_MARKER)


def _read_settings(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise InstallError(f"cannot read {path}: {e.strerror}") from None
    if not text.strip():
        return {}
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as e:
        raise InstallError(f"{path} is not valid JSON ({e}); fix it, then run again") from None
    if not isinstance(settings, dict):
        raise InstallError(f"{path} does not hold a JSON object; fix it, then run again")
    if not isinstance(settings.get("hooks", {}), dict):
        raise InstallError(f'{path}: "hooks" is not an object; fix it, then run again')
    return settings


def _write_settings(plan: Plan, settings: dict[str, Any]) -> None:
    path = plan.path
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        plan.backup = path.with_name(path.name + ".agentd-backup")
        plan.backup.write_bytes(path.read_bytes())
    tmp = path.with_name(f".{path.name}.agentd-{os.getpid()}")
    tmp.write_text(json.dumps(settings, indent=2) + "\n")
    os.replace(tmp, path)  # atomic: Claude Code's settings watcher never sees half a file
    plan.applied = True


def install(path: Path, *, dry_run: bool = False, command: str | None = None) -> Plan:
    """Merge agentd's hook into every event of the settings file at `path`."""
    command = command or hook_command()
    settings = _read_settings(path)
    hooks = settings.setdefault("hooks", {})
    plan = Plan(path)
    for event in EVENTS:
        groups = hooks.get(event)
        if not isinstance(groups, list):
            groups = hooks[event] = []
        ours = [h for g in groups if isinstance(g, dict) for h in g.get("hooks", []) if _is_ours(h)]
        if ours and all(h.get("command") == command for h in ours):
            continue
        # Drop stale copies (another interpreter or checkout), then add the current one.
        _remove_ours(groups)
        handler = {"type": "command", "command": command, "timeout": HOOK_TIMEOUT_S}
        group: dict[str, Any] = {"hooks": [handler]}
        if event not in _NO_MATCHER:
            group = {"matcher": "*", **group}
        groups.append(group)
        plan.changes.append(f"{'update' if ours else 'add'} {event} hook")
    if plan.changed and not dry_run:
        _write_settings(plan, settings)
    return plan


def _remove_ours(groups: list[Any]) -> int:
    removed = 0
    for group in list(groups):
        if not isinstance(group, dict) or not isinstance(group.get("hooks"), list):
            continue
        kept = [h for h in group["hooks"] if not _is_ours(h)]
        removed += len(group["hooks"]) - len(kept)
        if kept:
            group["hooks"] = kept
        elif len(kept) != len(group["hooks"]):
            groups.remove(group)
    return removed


def uninstall(path: Path, *, dry_run: bool = False) -> Plan:
    """Remove exactly the hook entries agentd added; everything else stays as it was."""
    settings = _read_settings(path)
    plan = Plan(path)
    hooks = settings.get("hooks", {})
    for event in list(hooks):
        groups = hooks[event]
        if not isinstance(groups, list):
            continue
        if _remove_ours(groups):
            plan.changes.append(f"remove {event} hook")
            if not groups:
                del hooks[event]
    if "hooks" in settings and not settings["hooks"]:
        del settings["hooks"]
    if plan.changed and not dry_run:
        _write_settings(plan, settings)
    return plan


def summary(plan: Plan, *, dry_run: bool, installing: bool) -> list[str]:
    """What the CLI prints about a plan: the file, then one line per hook entry changed."""
    if not plan.changed:
        done = "agentd's hooks are installed" if installing else "no agentd hooks are present"
        return [f"Nothing to change in {plan.path}: {done} already."]
    verb = "Would change" if dry_run else "Changed"
    lines = [f"{verb} {plan.path}: {len(plan.changes)} hook entries"]
    lines += [f"  {change}" for change in plan.changes]
    if plan.backup:
        lines.append(f"Backup of the previous file: {plan.backup}")
    return lines
