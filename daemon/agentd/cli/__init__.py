"""The `agentd` command: a thin click layer over config, server and client.

Exit codes: 0 success; 1 error; 2 usage error (click); 3 the daemon is not running (`status`) or
failed to start (`start`). Every agentd error a user can fix (errors.UserError) becomes its
message and exit code here, in AgentdGroup, the one place: commands just let them rise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from agentd import __version__
from agentd.config import Config
from agentd.errors import NotRunning, UserError

EXIT_NOT_RUNNING = NotRunning.EXIT_CODE


class AgentdGroup(click.Group):
    """The root group: an errors.UserError raised by any command below it is printed as
    `Error: <message>` and exits with its EXIT_CODE, never as a traceback."""

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


def main() -> None:
    cli(prog_name="agentd")


# The commands live in their own modules; importing them registers them on the group.
from agentd.cli import agents, daemon, maintenance, push, query, ui, usage  # noqa: E402, F401
