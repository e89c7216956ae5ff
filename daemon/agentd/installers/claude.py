"""Installing agentd into Claude Code: its hook on every hook event, merged into settings.json.

Idempotent (a second run changes nothing), reversible (`uninstall` removes exactly the entries
whose command ends in HOOK_MARKER), backed up (the previous file is kept beside it).
"""

from __future__ import annotations

import contextlib
import shlex
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from agentd.installers import InstallError, Plan, claude_statusline as statusline_, jsonfile
from agentd.installers.claude_statusline import statusline_command
from agentd.installers.files import replace as _replace

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
    "handlers",
    "hooks_problem",
    "statusline_command",
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
      agentd install claude --statusline          # and the statusline (docs/usage.md)
      agentd install claude --statusline --force  # replacing a statusLine of your own
    """
UNINSTALL_HELP = """Remove agentd's hooks from Claude Code's settings.json (nothing else).

    \b
    Example:
      agentd uninstall claude --scope project
    """
AFTER_INSTALL = "Claude Code picks the hooks up by itself; check with: agentd status"
MANAGED_SETTINGS = Path("/etc/claude-code/managed-settings.json")

# Claude Code 2.1.332's hook events (https://code.claude.com/docs/en/hooks; tests/test_install.py),
# all but WorktreeCreate: a WorktreeCreate hook *replaces* git worktree creation, so registering
# one would break worktrees. One list for every version: 2.1.329 accepts a settings file naming
# 2.1.332's PreSkillShellCommand and runs the other hooks (checked with the real 2.1.329 CLI; see
# docs/claude-code.md), so older versions need no list of their own.
EVENTS = (
    "PreToolUse", "PostToolUse", "PostToolUseFailure", "PostToolBatch", "Notification",
    "UserPromptSubmit", "UserPromptExpansion", "SessionStart", "SessionEnd", "Stop", "StopFailure",
    "SubagentStart", "SubagentStop", "PreCompact", "PostCompact", "PreModelSwitch",
    "PostModelSwitch", "PermissionRequest", "PermissionDenied", "Setup", "TeammateIdle",
    "TaskCreated", "TaskCompleted", "Elicitation", "ElicitationResult", "ConfigChange",
    "WorktreeRemove", "InstructionsLoaded", "CwdChanged", "FileChanged", "DirectoryAdded",
    "MessageDisplay", "PreSkillShellCommand",
)  # fmt: skip
# Events whose hooks take no matcher (Claude Code's hooks reference); the others get "*".
_NO_MATCHER = {
    "UserPromptSubmit", "PostToolBatch", "Stop", "TeammateIdle", "TaskCreated", "TaskCompleted",
    "WorktreeCreate", "WorktreeRemove", "MessageDisplay", "CwdChanged",
}  # fmt: skip
HOOK_MARKER = "# agentd-hook"  # ends every command agentd writes: how uninstall finds exactly them
HOOK_TIMEOUT_S = 5  # the hook bounds itself at 0.5 s; this is Claude's backstop
BACKUP_SUFFIX = ".agentd-backup"


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


def hook_command(python: str | None = None, hook: str | None = None) -> str:
    """The command for settings.json (run by Claude Code through a shell): absolute interpreter and
    hook file, so PATH and any activated virtualenv do not matter; `-I -S` because the hook needs
    only the standard library and starts faster without the site-packages scan."""
    python = shlex.quote(python or sys.executable)
    hook = shlex.quote(hook or str(Path(__file__).resolve().parents[1] / "hook.py"))
    # `trap '' TERM HUP`: Claude Code SIGTERMs a -p session's hooks as it exits (StopFailure fires
    # last), sometimes before Python has started; an ignored signal stays ignored across exec.
    # The tests (shell builtins) make a command whose agentd was removed without `agentd
    # uninstall claude` exit 0 in silence: Claude shows every failing hook's error to the user.
    return (
        f"trap '' TERM HUP; test -x {python} && test -f {hook} && exec {python} -I -S {hook};"
        f" exit 0 {HOOK_MARKER}"
    )


def _is_ours(handler: Any) -> bool:
    return isinstance(handler, dict) and str(handler.get("command", "")).endswith(HOOK_MARKER)


def handlers(settings: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (event, handler) of a settings document, skipping what has the wrong shape."""
    hooks = settings.get("hooks") if isinstance(settings, dict) else None
    for event, groups in hooks.items() if isinstance(hooks, dict) else ():
        for group in groups if isinstance(groups, list) else ():
            inner = group.get("hooks") if isinstance(group, dict) else None
            for handler in inner if isinstance(inner, list) else ():
                if isinstance(handler, dict):
                    yield event, handler


def hooks_problem(settings: dict[str, Any]) -> str | None:
    """Where the `hooks` of a settings document do not have Claude Code's shape (event -> list of
    groups, each an object whose `hooks` is a list of objects); None when they do."""
    if "hooks" not in settings:
        return None
    hooks = settings["hooks"]
    if not isinstance(hooks, dict):
        return '"hooks" is not an object'
    for event, groups in hooks.items():
        where = f"hooks.{event}"
        if not isinstance(groups, list):
            return f"{where} is not a list"
        for i, group in enumerate(groups):
            if not isinstance(group, dict):
                return f"{where}[{i}] is not an object"
            if not isinstance(group.get("hooks"), list):
                return f"{where}[{i}].hooks is not a list"
            for j, handler in enumerate(group["hooks"]):
                if not isinstance(handler, dict):
                    return f"{where}[{i}].hooks[{j}] is not an object"
    return None


def _has_ours(settings: dict[str, Any]) -> bool:
    return any(_is_ours(handler) for _, handler in handlers(settings))


def _parse(path: Path, raw: bytes) -> dict[str, Any]:
    """The settings in `raw`, refused (InstallError, one line) when agentd could not write them
    back as they are, or could not tell its hooks from the user's."""
    if not raw.strip():
        return {}
    try:
        settings = jsonfile.loads(raw)
    except ValueError as e:
        raise InstallError(f"cannot edit {path}: {e}; fix it, then run again") from None
    if not isinstance(settings, dict):
        raise InstallError(f"{path} does not hold a JSON object; fix it, then run again")
    problem = hooks_problem(settings)
    if problem:
        raise InstallError(
            f"cannot edit {path}: {problem} (Claude Code's hooks are event -> list of "
            '{"matcher", "hooks": [...]}); fix it, then run again'
        )
    return settings


def _read_settings(path: Path) -> tuple[bytes | None, dict[str, Any]]:
    """The file's bytes as they are (None: no file) and its settings."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, {}
    except IsADirectoryError:
        raise InstallError(f"{path} is a directory; move it away, then run again") from None
    except OSError as e:
        raise InstallError(f"cannot read {path}: {e.strerror}") from None
    return raw, _parse(path, raw)


def _backup_path(path: Path) -> Path:
    return path.with_name(path.name + BACKUP_SUFFIX)


def install(
    path: Path,
    *,
    dry_run: bool = False,
    command: str | None = None,
    statusline: bool = False,
    force: bool = False,
) -> Plan:
    """Merge agentd's hook into every event of the settings file at `path` (and with
    `statusline`, its statusLine; `force`: over a user's own). Everything is checked before
    anything is written, and the file is written once.

    The file as it was before the first install is kept as `<file>.agentd-backup` (a later
    install, which finds agentd's hooks in the file, leaves that backup alone)."""
    if force and not statusline:
        raise InstallError("--force goes with --statusline")
    command = command or hook_command()
    raw, settings = _read_settings(path)
    users_own = raw is not None and not _has_ours(settings)
    plan = Plan(path)
    replaces_own_statusline = False
    if statusline:  # first: it may refuse, and then nothing is written
        change, replaces_own_statusline = statusline_.plan_set(path, settings, force=force)
        plan.extras += [change] if change else []
    hooks = settings.setdefault("hooks", {})
    for event in EVENTS:
        groups = hooks.setdefault(event, [])
        ours = [h for _, h in handlers({"hooks": {event: groups}}) if _is_ours(h)]
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
    if (plan.changed or plan.extras) and not dry_run:
        data = jsonfile.dumps(settings)
        if users_own and plan.changed:
            assert raw is not None
            plan.backup = _backup_path(path)
            _replace(plan.backup, raw, mode_of=path)
        if replaces_own_statusline:
            assert raw is not None
            plan.notes.append(f"Backup of the previous file: {statusline_.backup_path(path)}")
            _replace(statusline_.backup_path(path), raw, mode_of=path)
        _replace(path, data)
        plan.applied = True
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


def _without_empty_hooks(settings: dict[str, Any]) -> dict[str, Any]:
    """For comparing: event lists and a `hooks` object left empty count as absent."""
    hooks = {e: g for e, g in (settings.get("hooks") or {}).items() if g != []}
    rest = {k: v for k, v in settings.items() if k != "hooks"}
    return {**rest, "hooks": hooks} if hooks else rest


def uninstall(path: Path, *, dry_run: bool = False) -> Plan:
    """Remove exactly the hook entries agentd added, and its statusLine (giving back a user's own
    from its backup); everything else stays as it was.

    When the rest of the file is what the backup holds (nobody changed it since the install),
    the backup's bytes come back as they were (formatting, non-ASCII, an empty `"hooks": {}`);
    otherwise the backup stays, and the plan says so."""
    raw, settings = _read_settings(path)
    plan = Plan(path)
    hooks = settings.get("hooks", {})
    for event in list(hooks):
        groups = hooks[event]
        if _remove_ours(groups):
            plan.changes.append(f"remove {event} hook")
            if not groups:
                del hooks[event]
    sl_backup = statusline_.backup_path(path)
    previous = None
    if raw is not None and statusline_.is_ours(settings.get("statusLine")):
        with contextlib.suppress(InstallError):  # unreadable: agentd's statusLine just goes
            previous = _read_settings(sl_backup)[1] if sl_backup.exists() else None
    change = statusline_.plan_unset(settings, previous)
    plan.extras += [change] if change else []
    if not (plan.changed or plan.extras) or dry_run:
        return plan
    backup = _backup_path(path)
    original_raw, original = None, None
    with contextlib.suppress(InstallError):  # an unreadable backup: write the settings as they are
        original_raw, original = _read_settings(backup)
    if original_raw is not None and _without_empty_hooks(original) == _without_empty_hooks(
        settings
    ):
        _replace(path, original_raw)
        backup.unlink(missing_ok=True)  # the file is the backup again
    else:
        if "hooks" in settings and not settings["hooks"] and "hooks" not in (original or {}):
            del settings["hooks"]
        _replace(path, jsonfile.dumps(settings))
        if original_raw is not None and plan.changed:
            plan.notes.append(
                f"Kept {backup} (the file before the install): yours changed since, so agentd "
                "took out only its own entries; delete the backup when you no longer need it"
            )
    if change:
        sl_backup.unlink(missing_ok=True)
    plan.applied = True
    return plan


def summary(plan: Plan, *, dry_run: bool, installing: bool) -> list[str]:
    """What the CLI prints about a plan: the file, then one line per entry changed."""
    if not plan.changed and not plan.extras:
        done = "agentd's hooks are installed" if installing else "no agentd hooks are present"
        return [f"Nothing to change in {plan.path}: {done} already."]
    verb = "Would change" if dry_run else "Changed"
    what = f"{len(plan.changes)} hook entries" if plan.changed else "the statusLine"
    lines = [f"{verb} {plan.path}: {what}"]
    lines += [f"  {change}" for change in plan.changes + plan.extras]
    if plan.backup:
        lines.append(f"Backup of the previous file: {plan.backup}")
    return lines + plan.notes


# Extra flags of `agentd install claude` (cli/agents.py adds them, and passes them to install):
# name -> help.
INSTALL_FLAGS = {
    "statusline": "Also set Claude Code's statusLine to `agentd statusline` (model, context, "
    "cost, 5-hour quota, failed tools).",
    "force": "With --statusline: replace a statusLine of your own (it is kept in the backup).",
}
