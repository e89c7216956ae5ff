"""`agentd doctor`'s Claude Code checks: hooks installed, a test event end to end, transcript
retention, transcripts imported."""

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

__all__ = ["checks", "check_claude_hooks", "check_end_to_end", "check_retention", "check_imports"]

RETENTION_DEFAULT_DAYS = 30  # Claude Code's cleanupPeriodDays when unset
E2E_TIMEOUT_S = 5.0


def checks(config: Config, env: dict[str, str], cwd: Path, *, running: bool) -> list[Check]:
    return [
        check_end_to_end(config, env, cwd, running=running),
        check_claude_hooks(env, cwd),
        check_retention(env, cwd),
        check_imports(config, env),
    ]


def _installed_hook_command(env: dict[str, str], cwd: Path) -> str | None:
    for _, path in installer.settings_files(env, cwd):
        settings = read_json(path) or {}
        hooks = settings.get("hooks")
        for groups in hooks.values() if isinstance(hooks, dict) else ():
            for group in groups if isinstance(groups, list) else ():
                for handler in group.get("hooks", []) if isinstance(group, dict) else ():
                    command = handler.get("command") if isinstance(handler, dict) else None
                    if isinstance(command, str) and command.endswith(installer.HOOK_MARKER):
                        return command
    return None


def check_claude_hooks(env: dict[str, str], cwd: Path) -> Check:
    found = []
    for scope, path in installer.settings_files(env, cwd):
        settings = read_json(path)
        hooks = (settings or {}).get("hooks")
        if not isinstance(hooks, dict):
            continue
        events, commands = set(), set()
        for event, groups in hooks.items():
            for group in groups if isinstance(groups, list) else ():
                for handler in group.get("hooks", []) if isinstance(group, dict) else ():
                    command = handler.get("command") if isinstance(handler, dict) else None
                    if isinstance(command, str) and command.endswith(installer.HOOK_MARKER):
                        events.add(event)
                        commands.add(command)
        if events:
            found.append((scope, path, events, commands))
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
    from agentd.importers.state import ImportState

    root = default_root(env)
    if not root.is_dir():
        return Check("imports", "ok", f"no Claude Code transcripts at {root}")
    state = ImportState.load(config.state_dir)
    files = list(transcript_files(root))
    behind = [
        path
        for path, st in files
        if (state.entries("claude").get(path) or {}).get("size") != st.st_size
    ]
    detail = f"{len(files) - len(behind)}/{len(files)} transcripts under {root} imported"
    if behind:
        return Check(
            "imports", "warn", f"{detail}, {len(behind)} new or grown", "agentd import claude"
        )
    return Check("imports", "ok", detail)
