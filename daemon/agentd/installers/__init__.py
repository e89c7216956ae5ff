"""Installing agentd into the agents' own configuration: idempotent, reversible, backed up.

Each function returns a Plan (what would change, and where) and applies it unless `dry_run`.
The CLI prints the plan. Nothing here reads the user's input or prints.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CLAUDE_EVENTS",
    "HOOK_MARKER",
    "InstallError",
    "Plan",
    "claude_settings_path",
    "claude_hook_command",
    "install_claude",
    "uninstall_claude",
    "OPENCODE_PLUGIN_MARKER",
    "opencode_plugin_path",
    "opencode_plugin_source",
    "install_opencode",
    "uninstall_opencode",
]

# Claude Code 2.1.329's hook events (shared/reference/formats.md A2), all but WorktreeCreate: a
# WorktreeCreate hook *replaces* git worktree creation, so registering one would break worktrees.
CLAUDE_EVENTS = (
    "PreToolUse", "PostToolUse", "PostToolUseFailure", "PostToolBatch", "Notification",
    "UserPromptSubmit", "UserPromptExpansion", "SessionStart", "SessionEnd", "Stop", "StopFailure",
    "SubagentStart", "SubagentStop", "PreCompact", "PostCompact", "PreModelSwitch",
    "PostModelSwitch", "PermissionRequest", "PermissionDenied", "Setup", "TeammateIdle",
    "TaskCreated", "TaskCompleted", "Elicitation", "ElicitationResult", "ConfigChange",
    "WorktreeRemove", "InstructionsLoaded", "CwdChanged", "FileChanged", "DirectoryAdded",
    "MessageDisplay",
)  # fmt: skip
# Events whose hooks take a matcher (formats.md A1); the others must not carry one.
_NO_MATCHER = {
    "UserPromptSubmit", "PostToolBatch", "Stop", "TeammateIdle", "TaskCreated", "TaskCompleted",
    "WorktreeCreate", "WorktreeRemove", "MessageDisplay", "CwdChanged",
}  # fmt: skip
HOOK_MARKER = "# agentd-hook"  # ends every command agentd writes: how uninstall finds exactly them
HOOK_TIMEOUT_S = 5  # the hook bounds itself at 0.5 s; this is Claude's backstop


class InstallError(Exception):
    """The install cannot proceed (unreadable settings, ...); the message says what to fix."""


@dataclass
class Plan:
    path: Path
    changes: list[str] = field(default_factory=list)
    backup: Path | None = None
    applied: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def claude_settings_path(scope: str, project_dir: Path | None, env: dict[str, str]) -> Path:
    if scope == "project":
        return (project_dir or Path.cwd()).resolve() / ".claude" / "settings.json"
    config_dir = env.get("CLAUDE_CONFIG_DIR")
    base = (
        Path(config_dir).expanduser()
        if config_dir
        else Path(env.get("HOME") or Path.home()) / ".claude"
    )
    return base / "settings.json"


def claude_hook_command() -> str:
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


def install_claude(path: Path, *, dry_run: bool = False, command: str | None = None) -> Plan:
    """Merge agentd's hook into every event of the settings file at `path`."""
    command = command or claude_hook_command()
    settings = _read_settings(path)
    hooks = settings.setdefault("hooks", {})
    plan = Plan(path)
    for event in CLAUDE_EVENTS:
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


def uninstall_claude(path: Path, *, dry_run: bool = False) -> Plan:
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


# --- OpenCode: a plugin file in a directory OpenCode loads plugins from by itself ---------------

# The plugin file's first line starts with this: how uninstall knows the file is agentd's.
OPENCODE_PLUGIN_MARKER = "// agentd-opencode-plugin"
OPENCODE_PLUGIN_FILE = "agentd.ts"


def opencode_plugin_path(scope: str, project_dir: Path | None, env: dict[str, str]) -> Path:
    """Where OpenCode (1.18) finds the plugin without any config entry: `{plugin,plugins}/*.ts` in
    each config dir (formats.md C2): `~/.config/opencode` ($XDG_CONFIG_HOME honoured), or the
    project's `.opencode`."""
    if scope == "project":
        base = (project_dir or Path.cwd()).resolve() / ".opencode"
    else:
        config_home = env.get("XDG_CONFIG_HOME")
        root = (
            Path(config_home).expanduser()
            if config_home
            else Path(env.get("HOME") or Path.home()) / ".config"
        )
        base = root / "opencode"
    return base / "plugins" / OPENCODE_PLUGIN_FILE


def opencode_plugin_source() -> str:
    """The plugin's text: shipped in the wheel as agentd/opencode_plugin/agentd.ts; an editable
    install (a checkout) reads opencode-plugin/src/agentd.ts."""
    from importlib.resources import files

    shipped = files("agentd").joinpath("opencode_plugin", OPENCODE_PLUGIN_FILE)
    if shipped.is_file():
        return shipped.read_text(encoding="utf-8")
    checkout = Path(__file__).resolve().parents[3] / "opencode-plugin" / "src"
    checkout /= OPENCODE_PLUGIN_FILE
    try:
        return checkout.read_text(encoding="utf-8")
    except OSError:
        raise InstallError(
            "the OpenCode plugin file is missing from this agentd installation "
            f"(looked for agentd/opencode_plugin/{OPENCODE_PLUGIN_FILE} and {checkout})"
        ) from None


def _is_our_plugin(text: str) -> bool:
    return text.startswith(OPENCODE_PLUGIN_MARKER)


def _read_plugin(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise InstallError(f"{path} is a directory; move it away, then run again") from None
    except OSError as e:
        raise InstallError(f"cannot read {path}: {e.strerror}") from None


def install_opencode(path: Path, *, dry_run: bool = False, source: str | None = None) -> Plan:
    """Write the plugin file at `path`, or update an older copy of it; same content: no change.
    A file of that name that is not agentd's is left alone (InstallError)."""
    text = opencode_plugin_source() if source is None else source
    current = _read_plugin(path)
    plan = Plan(path)
    if current == text:
        return plan
    if current is not None and not _is_our_plugin(current):
        raise InstallError(
            f"{path} exists and is not agentd's plugin (its first line is not "
            f"{OPENCODE_PLUGIN_MARKER!r}); move it away, then run again"
        )
    plan.changes.append(f"{'update' if current is not None else 'add'} agentd's plugin")
    if not dry_run:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.agentd-{os.getpid()}")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)  # atomic: a starting OpenCode never loads half a file
        except OSError as e:
            raise InstallError(f"cannot write {path}: {e.strerror}") from None
        plan.applied = True
    return plan


def uninstall_opencode(path: Path, *, dry_run: bool = False) -> Plan:
    """Remove the plugin file at `path` if it is agentd's (its marker line); nothing else."""
    current = _read_plugin(path)
    plan = Plan(path)
    if current is None:
        return plan
    if not _is_our_plugin(current):
        raise InstallError(
            f"{path} is not agentd's plugin (its first line is not {OPENCODE_PLUGIN_MARKER!r}); "
            "left as it is"
        )
    plan.changes.append("remove agentd's plugin")
    if not dry_run:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            raise InstallError(f"cannot remove {path}: {e.strerror}") from None
        plan.applied = True
    return plan
