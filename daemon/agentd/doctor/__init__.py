"""`agentd doctor`: is capture installed and working, and will the history last? (docs/import.md)

Each check returns a Check: `ok`, `warn` (works, but something will be lost or is off), `fail`
(nothing is captured until it is fixed) or `skip` (could not be checked), with what to do. The
checks of the daemon and the database are here; each agent's own are in `doctor/<agent>.py`,
found through agents.py. Nothing here changes anything, except Claude's end-to-end check, which
stores one raw event of kind `AgentdDoctor` (no session, no typed row) through the installed hook.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentd import __version__
from agentd.agents import AGENTS
from agentd.client import NotRunning, RemoteError, call
from agentd.config import Config
from agentd.db import readonly
from agentd.errors import DatabaseUnusable
from agentd.output import human_bytes

__all__ = ["Check", "run_checks", "read_json", "spool_files", "read_text"]


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail | skip
    detail: str
    hint: str = ""

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "hint": self.hint}


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):  # unreadable, not JSON, nested too deeply
        return None
    return data if isinstance(data, dict) else None


# -- checks ---------------------------------------------------------------------------------------


def check_database(config: Config) -> Check:
    return _database(config)[0]


def _database(config: Config) -> tuple[Check, str | None]:
    """The database check, and why the checks that read agentd's tables cannot (None: they can).

    The file is judged as the daemon judges it at start (db/preflight.py): a file it would refuse
    (damaged, another program's, a newer schema) fails here in the same words."""
    from agentd.db import preflight
    from agentd.db.migrations import MIGRATIONS

    db = config.db_path
    if not db.exists():
        check = Check(
            "database", "warn", f"{db} does not exist yet", "it is created when the daemon starts"
        )
        return check, "no database yet"
    known = {m.version for m in MIGRATIONS}
    try:
        preflight.check_file(db)
        conn = readonly.connect(db)
        try:
            preflight.check_schema(conn, db, known)
            if not _has_table(conn, "schema_migrations"):  # what check_schema lets through
                check = Check(
                    "database",
                    "warn",
                    f"{db} is empty",
                    "its tables are created when the daemon starts",
                )
                return check, "the database has no tables yet"
            versions = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        finally:
            conn.close()
    except DatabaseUnusable as e:  # the daemon, prune, vacuum and import refuse it so
        check = Check("database", "fail", str(e))
        return check, "this agentd cannot use the database (see the database check)"
    except sqlite3.Error as e:
        check = Check("database", "fail", f"{db}: {e}", "check the file, or move it away")
        return check, "the database cannot be read (see the database check)"
    latest = max(known)
    size = sum(p.stat().st_size for p in (db, db.with_name(db.name + "-wal")) if p.exists())
    detail = f"{db} ({human_bytes(size)}, {events} events, schema {max(versions, default=0)})"
    if max(versions, default=0) < latest:
        hint = f"schema {latest} is current: restarting the daemon upgrades it"
        return Check("database", "warn", detail, hint), None
    return Check("database", "ok", detail), None


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return row.fetchone() is not None


def check_daemon(
    config: Config, starters: list[str] | None = None, waiting: list[str] | None = None
) -> tuple[Check, dict[str, Any] | None]:
    """Is the daemon up? Down, it is a problem unless an installed capture starts it (`starters`:
    Claude's hook, with autostart on); `waiting` names the installed captures that only spool
    while it is down (OpenCode's plugin). None: assume a hook is installed."""
    try:
        ping: dict[str, Any] = call(config.socket_path, "ping", timeout=2.0)
    except (NotRunning, RemoteError, OSError, TimeoutError) as e:
        detail = f"not reachable at {config.socket_path} ({e}); {_backlog(config)}"
        start = "run agentd start (or a supervisor running agentd start --foreground)"
        if not config.autostart:
            return Check("daemon", "fail", detail, f"autostart is off: {start}"), None
        if starters is None or starters:
            who = " and ".join(starters or ["the hook"])
            hint = f"{who} starts it at the next event (autostart); or run: agentd start"
            return Check("daemon", "warn", detail, hint), None
        if waiting:  # captured, but nothing will ever store it
            who = " and ".join(waiting)
            hint = f"{who} does not start the daemon and no Claude Code hook is installed: {start}"
            return Check("daemon", "fail", detail, hint), None
        return Check("daemon", "warn", detail, f"no installed capture starts it: {start}"), None
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


def spool_files(config: Config) -> list[Path]:
    try:
        return [p for p in config.spool_dir.iterdir() if p.is_file()]
    except OSError:
        return []


def read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _spooled(config: Config) -> tuple[list[Path], int]:
    files = [p for p in spool_files(config) if p.name.endswith((".ndjson", ".open"))]
    size = 0
    for p in files:
        with contextlib.suppress(OSError):  # drained meanwhile
            size += p.stat().st_size
    return files, size


def _backlog(config: Config) -> str:
    files, size = _spooled(config)
    if not files:
        return "the spool is empty"
    return f"the spool holds {len(files)} files ({human_bytes(size)}) it has not stored"


def check_spool(config: Config, running: bool) -> Check:
    files, size = _spooled(config)
    if not files:
        return Check("spool", "ok", "empty")
    detail = f"{len(files)} files ({human_bytes(size)}) waiting in {config.spool_dir}"
    if running:
        return Check(
            "spool", "warn", detail, "the daemon drains it every second; if it stays, see the log"
        )
    return Check("spool", "warn", detail, "they are stored when the daemon starts: agentd start")


def check_costs(config: Config, unreadable: str | None = None) -> Check:
    """Messages with tokens that no price was put on: stored before agentd priced messages
    (migration 0011 left them without `cost_source`). The reports count them as $0 until
    `agentd reprice` prices them (docs/usage.md). `unreadable`: why the tables cannot be read."""
    db = config.db_path
    if not db.exists():
        return Check("costs", "skip", "no database yet")
    if unreadable:
        return Check("costs", "skip", f"not checked: {unreadable}")
    from agentd.pricing.table import TOKEN_COLUMNS  # what pricing reads (no genai-prices load)

    tokens = " OR ".join(f"{column} > 0" for column in TOKEN_COLUMNS)
    try:
        conn = readonly.connect(db)
        try:
            unpriced = conn.execute(
                f"SELECT count(*) FROM messages WHERE cost_source IS NULL AND ({tokens})"
            ).fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as e:  # the database check says what is wrong with the file
        return Check("costs", "skip", f"cannot read the messages: {e}")
    if unpriced:
        return Check(
            "costs",
            "warn",
            f"{unpriced} messages stored before agentd priced them count as $0 in the reports",
            "agentd reprice",
        )
    return Check("costs", "ok", "every message with tokens has a cost, or is counted unknown")


def run_checks(
    config: Config, env: dict[str, str] | None = None, cwd: Path | None = None
) -> list[Check]:
    """The database and daemon checks, then every agent's own (agents.py), then the spool."""
    env = dict(os.environ) if env is None else env
    cwd = cwd or Path.cwd()
    starters: list[str] = []
    waiting: list[str] = []
    for agent in AGENTS.values():
        doctor = agent.role("doctor")
        capture = doctor.installed_capture(env, cwd)
        if capture:
            (starters if doctor.STARTS_DAEMON else waiting).append(capture)
    daemon, ping = check_daemon(config, starters, waiting)
    database, unreadable = _database(config)
    checks = [database, check_costs(config, unreadable), daemon]
    for agent in AGENTS.values():
        checks += agent.role("doctor").checks(
            config, env, cwd, running=ping is not None, unreadable=unreadable
        )
    checks.append(check_spool(config, running=ping is not None))
    return checks
