"""`agentd statusline` (the command for Claude Code's statusLine setting) and `agentd prices`."""

from __future__ import annotations

import os
import sys
import time

import click

from agentd.cli import cli

__all__ = ["statusline", "prices"]


@cli.command()
def statusline() -> None:
    """Print one status line for Claude Code from its statusLine JSON on stdin.

    Shows the model, context used, the session's cost, today's cost (all sessions), the 5-hour
    quota used and when it resets, and the session's failed tool calls; forwards the sample to
    the daemon (spooled when it is down). `agentd install claude --statusline` sets Claude
    Code's statusLine to the fast form of this command (`python -I -S .../statusline.py`).

    \b
    Example:
      agentd install claude --statusline
      echo '{"model": {"display_name": "Sonnet"}, "cost": {"total_cost_usd": 0.42}}' | agentd statusline
    """
    from agentd import statusbar

    line = statusbar.render(os.environ, time.monotonic())
    try:
        sys.stdout.buffer.write(line)
        sys.stdout.flush()
    except OSError:  # a closed stdout: nothing to draw on
        pass


@cli.command()
@click.argument("models", nargs=-1)
def prices(models: tuple[str, ...]) -> None:
    """Show the price table agentd computes costs with, and what MODELS cost per million tokens.

    The table is genai-prices' bundled snapshot (works offline; prices are versioned by date and
    each message is priced at its own time). Refresh it by upgrading the package:
    `pip install -U genai-prices` (in agentd's environment), then restart the daemon.

    \b
    Example:
      agentd prices
      agentd prices claude-sonnet-4-5 claude-opus-4-1
    """
    from agentd.errors import UserError
    from agentd.pricing.table import PriceTable, PriceTableError

    try:
        table = PriceTable()
    except PriceTableError as e:
        raise UserError(str(e)) from None
    click.echo(f"price table: genai-prices {table.version} (bundled snapshot, offline)")
    now = int(time.time() * 1000)
    for model in models:
        # Priced on 1000 tokens and scaled: a million at once would hit long-context tiers.
        inp = table.cost(model, provider=None, at_ms=now, tokens={"prompt_tokens": 1000})
        out = table.cost(model, provider=None, at_ms=now, tokens={"completion_tokens": 1000})
        if inp is None or out is None:
            click.echo(f"{model}: unknown (its messages' cost is shown as unknown, never $0)")
        else:
            click.echo(f"{model}: ${inp * 1000:g} input, ${out * 1000:g} output per million tokens")
