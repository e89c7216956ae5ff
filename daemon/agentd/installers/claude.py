"""Installing agentd into Claude Code: its hook on every hook event, merged into settings.json.

Idempotent (a second run changes nothing), reversible (`uninstall` removes exactly the entries
whose command ends in HOOK_MARKER), backed up (the previous file is kept beside it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import stat
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


def _has_ours(settings: dict[str, Any]) -> bool:
    hooks = settings.get("hooks")
    return any(
        _is_ours(handler)
        for groups in (hooks.values() if isinstance(hooks, dict) else ())
        if isinstance(groups, list)
        for group in groups
        if isinstance(group, dict) and isinstance(group.get("hooks"), list)
        for handler in group["hooks"]
    )


def _parse(path: Path, text: str) -> dict[str, Any]:
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


def _read_settings(path: Path) -> tuple[bytes | None, dict[str, Any]]:
    """The file's bytes as they are (None: no file) and its settings."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, {}
    except OSError as e:
        raise InstallError(f"cannot read {path}: {e.strerror}") from None
    return raw, _parse(path, raw.decode("utf-8", "replace"))


def _backup_path(path: Path) -> Path:
    return path.with_name(path.name + BACKUP_SUFFIX)


def _dump(settings: dict[str, Any]) -> bytes:
    # ensure_ascii=False: the user's own non-ASCII text stays as they wrote it, not \uXXXX.
    return (json.dumps(settings, indent=2, ensure_ascii=False) + "\n").encode()


def _replace(path: Path, data: bytes, mode_of: Path | None = None) -> None:
    """Write `data` as `path` atomically (Claude Code's settings watcher never sees half a file),
    through a symlink (dotfiles setups keep their link), keeping the file's mode (or that of
    `mode_of`); a new file is 0600."""
    real = Path(os.path.realpath(path))
    try:
        mode = stat.S_IMODE(os.stat(mode_of or real).st_mode)
    except FileNotFoundError:
        mode = 0o600
    tmp = real.with_name(f".{real.name}.agentd-{os.getpid()}")
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)  # the umask may have narrowed it
        os.replace(tmp, real)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise InstallError(f"cannot write {real}: {e.strerror}") from None


def install(path: Path, *, dry_run: bool = False, command: str | None = None) -> Plan:
    """Merge agentd's hook into every event of the settings file at `path`.

    The file as it was before the first install is kept as `<file>.agentd-backup` (a later
    install, which finds agentd's hooks in the file, leaves that backup alone)."""
    command = command or hook_command()
    raw, settings = _read_settings(path)
    users_own = raw is not None and not _has_ours(settings)
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
        if users_own:
            assert raw is not None
            plan.backup = _backup_path(path)
            _replace(plan.backup, raw, mode_of=path)
        _replace(path, _dump(settings))
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
    """Remove exactly the hook entries agentd added; everything else stays as it was.

    When the rest of the file is what the backup holds (nobody changed it since the install),
    the backup's bytes come back as they were (formatting, non-ASCII, an empty `"hooks": {}`)."""
    _, settings = _read_settings(path)
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
    if not plan.changed or dry_run:
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
        _replace(path, _dump(settings))
    plan.applied = True
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


# -- statusLine (`agentd install claude --statusline`, docs/usage.md) ---------------------------

STATUSLINE_MARKER = "# agentd-statusline"
# Extra flags of `agentd install claude` (cli/agents.py adds them): name -> help.
INSTALL_FLAGS = {
    "statusline": "Also set Claude Code's statusLine to `agentd statusline` (model, context, "
    "cost, 5-hour quota, failed tools).",
    "force": "With --statusline: replace a statusLine of your own (it is kept in the backup).",
}


def statusline_command(python: str | None = None, script: str | None = None) -> str:
    """As hook_command(): absolute interpreter and file, `-I -S`, silent if agentd is gone."""
    python = shlex.quote(python or sys.executable)
    script = shlex.quote(script or str(Path(__file__).resolve().parents[1] / "statusline.py"))
    return (
        f"test -x {python} && test -f {script} && exec {python} -I -S {script};"
        f" exit 0 {STATUSLINE_MARKER}"
    )


def _statusline_is_ours(value: Any) -> bool:
    return isinstance(value, dict) and str(value.get("command", "")).endswith(STATUSLINE_MARKER)


def install_extras(path: Path, flags: dict[str, bool], *, dry_run: bool = False) -> Plan:
    """`--statusline`: set `statusLine` in the settings file; a user's own one only with --force."""
    plan = Plan(path)
    if not flags.get("statusline"):
        if flags.get("force"):
            raise InstallError("--force goes with --statusline")
        return plan
    raw, settings = _read_settings(path)
    current = settings.get("statusLine")
    wanted = {"type": "command", "command": statusline_command(), "padding": 0}
    if current == wanted:
        return plan
    if current is not None and not _statusline_is_ours(current) and not flags.get("force"):
        raise InstallError(
            f"{path} already has a statusLine of your own ({json.dumps(current)}); "
            "agentd leaves it alone. Add --force to replace it (the file is backed up first)."
        )
    settings["statusLine"] = wanted
    plan.changes.append("update statusLine" if current is not None else "add statusLine")
    if not dry_run:
        if current is not None and not _statusline_is_ours(current):  # only a user's own
            plan.backup = path.with_name(path.name + ".agentd-statusline-backup")
            _replace(plan.backup, raw, mode_of=path)
        _replace(path, _dump(settings))
        plan.applied = True
    return plan


def uninstall_extras(path: Path, *, dry_run: bool = False) -> Plan:
    """Remove agentd's statusLine (only agentd's), restoring the user's from its backup."""
    plan = Plan(path)
    raw, settings = _read_settings(path)
    if raw is None or not _statusline_is_ours(settings.get("statusLine")):
        return plan
    backup = path.with_name(path.name + ".agentd-statusline-backup")
    previous = None
    with contextlib.suppress(InstallError):
        previous = _read_settings(backup)[1].get("statusLine") if backup.exists() else None
    if previous is not None and not _statusline_is_ours(previous):
        settings["statusLine"] = previous
        plan.changes.append("restore your statusLine")
    else:
        del settings["statusLine"]
        plan.changes.append("remove statusLine")
    if not dry_run:
        _replace(path, _dump(settings))
        backup.unlink(missing_ok=True)
        plan.applied = True
    return plan
