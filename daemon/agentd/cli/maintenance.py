"""`agentd prune` and `agentd vacuum`: keeping the database small."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from agentd.cli import _config, cli
from agentd.cli.daemon import _human_bytes
from agentd.config import Config


def _write(config: Config, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run a write method with whichever writer there is (db/access.py); errors as messages."""
    import sqlite3

    from agentd.db import access

    try:
        _, result = access.write(config, method, params)
    except access.AccessError as e:
        raise click.ClickException(str(e)) from None
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
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@click.pass_context
def prune(ctx: click.Context, older_than: str, as_json: bool) -> None:
    """Delete sessions and raw events last seen before a cutoff.

    A session goes with all its rows (tools, file operations, errors, compactions, messages)
    when its last activity is older than the cutoff; raw events go by the time they were
    received. Run `agentd vacuum` afterwards to give the space back to the file system.

    \b
    Example:
      agentd prune --older-than 90d
      agentd prune --older-than 2026-01-01 --json
    """
    from agentd.query.reports import TimeError, parse_time

    config = _config(ctx)
    try:
        cutoff = parse_time(older_than)
    except TimeError as e:
        raise click.BadParameter(str(e), param_hint="--older-than") from None
    if cutoff is None:
        raise click.BadParameter("give an age such as 90d, or a date", param_hint="--older-than")
    deleted = _write(config, "prune", {"before": cutoff})["deleted"]
    if as_json:
        click.echo(json.dumps({"before": cutoff, "deleted": deleted}, indent=2, sort_keys=True))
        return
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(cutoff / 1000))
    total = sum(deleted.values())
    click.echo(f"Deleted {total} rows last seen before {when}:")
    for table, count in deleted.items():
        click.echo(f"  {table:18s} {count}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the sizes as JSON.")
@click.pass_context
def vacuum(ctx: click.Context, as_json: bool) -> None:
    """Shrink the database file: give the space of deleted rows back to the file system.

    Writes wait while it runs (the file is rewritten), so run it after a large prune.

    \b
    Example:
      agentd prune --older-than 90d && agentd vacuum
    """
    config = _config(ctx)
    sizes = _write(config, "vacuum")
    if as_json:
        click.echo(json.dumps(sizes, indent=2, sort_keys=True))
        return
    click.echo(
        f"Database {config.db_path}: {_human_bytes(sizes['bytes_before'])} -> "
        f"{_human_bytes(sizes['bytes_after'])}"
    )
