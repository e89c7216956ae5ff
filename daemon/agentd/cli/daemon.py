"""`agentd start`, `stop` and `status`: the daemon's lifecycle from the command line."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

import click

from agentd import trust
from agentd.cli import EXIT_NOT_RUNNING, _config, cli
from agentd.client import NotRunning, RemoteError, Untrusted, call
from agentd.config import Config
from agentd.output import emit, human_bytes, output_options
from agentd.spool import process_exists

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 15.0


def _ping(config: Config) -> dict[str, Any] | None:
    """The daemon's ping answer, None when none answers; a ClickException saying why when the
    socket is not one to trust (another user could have planted it)."""
    try:
        result: dict[str, Any] = call(config.socket_path, "ping", timeout=2.0)
        return result
    except Untrusted as e:
        raise _refusal(config, e) from None
    except (NotRunning, TimeoutError, ConnectionError, OSError, RemoteError):
        return None


def _refusal(config: Config, e: Untrusted) -> click.ClickException:
    return click.ClickException(
        f"{e}.\nagentd sends nothing to, and starts no daemon beside, a socket that another user"
        f" could have planted. Put the socket ({config.socket_path}) in a directory that only"
        " you can write (AGENTD_SOCKET, AGENTD_HOME), or remove what is there if it is yours."
    )


def _private_state_dir(config: Config) -> None:
    """Make or check the state dir (log, pid, spool): ours alone, or a clear error."""
    try:
        trust.private_dir(config.state_dir)
    except Untrusted as e:
        raise click.ClickException(
            f"{e}; agentd writes its log, pid file and spool there"
        ) from None
    except OSError as e:
        raise click.ClickException(f"cannot prepare {config.state_dir}: {e.strerror}") from None


def _open_log(config: Config) -> int:
    """The log file, opened for appending: 0600, and never through a symlink."""
    _private_state_dir(config)
    try:
        return trust.open_private(str(config.log_path), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    except Untrusted as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"cannot open the log {config.log_path}: {e.strerror}") from None


def _setup_logging(config: Config, to_stderr: bool) -> None:
    # Not logging.FileHandler: it would follow a link planted at the path and create the file 0644.
    log_file = open(_open_log(config), "a", encoding="utf-8", errors="replace")  # noqa: SIM115
    handlers: list[logging.Handler] = [logging.StreamHandler(log_file)]
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
    from agentd.service import AlreadyRunning, run

    _setup_logging(config, to_stderr=log_to_stderr)
    try:
        run(config)
    except AlreadyRunning as e:  # not an error: the user wanted a daemon, and one runs
        click.echo(str(e))


def _spawn_detached(config: Config) -> None:
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
    with open(_open_log(config), "ab") as log_file:
        log_start = log_file.tell()
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
    reason = _startup_error(config, log_start)
    click.echo(f"agentd failed to start{reason}; see {config.log_path}", err=True)
    ctx = click.get_current_context()
    ctx.exit(EXIT_NOT_RUNNING)


def _startup_error(config: Config, offset: int) -> str:
    """ ": <why>", from the `Error: ...` line the child wrote to the log, or "" if none."""
    try:
        with open(config.log_path, "rb") as f:
            f.seek(offset)
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    errors = [line.removeprefix("Error: ") for line in lines if line.startswith("Error: ")]
    return f": {errors[-1]}" if errors else ""


def _read_pid(config: Config) -> int | None:
    try:
        text = config.pid_path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _silent_daemon(config: Config) -> int | None:
    """The pid of a daemon that listens on the socket but did not answer `ping` (stuck, say): the
    pid file names it and the socket's listener is that very process of ours (SO_PEERCRED).
    None otherwise. A pid file alone proves nothing: after a crash its pid may be any process's
    now, and a direct writer (import, prune, vacuum, reprice) holds the same file; neither may
    be signalled."""
    import socket
    import struct

    pid = _read_pid(config)
    if pid is None:
        return None
    ucred = struct.Struct("3i")  # pid, uid, gid
    try:
        trust.check_dir(str(config.socket_path.parent))
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2.0)
            sock.connect(str(config.socket_path))
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, ucred.size)
    except OSError:  # no listener (a stale socket file), no socket, a path not to trust
        return None
    listener, uid, _ = ucred.unpack(creds)
    return pid if listener == pid and uid == os.geteuid() else None


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
    pid = running["pid"] if running else _silent_daemon(config)
    if running:
        with contextlib.suppress(RemoteError, OSError, TimeoutError, NotRunning):
            call(config.socket_path, "shutdown", timeout=5.0)
    elif pid:
        os.kill(pid, signal.SIGTERM)  # listening but not answering: ask it the signal way
    else:
        click.echo("agentd is not running")
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not (pid and process_exists(pid)) and not config.socket_path.exists():
            click.echo(f"agentd stopped (pid {pid})")
            return
        time.sleep(0.05)
    raise click.ClickException(f"agentd (pid {pid}) did not stop within {STOP_TIMEOUT_S:.0f} s")


@cli.command()
@output_options
@click.pass_context
def status(ctx: click.Context, fmt: str) -> None:
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
    except Untrusted as e:
        raise _refusal(config, e) from None
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
    from agentd.push.state import read_state  # stdlib only: no psycopg here

    push_state = read_state(config.state_dir)
    if push_state is not None:
        info["push"] = push_state
    emit(info, fmt, _status_text)
    if not info["running"]:
        ctx.exit(EXIT_NOT_RUNNING)


def _status_text(info: dict[str, Any]) -> str:
    database = f"  database:      {info['database']} ({human_bytes(info['database_bytes'])})\n"
    spool = f"  spool backlog: {info['spool_files']} files ({human_bytes(info['spool_bytes'])})"
    if not info["running"]:
        return (
            "agentd is not running (start it with: agentd start)\n"
            f"  socket:        {info['socket']}\n" + database + spool + _push_text(info)
        )
    return (
        f"agentd {info['version']} is running (pid {info['pid']}, up {info['uptime_s']:.0f} s)\n"
        f"  socket:        {info['socket']}\n"
        + database
        + f"  events stored: {info['events_total']} in all, {info['events_stored']} since start\n"
        + spool
        + _push_text(info)
    )


def _push_text(info: dict[str, Any]) -> str:
    from agentd.push.state import describe

    return "\n" + describe(info["push"]) if "push" in info else ""
