"""`agentd prune` and `agentd vacuum`: keeping the database small; `agentd reprice`: keeping its
costs current with the price table."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import click

from agentd.agents import AGENTS
from agentd.cli import _config, cli
from agentd.config import Config
from agentd.output import emit, human_bytes, output_options


def _write(
    config: Config, method: str, params: dict[str, Any] | None = None, progress: Any = None
) -> dict[str, Any]:
    """Run a write method with whichever writer there is (db/access.py). An AccessError (busy,
    no database, refused) rises to the CLI's one error mapping; a SQLite error gets named here."""
    import sqlite3

    from agentd.db import access

    try:
        _, result = access.write(config, method, params, progress=progress)
    except sqlite3.Error as e:
        raise click.ClickException(f"{method} failed on {config.db_path}: {e}") from None
    return result


@cli.command()
@click.option(
    "--older-than",
    "older_than",
    required=True,
    metavar="AGE",
    help="A duration (90d, 12w, 24h) or a date (2026-01-01): what was last seen before it goes.",
)
@output_options
@click.pass_context
def prune(ctx: click.Context, older_than: str, fmt: str) -> None:
    """Delete sessions and raw events last seen before a cutoff.

    A session goes with all its rows (tools, file operations, errors, compactions, messages)
    when its last activity is older than the cutoff; raw events go by the time they were
    received. Run `agentd vacuum` afterwards to give the space back to the file system.

    \b
    Example:
      agentd prune --older-than 90d
      agentd prune --older-than 2026-01-01 --json   # {"before": ..., "deleted": {...}}
    """
    from agentd.query.times import TimeError, parse_time

    config = _config(ctx)
    try:
        cutoff = parse_time(older_than)
    except TimeError as e:
        raise click.BadParameter(str(e), param_hint="--older-than") from None
    if cutoff is None:
        raise click.BadParameter("give an age such as 90d, or a date", param_hint="--older-than")
    deleted = _write(config, "prune", {"before": cutoff})["deleted"]
    emit({"before": cutoff, "deleted": deleted}, fmt, _pruned_text)


def _pruned_text(result: dict[str, Any]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(result["before"] / 1000))
    total = sum(result["deleted"].values())
    lines = [f"Deleted {total} rows last seen before {when}:"]
    lines += [f"  {table:18s} {count}" for table, count in result["deleted"].items()]
    return "\n".join(lines)


@cli.command()
@output_options
@click.pass_context
def vacuum(ctx: click.Context, fmt: str) -> None:
    """Shrink the database file: give the space of deleted rows back to the file system.

    Writes wait while it runs (the file is rewritten), so run it after a large prune.

    \b
    Example:
      agentd prune --older-than 90d && agentd vacuum
      agentd vacuum --json   # {"bytes_after": ..., "bytes_before": ...}
    """
    config = _config(ctx)
    sizes = _write(config, "vacuum")
    emit(
        sizes,
        fmt,
        lambda s: (
            f"Database {config.db_path}: {human_bytes(s['bytes_before'])} -> "
            f"{human_bytes(s['bytes_after'])}"
        ),
    )


@cli.command()
@click.option(
    "--since",
    metavar="TIME",
    default="all",
    show_default=True,
    help="Only messages created since then: a duration (30d, 24h) or a date (2026-01-01).",
)
@click.option("--source", type=click.Choice(list(AGENTS)), help="Only this agent's messages.")
@click.option("--model", metavar="MODEL", help="Only this model's messages (as stored).")
@output_options
@click.pass_context
def reprice(
    ctx: click.Context, since: str, source: str | None, model: str | None, fmt: str
) -> None:
    """Price stored messages again with the price table installed now.

    Each message is priced as when it was stored (docs/usage.md): the agent's own cost wins,
    else its tokens are priced at the message's own time, else it stays unknown (never $0).
    Run it after upgrading the price table (`pip install -U genai-prices`, then restart the
    daemon), or after upgrading agentd from one that priced fewer messages or none. Only
    messages whose cost changes are written, with every total and report that sums them; a
    second run changes nothing. The daemon, when it runs, does it in short batches between the
    events it stores.

    \b
    Example:
      pip install -U genai-prices && agentd stop && agentd start && agentd reprice
      agentd reprice --since 30d --source claude
      agentd reprice --model my-local-model --json   # {"examined": ..., "repriced": ..., ...}
    """
    from agentd.errors import UserError
    from agentd.pricing.table import PriceTableError
    from agentd.query.times import TimeError, parse_time

    config = _config(ctx)
    try:
        cutoff = parse_time(since)
    except TimeError as e:
        raise click.BadParameter(str(e), param_hint="--since") from None
    params = {"since": cutoff, "source": source, "model": model}
    progress = Progress(enabled=fmt == "table" and sys.stderr.isatty())
    try:
        result = _write(config, "reprice", params, progress)
    except PriceTableError as e:  # a direct run: nothing was changed
        raise UserError(f"nothing was re-priced: {e}") from None
    finally:
        progress.finish()
    emit(result, fmt, _repriced_text)


class Progress:
    """A direct run's progress on stderr (a terminal), once it has taken over `after_s`."""

    def __init__(self, enabled: bool, stream: TextIO = sys.stderr, after_s: float = 1.0) -> None:
        self.enabled = enabled
        self.stream = stream
        self._start = time.monotonic()
        self._after_s = after_s
        self._drawn = 0.0
        self._shown = False

    def __call__(self, tally: Any, done: float) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._start < self._after_s or now - self._drawn < 0.1:
            return
        self._drawn = now
        self.stream.write(
            f"\r\x1b[K{done:.0%}: {tally.examined} messages priced, {tally.repriced} re-priced"
        )
        self.stream.flush()
        self._shown = True

    def finish(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()


def _repriced_text(result: dict[str, Any]) -> str:
    lines = [
        f"Priced {result['examined']} messages with {result['price_table']}: "
        f"{result['repriced']} re-priced, {result['unknown']} still unknown; "
        f"reported cost {_usd(result['cost_change'])}."
    ]
    models = sorted(result["by_model"].items(), key=lambda item: -item[1]["examined"])
    if models:
        width = max(len("model"), *(len(name or "(none)") for name, _ in models))
        lines.append(f"  {'model':{width}s}  messages  re-priced  unknown  cost change")
        for name, m in models:
            lines.append(
                f"  {name or '(none)':{width}s}  {m['examined']:8d}  {m['repriced']:9d}"
                f"  {m['unknown']:7d}  {_usd(m['cost_change'])}"
            )
    return "\n".join(lines)


def _usd(amount: float) -> str:
    return f"{'+' if amount >= 0 else '-'}${abs(amount):,.2f}"
