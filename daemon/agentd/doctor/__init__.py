"""`agentd doctor`: is capture installed and working, and will the history last? (docs/import.md)

Each check returns a Check: `ok`, `warn` (works, but something will be lost or is off), `fail`
(nothing is captured until it is fixed) or `skip` (could not be checked), with what to do.
Nothing here changes anything, except the end-to-end check, which stores one raw event of kind
`AgentdDoctor` (no session, no typed row) through the installed hook.
"""

from __future__ import annotations

import json
import os
import shlex
import sqlite3
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentd import __version__
from agentd.client import NotRunning, RemoteError, call
from agentd.config import Config
from agentd.db import readonly

__all__ = ["Check", "run_checks", "RETENTION_DEFAULT_DAYS"]

RETENTION_DEFAULT_DAYS = 30  # Claude Code's cleanupPeriodDays when unset
E2E_TIMEOUT_S = 5.0
MANAGED_SETTINGS = Path("/etc/claude-code/managed-settings.json")


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail | skip
    detail: str
    hint: str = ""

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "hint": self.hint}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _home(env: dict[str, str]) -> Path:
    return Path(env.get("HOME") or Path.home())


def claude_settings_files(env: dict[str, str], cwd: Path) -> list[tuple[str, Path]]:
    """Claude Code's settings files, highest precedence first (formats.md A1)."""
    config_dir = env.get("CLAUDE_CONFIG_DIR")
    user = Path(config_dir).expanduser() if config_dir else _home(env) / ".claude"
    return [
        ("managed", MANAGED_SETTINGS),
        ("local", cwd / ".claude" / "settings.local.json"),
        ("project", cwd / ".claude" / "settings.json"),
        ("user", user / "settings.json"),
    ]


# -- checks ---------------------------------------------------------------------------------------


def check_database(config: Config) -> Check:
    from agentd.db.migrations import MIGRATIONS

    db = config.db_path
    if not db.exists():
        return Check(
            "database", "warn", f"{db} does not exist yet", "it is created when the daemon starts"
        )
    try:
        conn = readonly.connect(db)
        try:
            versions = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as e:
        return Check("database", "fail", f"{db}: {e}", "check the file, or move it away")
    latest = max(m.version for m in MIGRATIONS)
    size = sum(p.stat().st_size for p in (db, db.with_name(db.name + "-wal")) if p.exists())
    detail = f"{db} ({size / 1e6:.1f} MB, {events} events, schema {max(versions, default=0)})"
    if max(versions, default=0) < latest:
        return Check(
            "database",
            "warn",
            detail,
            f"schema {latest} is current: restarting the daemon upgrades it",
        )
    return Check("database", "ok", detail)


def check_daemon(config: Config) -> tuple[Check, dict[str, Any] | None]:
    try:
        ping: dict[str, Any] = call(config.socket_path, "ping", timeout=2.0)
    except (NotRunning, RemoteError, OSError, TimeoutError) as e:
        hint = (
            "the hook starts it at the next event (autostart); or run: agentd start"
            if config.autostart
            else "autostart is off: run agentd start (or a service that does)"
        )
        status = "warn" if config.autostart else "fail"
        return Check("daemon", status, f"not reachable at {config.socket_path} ({e})", hint), None
    detail = f"running, pid {ping.get('pid')}, agentd {ping.get('version')}, {config.socket_path}"
    if ping.get("version") != __version__:
        return (
            Check(
                "daemon",
                "warn",
                detail,
                f"this is agentd {__version__}: agentd stop && agentd start",
            ),
            ping,
        )
    return Check("daemon", "ok", detail), ping


def _installed_hook_command(env: dict[str, str], cwd: Path) -> str | None:
    from agentd.installers import HOOK_MARKER

    for _, path in claude_settings_files(env, cwd):
        settings = _read_json(path) or {}
        hooks = settings.get("hooks")
        for groups in hooks.values() if isinstance(hooks, dict) else ():
            for group in groups if isinstance(groups, list) else ():
                for handler in group.get("hooks", []) if isinstance(group, dict) else ():
                    command = handler.get("command") if isinstance(handler, dict) else None
                    if isinstance(command, str) and command.endswith(HOOK_MARKER):
                        return command
    return None


def check_claude_hooks(env: dict[str, str], cwd: Path) -> Check:
    from agentd.installers import CLAUDE_EVENTS, HOOK_MARKER, claude_hook_command

    found = []
    for scope, path in claude_settings_files(env, cwd):
        settings = _read_json(path)
        hooks = (settings or {}).get("hooks")
        if not isinstance(hooks, dict):
            continue
        events, commands = set(), set()
        for event, groups in hooks.items():
            for group in groups if isinstance(groups, list) else ():
                for handler in group.get("hooks", []) if isinstance(group, dict) else ():
                    command = handler.get("command") if isinstance(handler, dict) else None
                    if isinstance(command, str) and command.endswith(HOOK_MARKER):
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
    missing = [e for e in CLAUDE_EVENTS if e not in events]
    detail = f"{len(CLAUDE_EVENTS) - len(missing)}/{len(CLAUDE_EVENTS)} events in {path} ({scope})"
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
    if commands != {claude_hook_command()}:
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
    paths = [w for w in words if w.startswith("/")]
    return bool(paths) and all(Path(p).exists() for p in paths)


def _claude_plugin_dirs(env: dict[str, str]) -> list[Path]:
    """agentd installed as a Claude Code plugin (its hooks/agentd-hook launcher in a plugin dir)."""
    config_dir = env.get("CLAUDE_CONFIG_DIR")
    root = (Path(config_dir).expanduser() if config_dir else _home(env) / ".claude") / "plugins"
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


def check_opencode_plugin(env: dict[str, str], cwd: Path) -> Check:
    from agentd.installers import (
        OPENCODE_PLUGIN_MARKER,
        InstallError,
        opencode_plugin_path,
        opencode_plugin_source,
    )

    try:
        current = opencode_plugin_source()
    except InstallError:
        current = None
    for scope in ("project", "user"):
        path = opencode_plugin_path(scope, cwd if scope == "project" else None, env)
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if not text.startswith(OPENCODE_PLUGIN_MARKER):
            return Check(
                "opencode plugin",
                "warn",
                f"{path} is not agentd's plugin",
                "move it away, then: agentd install opencode",
            )
        if current is not None and text != current:
            return Check(
                "opencode plugin",
                "warn",
                f"{path} ({scope}) is an older version",
                f"agentd install opencode{' --scope project' if scope == 'project' else ''}",
            )
        return Check("opencode plugin", "ok", f"{path} ({scope}), up to date")
    return Check(
        "opencode plugin",
        "warn",
        "not installed: OpenCode sessions are not captured live",
        "agentd install opencode",
    )


def check_end_to_end(config: Config, env: dict[str, str], cwd: Path, running: bool) -> Check:
    """A test event through the installed hook command, into the database, read back."""
    if not running:
        return Check("end to end", "skip", "the daemon is not running")
    from agentd.installers import claude_hook_command

    command = _installed_hook_command(env, cwd) or claude_hook_command()
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
    spooled = any(nonce in _read_text(p) for p in _spool_files(config))
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


def _spool_files(config: Config) -> list[Path]:
    try:
        return [p for p in config.spool_dir.iterdir() if p.is_file()]
    except OSError:
        return []


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def check_retention(env: dict[str, str], cwd: Path) -> Check:
    """Claude Code deletes transcripts older than cleanupPeriodDays (default 30) at start-up."""
    for scope, path in claude_settings_files(env, cwd):
        settings = _read_json(path)
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


def check_spool(config: Config, running: bool) -> Check:
    files = [p for p in _spool_files(config) if p.name.endswith((".ndjson", ".open"))]
    if not files:
        return Check("spool", "ok", "empty")
    size = sum(p.stat().st_size for p in files if p.exists())
    detail = f"{len(files)} files ({size / 1e3:.1f} KB) waiting in {config.spool_dir}"
    if running:
        return Check(
            "spool", "warn", detail, "the daemon drains it every second; if it stays, see the log"
        )
    return Check("spool", "warn", detail, "they are stored when the daemon starts: agentd start")


def check_imports(config: Config, env: dict[str, str]) -> Check:
    from agentd.importers.claude import default_root, transcript_files
    from agentd.importers.state import ImportState

    root = default_root(env)
    if not root.is_dir():
        return Check("imports", "ok", f"no Claude Code transcripts at {root}")
    state = ImportState.load(config.state_dir)
    files = list(transcript_files(root))
    behind = [
        path for path, st in files if (state.claude.get(path) or {}).get("size") != st.st_size
    ]
    detail = f"{len(files) - len(behind)}/{len(files)} transcripts under {root} imported"
    if behind:
        return Check(
            "imports", "warn", f"{detail}, {len(behind)} new or grown", "agentd import claude"
        )
    return Check("imports", "ok", detail)


def run_checks(
    config: Config, env: dict[str, str] | None = None, cwd: Path | None = None
) -> list[Check]:
    env = dict(os.environ) if env is None else env
    cwd = cwd or Path.cwd()
    daemon, ping = check_daemon(config)
    return [
        check_database(config),
        daemon,
        check_end_to_end(config, env, cwd, running=ping is not None),
        check_claude_hooks(env, cwd),
        check_opencode_plugin(env, cwd),
        check_retention(env, cwd),
        check_spool(config, running=ping is not None),
        check_imports(config, env),
    ]
