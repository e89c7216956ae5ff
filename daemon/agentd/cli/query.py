"""`agentd query`: the click command over the read-only engine (query/engine.py) and the
canned reports (query/reports.py)."""

from __future__ import annotations

import os
import re
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from agentd.agents import AGENTS
from agentd.cli import _config, cli, skip_teardown
from agentd.db import preflight
from agentd.output import Rows, emit, output_options, stream, write
from agentd.query.engine import (
    Interrupted,
    QueryError,
    connect_readonly,
    execute,
    limited,
    run_report,
)
from agentd.query.reports import (
    DEFAULT_LIMIT,
    DEFAULT_SINCE,
    FILTERS,
    HISTOGRAM_SQL,
    MAX_SQL,
    PERCENTILE_SQL,
    REPORTS,
    Report,
    closest,
    render,
)
from agentd.query.times import TimeError, parse_time
from agentd.query.usage_reports import BY, PERIODS
from agentd.query.window import WINDOW, window

__all__ = ["query"]

MAX_LIMIT = 2**63 - 1  # SQLite's largest integer


def _time(option: str, value: str, now: float) -> int | None:
    try:
        return parse_time(value, now=now)
    except TimeError as e:
        raise QueryError(f"bad {option}: {e}") from None


def _params(
    *,
    since: str | None,
    until: str | None,
    source: str | None,
    project: str | None,
    session: str | None,
    limit: int | None,
    report: bool,
) -> dict[str, Any]:
    """The named parameters: times as epoch ms; reports get the default window and limit."""
    if report:
        since = DEFAULT_SINCE if since is None else since
        limit = DEFAULT_LIMIT if limit is None else limit
    if project is not None:
        # Absolute, no trailing slash: the reports match `project` and `project/...`. The root
        # directory holds every project: no filter at all, so that the rows of a session with no
        # project count too, and the rollups (whose key for "no project" is "") agree with the
        # raw rows.
        project = os.path.abspath(os.path.expanduser(project)).rstrip("/") or None
    now = time.time()  # one now for both: `--since now --until now` is an empty window
    start = _time("--since", since, now) if since is not None else None
    end = _time("--until", until, now) if until is not None else None
    if start is not None and end is not None and start > end:
        raise click.UsageError(
            f"--since {since} is after --until {until}: the window would end before it starts"
        )
    return {
        "since": start,
        "until": end,
        "source": source,
        "project": project,
        "session": session,
        "limit": limit if limit else -1,  # SQLite: a negative LIMIT means none
    }


def _has_tables(conn: sqlite3.Connection, db_path: Path) -> bool:
    try:
        row = conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'tools'").fetchone()
    except sqlite3.DatabaseError as e:  # a header that passed preflight, a damaged schema page
        raise preflight.unusable(db_path, f"cannot be read ({e})") from None
    return bool(row and row[0])


@cli.command()
@click.argument("report", required=False)
@click.option(
    "--sql", metavar="SQL", help="Run this read-only SQL instead; '-' reads it from stdin."
)
@click.option(
    "--since",
    metavar="WHEN",
    help=f"Only what happened from WHEN on: 24h, 7d, 2026-11-01, all, ... "
    f"(reports: default {DEFAULT_SINCE}).",
)
@click.option("--until", metavar="WHEN", help="Only what happened before WHEN (same forms).")
@click.option("--source", type=click.Choice(list(AGENTS)), help="Only this agent.")
@click.option("--project", metavar="PATH", help="Only sessions in PATH or below it.")
@click.option("--session", metavar="ID", help="Only this session.")
@click.option(
    "--limit",
    # SQLite binds 64-bit integers: a larger N is click's usage error, not an OverflowError.
    type=click.IntRange(min=0, max=MAX_LIMIT),
    metavar="N",
    help=f"At most N rows; 0 for all (reports: default {DEFAULT_LIMIT}).",
)
@click.option(
    "--period",
    type=click.Choice(PERIODS),
    default="day",
    show_default=True,
    help="usage: one row per local day, week (from Monday) or month.",
)
@click.option("--by", type=click.Choice(BY), help="usage: split each period by this.")
@output_options(help="Output format; json, ndjson and csv carry raw values (epoch ms, ms, USD).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Stop a query still running after SECONDS; 0 for no limit "
    "(default: query_timeout_s in config.toml, 60).",
)
@click.option("--list", "list_reports", is_flag=True, help="List the reports, one a line.")
@click.option(
    "--show-sql", is_flag=True, help="Print the report's SQL and bound values; run nothing."
)
@click.pass_context
def query(
    ctx: click.Context,
    report: str | None,
    sql: str | None,
    since: str | None,
    until: str | None,
    source: str | None,
    project: str | None,
    session: str | None,
    limit: int | None,
    period: str,
    by: str | None,
    timeout: float | None,
    fmt: str,
    list_reports: bool,
    show_sql: bool,
) -> None:
    """Answer questions from the captured data: a canned REPORT, or read-only SQL.

    The reports (see --list, and docs/queries.md for their SQL and columns) cover the last 7
    days unless --since says otherwise, and show 20 rows unless --limit does. --sql runs any
    read-only statement; it binds :since, :until (epoch ms), :source, :project, :session and
    :limit from the options (NULL, or -1 for :limit, when not given), so a report's SQL runs
    as it is. The database is opened read-only: writes, ATTACH and PRAGMAs that set something
    fail. A query still running after --timeout seconds is stopped (exit 1). The daemon need
    not run.

    \b
    Example:
      agentd query --list
      agentd query hot-files --since 30d --project .
      agentd query tool-errors --source claude --format json
      agentd query sessions --since 2026-11-01 --until 2026-11-08 --limit 0
      agentd query usage --by model --since 30d
      agentd query blocks --format json
      agentd query --sql "SELECT tool_name, count(*) AS n FROM tools GROUP BY 1 ORDER BY n DESC"
      agentd query --sql - --format csv < my-report.sql
      agentd query --sql "SELECT * FROM events" --timeout 0 --format ndjson > events.ndjson
    """
    skip_teardown()  # it closes its connection and flushes what it wrote: nothing is left
    if report is not None and sql is not None:
        raise click.UsageError("give a REPORT or --sql, not both")
    if show_sql and report is None:
        raise click.UsageError("--show-sql shows a REPORT's SQL")
    try:
        if list_reports or (report is None and sql is None):
            _list(fmt)
            return
        if report in REPORTS:
            _refuse_options_of_others(ctx, REPORTS[report])
        params = _params(
            since=since,
            until=until,
            source=source,
            project=project,
            session=session,
            limit=limit,
            report=report is not None,
        )
        # The usage reports' own parameters (query/usage_reports.py), bound for --sql too. The
        # host name as socket.gethostname() gives it (uname's), without importing socket.
        params.update(period=period, by=by, machine=os.uname().nodename)
        # The window's stretches the rollup-reading reports use (query/window.py), for --sql too.
        params.update(window(params["since"], params["until"]))
        if report is None:
            statement = sys.stdin.read() if sql == "-" else str(sql)
            if not statement.strip():
                raise QueryError("no SQL given")
            config = _config(ctx)
            seconds = config.query_timeout_s if timeout is None else timeout
            _run(config.db_path, fmt, None, statement, params, limit, seconds)
        elif report not in REPORTS:
            hint = closest(report)
            raise QueryError(
                f"unknown report '{report}'."
                + (f" Did you mean '{hint}'?" if hint else "")
                + " `agentd query --list` shows the reports."
            )
        elif show_sql:
            _show_sql(REPORTS[report], params)
        else:
            config = _config(ctx)
            seconds = config.query_timeout_s if timeout is None else timeout
            written = _run(config.db_path, fmt, REPORTS[report], "", params, None, seconds)
            if written == 0 and fmt == "table":
                hint = "" if since else f" in the last {DEFAULT_SINCE} (widen it with --since)"
                click.echo(f"(no rows{hint})", err=True)
    except Interrupted:
        raise click.Abort() from None
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly; later flushes go nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _refuse_options_of_others(ctx: click.Context, report: Report) -> None:
    """An option only other reports take (Report.options: --period, --by) is a usage error."""
    for param in ctx.command.params:
        name = param.name or ""
        takers = [r.name for r in REPORTS.values() if name in r.options]
        given = ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)
        if takers and name not in report.options and given:
            raise click.UsageError(
                f"{param.opts[0]} is not an option of the {report.name} report "
                f"(only {', '.join(takers)} takes it)"
            )


def _list(fmt: str) -> None:
    def text(rows: Rows) -> str:  # one line a report, no header
        width = max(len(name) for name in REPORTS)
        return "".join(f"{r.name:<{width}}  {r.description}\n" for r in REPORTS.values())

    rows = [(r.name, r.description) for r in REPORTS.values()]
    emit(Rows(["report", "description"], [rows]), fmt, text)


def _run(
    db_path: Path,
    fmt: str,
    report: Report | None,
    statement: str,
    params: dict[str, Any],
    limit: int | None,
    timeout_s: float,
) -> int:
    """Run a report, or the user's statement; write its rows; return how many."""
    # A file that is not SQLite, truncated or a directory: the one line prune and vacuum print.
    preflight.check_file(db_path)
    conn = connect_readonly(db_path, timeout_s)
    try:
        if report is None:
            columns, batches = execute(conn, statement, params)
            if limit:
                batches = limited(batches, limit)
            written = write(stream(fmt), fmt, columns, batches)
        else:
            if not _has_tables(conn, db_path):
                raise QueryError(f"{db_path} is not an agentd database (it has no tools table)")
            try:
                columns, batches = run_report(conn, report, params)
            except QueryError as e:
                if "no such" not in str(e):
                    raise
                raise QueryError(
                    f"{e}: the database predates this agentd's schema; `agentd start` upgrades it"
                ) from None
            displays: list[str | None] = [c.display for c in report.columns]
            written = write(stream(fmt), fmt, columns, batches, displays)
        sys.stdout.flush()
        return written
    finally:
        conn.close()


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _show_sql(report: Report, params: dict[str, Any]) -> None:
    statements = [render(report.sql, params)]
    if report.percentiles:
        statements += [render(sql, params) for sql in (PERCENTILE_SQL, HISTOGRAM_SQL, MAX_SQL)]
    # A report's own parameters (usage's :period, :by, :machine) are written in as values, so
    # that the printed SQL runs back through --sql with the filters alone, as docs/queries.md
    # says; the filters and the window's stretches stay parameters, listed above it.
    bound = {*FILTERS, *WINDOW}

    def inline(match: re.Match[str]) -> str:
        name = match.group(1)
        return match.group(0) if name in bound or name not in params else _literal(params[name])

    statements = [re.sub(r":([a-z_]+)\b", inline, s) for s in statements]
    for name in (*FILTERS, *WINDOW):
        if params[name] is not None and (
            name in ("since", "until", "limit")  # the window's stretches derive from the first two
            or any(re.search(f":{name}\\b", s) for s in statements)
        ):
            click.echo(f"-- :{name} = {params[name]!r}")
    if report.percentiles:
        from agentd.query import percentiles  # as engine.run_report: only for these reports

        columns = ", ".join(column for column, _ in report.percentiles)
        click.echo(
            f"-- {columns}: nearest rank over the second statement's durations, or (over "
            f"{percentiles.EXACT_LIMIT} calls)\n-- from the third's buckets, with the fourth "
            f"with :tops (each tool and its top bucket); then the rows are sorted by "
            f"{report.sort_by} (descending) and cut at :limit"
        )
    click.echo(";\n\n".join(statements) + ";")
