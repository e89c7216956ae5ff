"""The `agentd` command: a thin click layer over config, server and client.

Exit codes: 0 success; 1 error; 2 usage error (click); 3 the daemon is not running (`status`) or
failed to start (`start`). Every agentd error a user can fix (errors.UserError) becomes its
message and exit code here, in AgentdGroup, the one place: commands just let them rise.

The group is lazy (click's LazyGroup pattern): COMMANDS names each command's module, which is
imported only when that command runs, so `agentd query` pays for the query engine and not for
the daemon, asyncio or the normalizers. `agentd --help` lists every command from COMMANDS'
short help without importing any (tests/test_cli.py checks it is each command's own).
"""

from __future__ import annotations

import contextlib
import os
import sys
from gettext import gettext as _  # click's own, for the "Commands" title as click writes it
from pathlib import Path
from typing import Any

import click

from agentd import __version__
from agentd.config import Config
from agentd.errors import NotRunning, UserError

EXIT_NOT_RUNNING = NotRunning.EXIT_CODE

# name -> (the module under agentd.cli that defines it, its short help as `agentd --help` shows
# it: the first sentence of its docstring, which tests/test_cli.py checks against the command).
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": (
        "agents",
        "Check the install: daemon, database, and for each agent its capture (hooks, plugin, "
        "a test event end to end, transcript retention).",
    ),
    "import": (
        "agents",
        "Backfill from what the agents keep on disk: Claude Code transcripts, OpenCode's database.",
    ),
    "install": ("agents", "Install agentd's capture into an agent's configuration."),
    "prices": (
        "usage",
        "Show the price table agentd computes costs with, and what MODELS cost per million tokens.",
    ),
    "prune": ("maintenance", "Delete sessions and raw events last seen before a cutoff."),
    "reprice": ("maintenance", "Price stored messages again with the price table installed now."),
    "push": ("push", "Copy what this machine captured into a team's PostgreSQL database."),
    "query": (
        "query",
        "Answer questions from the captured data: a canned REPORT, or read-only SQL.",
    ),
    "start": ("daemon", "Start the daemon (detached unless --foreground)."),
    "status": ("daemon", "Show whether the daemon runs, and its counters."),
    "statusline": (
        "usage",
        "Print one status line for Claude Code from its statusLine JSON on stdin.",
    ),
    "stop": ("daemon", "Stop the daemon gracefully."),
    "ui": ("ui", "Serve a live dashboard of what the agents did (read-only)."),
    "uninstall": ("agents", "Remove exactly what `agentd install` added."),
    "vacuum": (
        "maintenance",
        "Shrink the database file: give the space of deleted rows back to the file system.",
    ),
}


def load_commands() -> None:
    """Import every command module (each registers its commands on `cli`): for tools and tests
    that walk `cli.commands`."""
    for module in sorted({entry[0] for entry in COMMANDS.values()}):
        __import__(f"agentd.cli.{module}")


class AgentdGroup(click.Group):
    """The root group: lazy (its commands' modules load when a command is asked for, COMMANDS);
    and an errors.UserError raised by any command below it is printed as `Error: <message>` and
    exits with its EXIT_CODE, never as a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in COMMANDS:
            # Registers it. __import__ (not importlib.import_module): `python -X importtime`
            # then shows the command's module, as it shows every other import.
            __import__(f"agentd.cli.{COMMANDS[name][0]}")
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's own listing, with a stand-in carrying COMMANDS' short help for each command
        not loaded yet (it shortens to the width as the command would: the same text)."""
        commands = [
            (name, self.commands.get(name) or click.Command(name, help=COMMANDS[name][1]))
            for name in self.list_commands(ctx)
        ]
        commands = [(name, command) for name, command in commands if not command.hidden]
        if commands:
            limit = formatter.width - 6 - max(len(name) for name, _ in commands)
            rows = [(name, command.get_short_help_str(limit)) for name, command in commands]
            with formatter.section(_("Commands")):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as e:
            error = click.ClickException(str(e))
            error.exit_code = e.EXIT_CODE
            raise error from None


def _load(**overrides: Any) -> Config:
    """Config.load; a ConfigError rises to AgentdGroup (a clean `Error: ...`, exit 1)."""
    return Config.load(**overrides)


def _config(ctx: click.Context | None = None) -> Config:
    """The Config the `agentd` group loaded; loaded here, once, when a command runs on its own
    (a test invoking the command object)."""
    ctx = ctx or click.get_current_context()
    config = ctx.find_object(Config)
    if config is None:
        config = _load()
        root = ctx.find_root()
        if root.obj is None:
            root.obj = config
    return config


@click.group(cls=AgentdGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
    os.umask(0o077)  # every file and directory agentd creates is its user's alone (0600/0700)
    ctx.obj = _load(socket_path=socket_path, db_path=db_path)


_skip_teardown = False


def skip_teardown() -> None:
    """Let the process end with os._exit once the running command is done (its output flushed):
    the interpreter's teardown (collecting every module loaded) costs a few milliseconds, a
    tenth of `agentd query`'s whole run. Only for a command that leaves nothing to finalize: no
    threads, no atexit work (logging files), every file closed."""
    global _skip_teardown
    _skip_teardown = True


def main() -> None:
    try:
        cli(prog_name="agentd")
    except SystemExit as e:
        if not _skip_teardown:
            raise
        code = e.code
        if not isinstance(code, int):  # as Python exits: None is 0, anything else is printed, 1
            if code is not None:
                print(code, file=sys.stderr)
            code = 0 if code is None else 1
        for stream in (sys.stdout, sys.stderr):
            # A reader gone, or a stream closed: there is nothing left to keep.
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)
