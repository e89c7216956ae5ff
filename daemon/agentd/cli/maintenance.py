"""`agentd prune` and `agentd vacuum`: keeping the database small."""

from __future__ import annotations

import time
from typing import Any

import click

from agentd.cli import _config, cli
from agentd.config import Config
from agentd.output import emit, human_bytes, output_options


def _write(config: Config, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run a write method with whichever writer there is (db/access.py). An AccessError (busy,
    no database, refused) rises to the CLI's one error mapping; a SQLite error gets named here."""
    import sqlite3

    from agentd.db import access

    try:
        _, result = access.write(config, method, params)
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
