"""The `agentd` command: a thin click layer over config, server and client.

Exit codes: 0 success; 1 error; 2 usage error (click); 3 the daemon is not running (`status`) or
failed to start (`start`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from agentd import __version__
from agentd.client import NotRunning, RemoteError, call
from agentd.config import Config, ConfigError

EXIT_NOT_RUNNING = 3
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 15.0


def _config(ctx: click.Context) -> Config:
    return ctx.find_object(Config)  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agentd")
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(path_type=Path),
    help="Socket path (default: $AGENTD_SOCKET, $AGENTD_HOME/agentd.sock, ...).",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(path_type=Path),
    help="Database path (default: $AGENTD_DB, $AGENTD_HOME/agentd.db, ...).",
)
@click.pass_context
def cli(ctx: click.Context, socket_path: Path | None, db_path: Path | None) -> None:
    """agentd: local, lossless telemetry for AI coding agents.

    It captures what Claude Code and OpenCode do (tools, files, errors, compactions, cost) into
    one SQLite database.

    \b
    Example:
      agentd start && agentd status
    """
    try:
        ctx.obj = Config.load(socket_path=socket_path, db_path=db_path)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None


def _ping(config: Config) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = call(config.socket_path, "ping", timeout=2.0)
        return result
    except (NotRunning, TimeoutError, ConnectionError, OSError, RemoteError):
        return None


def _setup_logging(config: Config, to_stderr: bool) -> None:
    config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    handlers: list[logging.Handler] = [logging.FileHandler(config.log_path)]
    if to_stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


@cli.command()
@click.option(
    "--foreground",
    is_flag=True,
    help="Run in this process (for systemd and other supervisors) instead of detaching.",
)
# Set by a detached start for its child, whose stderr already goes to the log file.
@click.option("--log-to-stderr/--no-log-to-stderr", default=True, hidden=True)
@click.pass_context
def start(ctx: click.Context, foreground: bool, log_to_stderr: bool) -> None:
    """Start the daemon (detached unless --foreground).

    Starting when a daemon already runs says so and exits 0.

    \b
    Example:
      agentd start
      agentd start --foreground   # under systemd, logs also on stderr
    """
    config = _config(ctx)
    running = _ping(config)
    if running:
        click.echo(f"agentd is already running (pid {running['pid']}, socket {config.socket_path})")
        return
    if foreground:
        _run_foreground(config, log_to_stderr)
        return
    _spawn_detached(config)


def _run_foreground(config: Config, log_to_stderr: bool) -> None:
    from agentd.server import AlreadyRunning, StartupError, run

    _setup_logging(config, to_stderr=log_to_stderr)
    try:
        run(config)
    except AlreadyRunning as e:
        click.echo(str(e))
    except StartupError as e:
        raise click.ClickException(str(e)) from None


def _spawn_detached(config: Config) -> None:
    config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "agentd",
        "--socket",
        str(config.socket_path),
        "--db",
        str(config.db_path),
        "start",
        "--foreground",
        "--no-log-to-stderr",
    ]
    with open(config.log_path, "ab") as log_file:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        running = _ping(config)
        if running:
            click.echo(
                f"agentd started (pid {running['pid']})\n"
                f"  socket:   {config.socket_path}\n"
                f"  database: {config.db_path}\n"
                f"  log:      {config.log_path}"
            )
            return
        if process.poll() is not None:
            break
        time.sleep(0.05)
    if process.poll() is None:
        process.terminate()
    click.echo(f"agentd failed to start; see {config.log_path}", err=True)
    ctx = click.get_current_context()
    ctx.exit(EXIT_NOT_RUNNING)


def _read_pid(config: Config) -> int | None:
    try:
        text = config.pid_path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@cli.command()
@click.pass_context
def stop(ctx: click.Context) -> None:
    """Stop the daemon gracefully.

    It finishes in-flight requests, commits, and removes its socket and pid file.

    \b
    Example:
      agentd stop
    """
    config = _config(ctx)
    running = _ping(config)
    pid = running["pid"] if running else _read_pid(config)
    if running:
        with contextlib.suppress(RemoteError, OSError, TimeoutError, NotRunning):
            call(config.socket_path, "shutdown", timeout=5.0)
    elif pid and _pid_alive(pid):
        os.kill(pid, signal.SIGTERM)  # alive but not answering: ask it the signal way
    else:
        click.echo("agentd is not running")
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not (pid and _pid_alive(pid)) and not config.socket_path.exists():
            click.echo(f"agentd stopped (pid {pid})")
            return
        time.sleep(0.05)
    raise click.ClickException(f"agentd (pid {pid}) did not stop within {STOP_TIMEOUT_S:.0f} s")


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for scripts).")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show whether the daemon runs, and its counters.

    Exits 0 when running, 3 when not.

    \b
    Example:
      agentd status
      agentd status --json | jq .events_total
    """
    config = _config(ctx)
    try:
        info: dict[str, Any] = call(config.socket_path, "status", timeout=5.0)
        info["running"] = True
    except (NotRunning, RemoteError, OSError, TimeoutError):
        from agentd.spool import backlog

        files, size = backlog(config.spool_dir)
        info = {
            "running": False,
            "socket": str(config.socket_path),
            "database": str(config.db_path),
            "database_bytes": config.db_path.stat().st_size if config.db_path.exists() else 0,
            "spool_files": files,
            "spool_bytes": size,
        }
    if as_json:
        click.echo(json.dumps(info, indent=2, sort_keys=True))
    elif info["running"]:
        click.echo(
            f"agentd {info['version']} is running (pid {info['pid']}, up {info['uptime_s']:.0f} s)\n"
            f"  socket:        {info['socket']}\n"
            f"  database:      {info['database']} ({_human_bytes(info['database_bytes'])})\n"
            f"  events stored: {info['events_total']} in all, {info['events_stored']} since start\n"
            f"  spool backlog: {info['spool_files']} files ({_human_bytes(info['spool_bytes'])})"
        )
    else:
        click.echo(
            f"agentd is not running (start it with: agentd start)\n"
            f"  socket:        {info['socket']}\n"
            f"  database:      {info['database']} ({_human_bytes(info['database_bytes'])})\n"
            f"  spool backlog: {info['spool_files']} files ({_human_bytes(info['spool_bytes'])})"
        )
    if not info["running"]:
        ctx.exit(EXIT_NOT_RUNNING)


_SCOPE = click.option(
    "--scope",
    type=click.Choice(["user", "project"]),
    default="user",
    show_default=True,
    help="user: ~/.claude/settings.json (all projects); project: DIR/.claude/settings.json.",
)
_PROJECT_DIR = click.option(
    "--project-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The project for --scope project (default: the current directory).",
)
_DRY_RUN = click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")


def _print_plan(plan: Any, done: str, dry_run: bool) -> None:
    from agentd.install import Plan

    assert isinstance(plan, Plan)
    if not plan.changed:
        click.echo(f"Nothing to change in {plan.path}: {done} already.")
        return
    verb = "Would change" if dry_run else "Changed"
    click.echo(f"{verb} {plan.path}: {len(plan.changes)} hook entries")
    for change in plan.changes:
        click.echo(f"  {change}")
    if plan.backup:
        click.echo(f"Backup of the previous file: {plan.backup}")


@cli.group()
def install() -> None:
    """Install agentd's capture into an agent's configuration.

    \b
    Example:
      agentd install claude                       # every project (user settings)
      agentd install claude --scope project       # this project only
    """


@cli.group()
def uninstall() -> None:
    """Remove exactly what `agentd install` added.

    \b
    Example:
      agentd uninstall claude
    """


def _plan(action: Any, where: Any, scope: str, project_dir: Path | None, dry_run: bool) -> Any:
    """Run an install/uninstall `action` on the file `where(scope, project_dir, env)` names."""
    from agentd.install import InstallError

    if project_dir is not None and scope != "project":
        raise click.UsageError("--project-dir goes with --scope project")
    try:
        return action(where(scope, project_dir, dict(os.environ)), dry_run=dry_run)
    except InstallError as e:
        raise click.ClickException(str(e)) from None


@install.command("claude")
@_SCOPE
@_PROJECT_DIR
@_DRY_RUN
def install_claude_command(scope: str, project_dir: Path | None, dry_run: bool) -> None:
    """Add agentd's hook to every Claude Code hook event.

    Merges into settings.json: your other hooks and keys stay, the previous file is kept as
    settings.json.agentd-backup, and running it again changes nothing. The hook command names
    this Python and agentd's hook by absolute path, so it works from any directory without PATH
    or an activated virtualenv.

    \b
    Example:
      agentd install claude --dry-run
      agentd install claude --scope project --project-dir ~/src/myapp
    """
    from agentd.install import claude_settings_path, install_claude

    plan = _plan(install_claude, claude_settings_path, scope, project_dir, dry_run)
    _print_plan(plan, "agentd's hooks are installed", dry_run)
    if plan.applied:
        click.echo("Claude Code picks the hooks up by itself; check with: agentd status")


@uninstall.command("claude")
@_SCOPE
@_PROJECT_DIR
@_DRY_RUN
def uninstall_claude_command(scope: str, project_dir: Path | None, dry_run: bool) -> None:
    """Remove agentd's hooks from Claude Code's settings.json (nothing else).

    \b
    Example:
      agentd uninstall claude --scope project
    """
    from agentd.install import claude_settings_path, uninstall_claude

    plan = _plan(uninstall_claude, claude_settings_path, scope, project_dir, dry_run)
    _print_plan(plan, "no agentd hooks are present", dry_run)


_OPENCODE_SCOPE = click.option(
    "--scope",
    type=click.Choice(["user", "project"]),
    default="user",
    show_default=True,
    help="user: ~/.config/opencode/plugins/ (all projects); project: DIR/.opencode/plugins/.",
)


def _print_file_plan(plan: Any, state: str, dry_run: bool) -> None:
    if not plan.changed:
        click.echo(f"Nothing to change: {state} ({plan.path}).")
        return
    past = {"add": "Added", "update": "Updated", "remove": "Removed"}
    for change in plan.changes:
        verb, what = change.split(" ", 1)
        click.echo(f"{'Would ' + verb if dry_run else past.get(verb, verb)} {what}: {plan.path}")


@install.command("opencode")
@_OPENCODE_SCOPE
@_PROJECT_DIR
@_DRY_RUN
def install_opencode_command(scope: str, project_dir: Path | None, dry_run: bool) -> None:
    """Add agentd's plugin to OpenCode (a file in OpenCode's plugins directory).

    OpenCode loads every plugins/*.ts of its config directories by itself: no opencode.json
    entry, no npm install. Running it again changes nothing, or updates an older copy; a file of
    that name that is not agentd's is left alone.

    \b
    Example:
      agentd install opencode --dry-run
      agentd install opencode --scope project --project-dir ~/src/myapp
    """
    from agentd.install import install_opencode, opencode_plugin_path

    plan = _plan(install_opencode, opencode_plugin_path, scope, project_dir, dry_run)
    _print_file_plan(plan, "agentd's plugin is installed and up to date", dry_run)
    if plan.applied:
        click.echo("OpenCode loads it when it next starts; its events then count in: agentd status")


@uninstall.command("opencode")
@_OPENCODE_SCOPE
@_PROJECT_DIR
@_DRY_RUN
def uninstall_opencode_command(scope: str, project_dir: Path | None, dry_run: bool) -> None:
    """Remove agentd's plugin file from OpenCode's plugins directory (only if it is agentd's).

    \b
    Example:
      agentd uninstall opencode --scope project
    """
    from agentd.install import opencode_plugin_path, uninstall_opencode

    plan = _plan(uninstall_opencode, opencode_plugin_path, scope, project_dir, dry_run)
    _print_file_plan(plan, "agentd's plugin is not installed", dry_run)


def _maintenance(config: Config, method: str, params: dict[str, Any] | None, direct: Any) -> Any:
    """Run a write operation through the daemon when it runs (it owns the only writer), else
    directly, holding the daemon's pid-file lock so that none starts meanwhile."""
    import asyncio
    import sqlite3

    from agentd import pidfile
    from agentd.store import Store

    try:
        return call(config.socket_path, method, params, timeout=3600.0)
    except NotRunning:
        pass
    except RemoteError as e:
        raise click.ClickException(f"the daemon refused {method}: {e}") from None
    if not config.db_path.exists():
        raise click.ClickException(
            f"no database at {config.db_path}: nothing captured yet (start with: agentd start)"
        )

    async def run() -> Any:
        store = Store(config.db_path)
        await store.open()
        try:
            return await direct(store)
        finally:
            await store.close()

    try:
        with pidfile.held(config.pid_path):
            return asyncio.run(run())
    except sqlite3.Error as e:
        raise click.ClickException(f"{method} failed on {config.db_path}: {e}") from None
    except pidfile.Locked as e:
        raise click.ClickException(
            f"agentd (pid {e.pid or '?'}) is starting or not answering; try again in a moment"
        ) from None


@cli.command()
@click.option(
    "--older-than",
    "older_than",
    required=True,
    metavar="AGE",
    help="A duration (90d, 12w, 24h) or a date (2026-01-01): what was last seen before it goes.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@click.pass_context
def prune(ctx: click.Context, older_than: str, as_json: bool) -> None:
    """Delete sessions and raw events last seen before a cutoff.

    A session goes with all its rows (tools, file operations, errors, compactions, messages)
    when its last activity is older than the cutoff; raw events go by the time they were
    received. Run `agentd vacuum` afterwards to give the space back to the file system.

    \b
    Example:
      agentd prune --older-than 90d
      agentd prune --older-than 2026-01-01 --json
    """
    from agentd.reports import TimeError, parse_time

    config = _config(ctx)
    try:
        cutoff = parse_time(older_than)
    except TimeError as e:
        raise click.BadParameter(str(e), param_hint="--older-than") from None
    if cutoff is None:
        raise click.BadParameter("give an age such as 90d, or a date", param_hint="--older-than")

    async def direct(store: Any) -> dict[str, Any]:
        return {"deleted": await store.prune(cutoff)}

    deleted = _maintenance(config, "prune", {"before": cutoff}, direct)["deleted"]
    if as_json:
        click.echo(json.dumps({"before": cutoff, "deleted": deleted}, indent=2, sort_keys=True))
        return
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(cutoff / 1000))
    total = sum(deleted.values())
    click.echo(f"Deleted {total} rows last seen before {when}:")
    for table, count in deleted.items():
        click.echo(f"  {table:18s} {count}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the sizes as JSON.")
@click.pass_context
def vacuum(ctx: click.Context, as_json: bool) -> None:
    """Shrink the database file: give the space of deleted rows back to the file system.

    Writes wait while it runs (the file is rewritten), so run it after a large prune.

    \b
    Example:
      agentd prune --older-than 90d && agentd vacuum
    """
    config = _config(ctx)

    async def direct(store: Any) -> dict[str, Any]:
        before = store.database_bytes()
        await store.vacuum()
        return {"bytes_before": before, "bytes_after": store.database_bytes()}

    sizes = _maintenance(config, "vacuum", None, direct)
    if as_json:
        click.echo(json.dumps(sizes, indent=2, sort_keys=True))
        return
    click.echo(
        f"Database {config.db_path}: {_human_bytes(sizes['bytes_before'])} -> "
        f"{_human_bytes(sizes['bytes_after'])}"
    )


def main() -> None:
    cli(prog_name="agentd")


from agentd.query import query  # noqa: E402  (registered after the group is defined)

cli.add_command(query)

from agentd.import_command import doctor, import_  # noqa: E402

cli.add_command(import_)
cli.add_command(doctor)
