"""`agentd doctor`'s Claude Code checks: hooks installed and not switched off, a test event end to
end, sessions that write transcripts but send no hook events, transcript retention, transcripts
imported or followed."""

from __future__ import annotations

import json
import os
import shlex
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

from agentd.config import Config
from agentd.db import readonly
from agentd.doctor import Check, read_json, read_text, spool_files
from agentd.installers import claude as installer

__all__ = [
    "checks",
    "installed_capture",
    "STARTS_DAEMON",
    "check_claude_hooks",
    "check_hooks_enabled",
    "check_end_to_end",
    "check_silent_sessions",
    "check_retention",
    "check_imports",
]

STARTS_DAEMON = True  # the hook starts the daemon at the next event (autostart)
RETENTION_DEFAULT_DAYS = 30  # Claude Code's cleanupPeriodDays when unset
E2E_TIMEOUT_S = 5.0
SILENT_WINDOW_MS = 7 * 86_400_000  # transcripts written this recently are compared with the hooks
SILENT_GRACE_MS = 120_000  # a transcript may run ahead of the last hook event by this much


def checks(
    config: Config, env: dict[str, str], cwd: Path, *, running: bool, unreadable: str | None = None
) -> list[Check]:
    """`unreadable`: why agentd's tables cannot be read (doctor's database check), or None."""
    return [
        check_end_to_end(config, env, cwd, running=running),
        check_claude_hooks(env, cwd),
        check_hooks_enabled(env, cwd),
        check_silent_sessions(config, env, unreadable),
        check_retention(env, cwd),
        check_imports(config, env),
    ]


def installed_capture(env: dict[str, str], cwd: Path) -> str | None:
    """ "the Claude Code hook" when agentd's hook is in a settings file or agentd's plugin is
    installed: either starts the daemon at the next event (autostart)."""
    if _installed_hook_command(env, cwd) or _claude_plugin_dirs(env):
        return "the Claude Code hook"
    return None


def _installed_hook_command(env: dict[str, str], cwd: Path) -> str | None:
    for _, path in installer.settings_files(env, cwd):
        for _, handler in installer.handlers(read_json(path)):
            command = handler.get("command")
            if isinstance(command, str) and command.endswith(installer.HOOK_MARKER):
                return command
    return None


def check_claude_hooks(env: dict[str, str], cwd: Path) -> Check:
    found = []
    malformed = ""  # the first settings file whose hooks Claude Code cannot read as hooks
    for scope, path in installer.settings_files(env, cwd):
        settings = read_json(path)
        if settings is None:
            continue
        problem = installer.hooks_problem(settings)
        if problem and not malformed:
            malformed = f"{path} ({scope}): {problem}"
        events, commands = set(), set()
        for event, handler in installer.handlers(settings):
            command = handler.get("command")
            if isinstance(command, str) and command.endswith(installer.HOOK_MARKER):
                events.add(event)
                commands.add(command)
        if events:
            found.append((scope, path, events, commands))
    check = _hooks_check(env, found)
    if malformed and check.status == "ok":
        return Check(
            "claude hooks",
            "warn",
            f"{check.detail}; but in {malformed}",
            'fix that file\'s hooks (event -> list of {"matcher", "hooks": [...]})',
        )
    if malformed and check.status == "warn":
        check.detail += f"; and in {malformed}"
    return check


def _hooks_check(env: dict[str, str], found: list[tuple[str, Path, set[str], set[str]]]) -> Check:
    plugin = _claude_plugin_dirs(env)
    if not found:
        if plugin:
            return Check("claude hooks", "ok", f"agentd's Claude Code plugin is at {plugin[0]}")
        return Check(
            "claude hooks",
            "warn",
            "not installed: Claude Code sessions are not captured live",
            "agentd install claude",
        )
    scope, path, events, commands = max(found, key=lambda f: len(f[2]))
    missing = [e for e in installer.EVENTS if e not in events]
    detail = (
        f"{len(installer.EVENTS) - len(missing)}/{len(installer.EVENTS)} events in {path} ({scope})"
    )
    broken = [c for c in commands if not _command_runs(c)]
    if broken:
        return Check(
            "claude hooks",
            "fail",
            f"{detail}; the hook command names a file that is gone: {broken[0]}",
            "agentd install claude (rewrites the command for this installation)",
        )
    if missing:
        return Check(
            "claude hooks",
            "warn",
            f"{detail}; missing: {', '.join(missing[:5])}{'...' if len(missing) > 5 else ''}",
            "agentd install claude",
        )
    if commands != {installer.hook_command()}:
        return Check(
            "claude hooks",
            "warn",
            f"{detail}; installed by another agentd (another Python or checkout)",
            "agentd install claude (to use this one)",
        )
    return Check("claude hooks", "ok", detail)


def _command_runs(command: str) -> bool:
    """The interpreter and the hook file the command names both exist."""
    try:
        words = shlex.split(command.split("exec ", 1)[-1], comments=True)
    except ValueError:
        return False
    paths = [w.rstrip(";") for w in words if w.startswith("/")]
    return bool(paths) and all(Path(p).exists() for p in paths)


def _claude_plugin_dirs(env: dict[str, str]) -> list[Path]:
    """agentd installed as a Claude Code plugin (its hooks/agentd-hook launcher in a plugin dir)."""
    root = installer.config_dir(env) / "plugins"
    if not root.is_dir():
        return []
    found = []
    for directory, subdirs, names in os.walk(root):
        depth = len(Path(directory).relative_to(root).parts)
        if depth >= 6:
            subdirs.clear()
        if "agentd-hook" in names and Path(directory).name == "hooks":
            found.append(Path(directory).parent)
    return found


def check_end_to_end(config: Config, env: dict[str, str], cwd: Path, *, running: bool) -> Check:
    """A test event through the installed hook command, into the database, read back."""
    if not running:
        return Check("end to end", "skip", "the daemon is not running")
    command = _installed_hook_command(env, cwd) or installer.hook_command()
    nonce = uuid.uuid4().hex
    payload = json.dumps({"hook_event_name": "AgentdDoctor", "doctor_id": nonce})
    hook_env = dict(env, AGENTD_AUTOSTART="0")  # the check must not start a daemon
    started = time.monotonic()
    try:
        subprocess.run(
            ["/bin/sh", "-c", command],
            input=payload.encode(),
            env=hook_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return Check(
            "end to end", "fail", f"the hook command did not run: {e}", "agentd install claude"
        )
    deadline = started + E2E_TIMEOUT_S
    while time.monotonic() < deadline:
        if _event_stored(config.db_path, nonce):
            ms = (time.monotonic() - started) * 1000
            return Check(
                "end to end", "ok", f"a test event went hook -> daemon -> database in {ms:.0f} ms"
            )
        time.sleep(0.05)
    spooled = any(nonce in read_text(p) for p in spool_files(config))
    if spooled:
        return Check(
            "end to end",
            "fail",
            "the hook could not deliver the test event to the daemon; it is in the spool",
            f"see {config.log_path}; check that AGENTD_HOME / AGENTD_SOCKET match for the agents",
        )
    return Check(
        "end to end",
        "fail",
        f"the test event did not reach {config.db_path} within {E2E_TIMEOUT_S:.0f} s",
        f"see {config.log_path}",
    )


def _event_stored(db: Path, nonce: str) -> bool:
    try:
        conn = readonly.connect(db)
        try:
            row = conn.execute(
                "SELECT 1 FROM events WHERE kind = 'AgentdDoctor' AND instr(payload, ?) LIMIT 1",
                (nonce,),
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return row is not None


def check_hooks_enabled(env: dict[str, str], cwd: Path) -> Check:
    """Installed hooks that Claude Code does not run: `disableAllHooks` in any settings file (it
    turns every non-managed hook off), or managed settings allowing managed hooks only."""
    files = installer.settings_files(env, cwd)
    for scope, path in files:  # highest precedence first: the first file that says decides
        setting = (read_json(path) or {}).get("disableAllHooks")
        if setting is False:
            break  # a more specific file turns hooks back on (local over project over user)
        if setting is True:
            return Check(
                "claude hooks enabled",
                "fail",
                f"disableAllHooks is true in {path} ({scope}): Claude Code runs no hook, "
                "so nothing is captured live",
                f"remove disableAllHooks from {path}"
                if scope != "managed"
                else "ask whoever manages this machine's Claude Code settings",
            )
    managed = read_json(installer.MANAGED_SETTINGS) or {}
    if managed.get("allowManagedHooksOnly") is True:
        ours = any(
            str(h.get("command", "")).endswith(installer.HOOK_MARKER)
            for _, h in installer.handlers(managed)
        )
        if not ours:
            return Check(
                "claude hooks enabled",
                "fail",
                f"allowManagedHooksOnly is true in {installer.MANAGED_SETTINGS}: Claude Code "
                "ignores the hooks in user and project settings, agentd's included",
                "add agentd's hook to the managed settings, or run agentd import claude",
            )
    return Check("claude hooks enabled", "ok", "no settings file turns hooks off")


def _last_hook_events(db: Path) -> dict[str, int] | None:
    """Each Claude session's newest hook event time; None if the database cannot be read."""
    try:
        conn = readonly.connect(db)
        try:
            return dict(
                conn.execute(
                    "SELECT session_id, max(received_at) FROM events"
                    " WHERE source = 'claude' AND session_id IS NOT NULL GROUP BY session_id"
                ).fetchall()
            )
        finally:
            conn.close()
    except sqlite3.Error:
        return None


def check_silent_sessions(
    config: Config, env: dict[str, str], unreadable: str | None = None
) -> Check:
    """Sessions whose transcripts grew while no hook event arrived: Claude ran without our hooks
    (another settings scope, --bare, a managed policy...), whatever the settings files say."""
    from agentd.importers.claude import default_root

    root = default_root(env)
    if not root.is_dir() or not config.db_path.exists():
        return Check("claude sessions heard", "skip", "no transcripts or no database yet")
    if unreadable:
        return Check("claude sessions heard", "skip", f"not checked: {unreadable}")
    heard = _last_hook_events(config.db_path)
    if heard is None:
        return Check("claude sessions heard", "skip", f"cannot read {config.db_path}")
    since = time.time() * 1000 - SILENT_WINDOW_MS
    recent = silent = 0
    example = ""
    for project in sorted(p for p in root.iterdir() if p.is_dir()):
        for transcript in project.glob("*.jsonl"):
            try:
                written = transcript.stat().st_mtime * 1000
            except OSError:
                continue
            if written < since:
                continue
            recent += 1
            last = heard.get(transcript.stem)
            if last is None or written > last + SILENT_GRACE_MS:
                silent += 1
                example = example or str(transcript)
    if silent:
        return Check(
            "claude sessions heard",
            "warn",
            f"{silent} of {recent} sessions of the last 7 days wrote transcripts while no hook "
            f"event arrived (e.g. {example}): Claude Code ran without agentd's hooks",
            "check the hooks (agentd install claude; no disableAllHooks, no --bare), then "
            "agentd import claude for what was missed",
        )
    return Check(
        "claude sessions heard",
        "ok",
        f"every session of the last 7 days ({recent}) sent hook events",
    )


def check_retention(env: dict[str, str], cwd: Path) -> Check:
    """Claude Code deletes transcripts older than cleanupPeriodDays (default 30) at start-up."""
    for scope, path in installer.settings_files(env, cwd):
        settings = read_json(path)
        if settings is None or "cleanupPeriodDays" not in settings:
            continue
        days = settings["cleanupPeriodDays"]
        where = f"cleanupPeriodDays is {days} in {path} ({scope})"
        break
    else:
        days = RETENTION_DEFAULT_DAYS
        where = f"cleanupPeriodDays is not set (Claude Code's default: {days} days)"
    if (
        isinstance(days, int | float)
        and not isinstance(days, bool)
        and days > RETENTION_DEFAULT_DAYS
    ):
        return Check("claude retention", "ok", f"{where}; transcripts are kept {days} days")
    return Check(
        "claude retention",
        "warn",
        f"{where}: Claude Code deletes older transcripts, and what the hooks missed goes with them",
        'set "cleanupPeriodDays": 365 in ~/.claude/settings.json, and run agentd import claude '
        "regularly (it reads only what is new)",
    )


def check_imports(config: Config, env: dict[str, str]) -> Check:
    from agentd.importers.claude import default_root, transcript_files
    from agentd.importers.state import FOLLOW_FILE, ImportState, best_entry

    root = default_root(env)
    if not root.is_dir():
        return Check("imports", "ok", f"no Claude Code transcripts at {root}")
    imported = ImportState.load(config.state_dir).entries("claude")
    followed = ImportState.load(config.state_dir, FOLLOW_FILE).entries("claude")
    files = list(transcript_files(root))
    behind = [
        path
        for path, st in files
        if (best_entry(st, imported.get(path), followed.get(path)) or {}).get("size") != st.st_size
    ]
    detail = (
        f"{len(files) - len(behind)}/{len(files)} transcripts under {root} imported "
        "or followed live"
    )
    if behind:
        return Check(
            "imports", "warn", f"{detail}, {len(behind)} new or grown", "agentd import claude"
        )
    return Check("imports", "ok", detail)
