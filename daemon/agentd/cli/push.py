"""`agentd push`: copy this machine's captured data into a team's PostgreSQL (docs/team.md)."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import click

from agentd.cli import _config, cli
from agentd.config import CONTENT_LEVELS as LEVELS, Config
from agentd.output import emit, output_options

__all__ = ["push"]


def _level(config: Config, asked: str | None) -> str:
    """The content level of the push: as strict as the local one, or stricter, never looser."""
    level = asked or config.push_content_level or config.content_level
    if level not in LEVELS:
        raise click.ClickException(
            f"content level must be one of {', '.join(LEVELS)}, got {level!r}"
        )
    if LEVELS.index(level) < LEVELS.index(config.content_level):
        raise click.ClickException(
            f"--content-level {level} would push more than this machine stores "
            f"(content_level = {config.content_level} in {config.config_path}); "
            f"use {config.content_level} or stricter"
        )
    return level


@cli.command()
@click.argument("url", required=False, metavar="[URL]")
@click.option(
    "--init",
    "init_schema",
    is_flag=True,
    help="Create or upgrade agentd's tables and report functions on the server, then exit.",
)
@click.option(
    "--watch",
    is_flag=True,
    help="Keep pushing as new data arrives (lag under 2 s); back off while the server is down.",
)
@click.option("--raw", is_flag=True, help="Push the raw events table too (large).")
@click.option(
    "--content-level",
    type=click.Choice(LEVELS),
    help="Push less than is stored: metadata (no bodies) or none (no paths either).",
)
@click.option(
    "--batch-rows",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Rows per server transaction.",
)
@output_options
@click.pass_context
def push(
    ctx: click.Context,
    url: str | None,
    init_schema: bool,
    watch: bool,
    raw: bool,
    content_level: str | None,
    batch_rows: int,
    fmt: str,
) -> None:
    """Copy what this machine captured into a team's PostgreSQL database.

    URL is a libpq connection string (postgresql://user@host/db, or "host=... dbname=...");
    default: $AGENTD_PUSH_URL, then `url` in config.toml's [push] section. Passwords are best
    kept in ~/.pgpass or $PGPASSWORD. Run once with --init to create the tables, then push
    now and then, or keep `agentd push --watch` running. Every row carries this machine's id
    and user name; only what changed since the last push is sent, and rows removed by
    `agentd prune` are removed on the server too. Exits 1 with one line when the server is
    unreachable, refuses the login, or has no agentd tables yet.

    \b
    Example:
      agentd push --init postgresql://agentd@db.example.com/team
      agentd push postgresql://agentd@db.example.com/team
      agentd push --watch --content-level metadata
      psql "$AGENTD_PUSH_URL" -c "SELECT * FROM agentd.report_hot_files(agentd.ms_ago('7 days'))"
    """
    try:
        from agentd.push.runner import (
            PushOptions,
            init_server,
            push_once,
            watch as watch_loop,
        )
    except ImportError as e:  # the optional `push` extra (psycopg) is not installed
        raise click.ClickException(
            f"agentd push needs psycopg ({e.name} is missing): pip install 'agentd-telemetry[push]'"
        ) from None

    config = _config(ctx)
    conninfo = url or config.push_url
    if not conninfo:
        raise click.UsageError(
            "give the server's URL (or set $AGENTD_PUSH_URL, or `url` under [push] in config.toml)"
        )
    # A PushError (one line: unreachable, wrong password, no schema, busy) rises to the CLI's
    # one error mapping.
    if init_schema:
        applied, version, repaired = init_server(conninfo)
        emit({"applied": applied, "version": version, "repaired": repaired}, fmt, _init_text)
        return
    options = PushOptions(
        conninfo=conninfo,
        content_level=_level(config, content_level),
        raw=raw or config.push_raw,
        batch_rows=batch_rows,
    )
    if watch:
        _watch(config, options, watch_loop)
        return
    show = _Progress() if sys.stderr.isatty() else None
    try:
        report = push_once(config, options, show)
    finally:
        if show:
            show.done()
    emit(vars(report), fmt, _pushed_text)


class _Progress:
    """Rows sent so far on one stderr line, rewritten in place (a terminal only)."""

    def __init__(self) -> None:
        self.shown = False

    def __call__(self, sent: int, total: int) -> None:
        click.echo(f"\ragentd push: {sent} of {total} rows sent", nl=False, err=True)
        self.shown = True

    def done(self) -> None:
        if self.shown:
            click.echo("\r\033[K", nl=False, err=True)


def _init_text(result: dict[str, Any]) -> str:
    done = list(result["applied"])
    if result["repaired"]:
        done.append("added back the missing columns " + ", ".join(result["repaired"]))
    return f"Server schema at version {result['version']} ({', '.join(done) or 'nothing to do'})"


def _pushed_text(r: dict[str, Any]) -> str:
    return (
        f"Pushed {r['upserted']} rows and {r['deleted']} deletions to {r['server']} "
        f"in {r['seconds']:.1f} s (machine {r['machine_id']}, user {r['user_name']})"
    )


def _watch(config: Config, options: Any, loop: Any) -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    click.echo("agentd push: watching for changes (Ctrl-C stops)", err=True)
    loop(config, options, stop)
