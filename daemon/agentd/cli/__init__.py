"""The `agentd` command: a thin click layer over config, server and client.

Exit codes: 0 success; 1 error; 2 usage error (click); 3 the daemon is not running (`status`) or
failed to start (`start`).
"""

from __future__ import annotations

from pathlib import Path

import click

from agentd import __version__
from agentd.config import Config, ConfigError

EXIT_NOT_RUNNING = 3


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


def main() -> None:
    cli(prog_name="agentd")


# The commands live in their own modules; importing them registers them on the group.
from agentd.cli import agents, daemon, maintenance, push, query  # noqa: E402, F401
