"""The `agentd` command: a thin click layer over config, server and client.

Exit codes: 0 success; 1 error; 2 usage error (click); 3 the daemon is not running (`status`) or
failed to start (`start`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from agentd import __version__
from agentd.config import Config, ConfigError

EXIT_NOT_RUNNING = 3


def _load(**overrides: Any) -> Config:
    """Config.load, with a config error as a clean `Error: ...` (exit 1), never a traceback."""
    try:
        return Config.load(**overrides)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None


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
    os.umask(0o077)  # every file and directory agentd creates is its user's alone (0600/0700)
    ctx.obj = _load(socket_path=socket_path, db_path=db_path)


def main() -> None:
    cli(prog_name="agentd")


# The commands live in their own modules; importing them registers them on the group.
from agentd.cli import agents, daemon, maintenance, query  # noqa: E402, F401
