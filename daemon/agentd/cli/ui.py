"""`agentd ui`: the local dashboard (agentd/ui/), served read-only from the database."""

from __future__ import annotations

import click

from agentd.cli import _config, cli

__all__ = ["ui"]


@cli.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to serve on (0.0.0.0: every interface, reachable from other machines).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port to serve on; 0 picks a free one.",
)
@click.option(
    "--token",
    envvar="AGENTD_UI_TOKEN",
    default=None,
    help="The token every request needs (a ?token= link, its cookie, or an `Authorization: "
    "Bearer` header). Default: a random one kept in the state dir (ui-token). Prefer the "
    "AGENTD_UI_TOKEN variable: a command line shows in `ps`.",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the dashboard in a browser.")
@click.pass_context
def ui(ctx: click.Context, host: str, port: int, token: str | None, open_browser: bool) -> None:
    """Serve a live dashboard of what the agents did (read-only).

    Overview (cost, tokens, tool calls and failures per day), sessions with live status, one
    session's timeline of tool calls with exact durations, tools (failure rates, p50/p95) and
    hot files. Every view has a JSON endpoint and a CSV export (docs/ui.md). The pages update
    themselves within a second of new data, and never load anything from another server.

    Every request needs a token, on loopback too: open the link this prints (it ends in
    ?token=...); the token is kept in the state dir's ui-token file unless AGENTD_UI_TOKEN
    gives one.

    \b
    Example:
      agentd ui --open
      agentd ui --port 9000
      agentd ui --host 0.0.0.0      # from other machines: the printed link for them
    """  # fmt: skip
    from agentd.ui.server import run  # uvicorn and starlette load only for this command

    # A UIError (no database, cannot bind, a bad token) rises to the CLI's one error mapping.
    config = _config(ctx)
    run(db_path=config.db_path, state_dir=config.state_dir, host=host, port=port, token=token,
        open_browser=open_browser)  # fmt: skip
