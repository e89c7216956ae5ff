"""`agentd statusline` (the command for Claude Code's statusLine setting) and `agentd prices`."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click

from agentd.cli import _config, cli
from agentd.config import Config
from agentd.output import emit, output_options

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
@output_options
@click.pass_context
def prices(ctx: click.Context, models: tuple[str, ...], fmt: str) -> None:
    """Show the price table agentd computes costs with, and what MODELS cost per million tokens.

    Without MODELS: the models of your messages of the last 30 days.

    The table is genai-prices' bundled snapshot (works offline; prices are versioned by date and
    each message is priced at its own time). Refresh it by upgrading the package:
    `pip install -U genai-prices` (in agentd's environment), restart the daemon, then `agentd
    reprice` to price the stored messages with it.

    \b
    Example:
      agentd prices                                # the models you used in the last 30 days
      agentd prices claude-sonnet-4-5 anthropic/claude-opus-4-1
      agentd prices --json claude-sonnet-4-5       # {"table": ..., "models": [...]}
    """
    from agentd.errors import UserError
    from agentd.pricing.table import PriceTable, PriceTableError

    try:
        table = PriceTable()
    except PriceTableError as e:
        raise UserError(str(e)) from None
    now = int(time.time() * 1000)
    listed = list(models) or _recent_models(_config(ctx), now)
    rows = []
    for model in listed:
        # Priced on 1000 tokens and scaled: a million at once would hit long-context tiers.
        inp = table.cost(model, provider=None, at_ms=now, tokens={"prompt_tokens": 1000})
        out = table.cost(model, provider=None, at_ms=now, tokens={"completion_tokens": 1000})
        known = inp is not None and out is not None
        rows.append({
            "model": model,
            "known": known,
            "input_per_million": round(inp * 1000, 6) if known else None,
            "output_per_million": round(out * 1000, 6) if known else None,
        })  # fmt: skip
    document = {"table": f"genai-prices {table.version}", "given": bool(models), "models": rows}
    emit(document, fmt, _prices_text)


def _recent_models(config: Config, now: int) -> list[str]:
    """The models of the last 30 days' responses, the most used first (the hourly rollup: a few
    thousand rows); none without a database."""
    import sqlite3

    from agentd.db import readonly

    if not config.db_path.exists():
        return []
    try:
        conn = readonly.connect(config.db_path)
        try:
            return [row[0] for row in conn.execute(
                "SELECT model FROM usage_hourly WHERE hour >= ? AND responses > 0 AND model != ''"
                " GROUP BY model ORDER BY sum(responses) DESC, model LIMIT 50",
                (now - 30 * 86_400_000,),
            )]  # fmt: skip
        finally:
            conn.close()
    except sqlite3.Error:  # an older or broken database: `agentd doctor` says which
        return []


def _prices_text(document: dict[str, Any]) -> str:
    lines = [f"price table: {document['table']} (bundled snapshot, offline)"]
    if not document["models"]:
        lines.append(
            "no model used in the last 30 days: name some, e.g. agentd prices claude-sonnet-4-5"
        )
    elif not document["given"]:
        lines.append("the models of your messages of the last 30 days:")
    for row in document["models"]:
        if row["known"]:
            lines.append(
                f"{row['model']}: ${row['input_per_million']:g} input, "
                f"${row['output_per_million']:g} output per million tokens"
            )
        else:
            lines.append(
                f"{row['model']}: unknown (its messages' cost is shown as unknown, never $0)"
            )
    return "\n".join(lines)
