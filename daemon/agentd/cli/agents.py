"""The per-agent commands, generated from the agent registry (agents.py):
`agentd install <agent>`, `agentd uninstall <agent>`, `agentd import [<agent>]`, `agentd doctor`.

Each group lists the registered agents and builds an agent's command only when it is asked for
(click's lazy group pattern): the help texts and options come from the agent's role modules, and
importing those is left to the commands that need them (`agentd query` imports none).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from agentd.agents import AGENTS
from agentd.cli import _config, cli
from agentd.output import Rows, emit, output_options

__all__ = ["install", "uninstall", "import_", "doctor"]


class AgentGroup(click.Group):
    """A group with one subcommand per registered agent, made by `make(agent_name)` on demand."""

    def __init__(self, *args: Any, make: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._make = make

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(AGENTS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self._make(name) if name in AGENTS else None


# -- install / uninstall ------------------------------------------------------------------------

_PROJECT_DIR = click.option(
    "--project-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The project for --scope project (default: the current directory); it must exist.",
)
_DRY_RUN = click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")


def _plan_command(name: str, installing: bool) -> click.Command:
    """`agentd install NAME` (or `uninstall NAME`) over the agent's installer module."""
    installer = AGENTS[name].role("installer")

    @_PROJECT_DIR
    @_DRY_RUN
    @click.option(
        "--scope",
        type=click.Choice(["user", "project"]),
        default="user",
        show_default=True,
        help=installer.SCOPE_HELP,
    )
    def command(scope: str, project_dir: Path | None, dry_run: bool, **flags: bool) -> None:
        if project_dir is not None and scope != "project":
            raise click.UsageError("--project-dir goes with --scope project")
        path = installer.target(scope, project_dir, dict(os.environ))
        # An installer's own flags (Claude's --statusline) go to its install, which checks them
        # with everything else before it writes anything.
        if installing:
            plan = installer.install(path, dry_run=dry_run, **flags)
        else:
            plan = installer.uninstall(path, dry_run=dry_run)
        for line in installer.summary(plan, dry_run=dry_run, installing=installing):
            click.echo(line)
        if installing and plan.applied:
            click.echo(installer.AFTER_INSTALL)

    if installing:
        for flag, flag_help in getattr(installer, "INSTALL_FLAGS", {}).items():
            command = click.option(f"--{flag}", is_flag=True, help=flag_help)(command)
    text = installer.INSTALL_HELP if installing else installer.UNINSTALL_HELP
    return click.command(name, help=text)(command)


install = AgentGroup(
    "install",
    make=lambda name: _plan_command(name, installing=True),
    help="""Install agentd's capture into an agent's configuration.

    \b
    Example:
      agentd install claude                       # every project (user settings)
      agentd install claude --scope project       # this project only
    """,
)
uninstall = AgentGroup(
    "uninstall",
    make=lambda name: _plan_command(name, installing=False),
    help="""Remove exactly what `agentd install` added.

    \b
    Example:
      agentd uninstall claude
    """,
)


# -- import --------------------------------------------------------------------------------------


def _seconds(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """A finite number of seconds, 0 to a day (nan, inf and negatives mean nothing here)."""
    if not 0 <= value <= 86400:  # False for nan as well
        raise click.BadParameter(f"{value} is not a number of seconds from 0 to 86400")
    return value


def _paths(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[Path]:
    """The paths given; an empty one is refused (it would read the current directory)."""
    if any(not v for v in values):
        raise click.BadParameter("an empty path: give a directory or a file")
    return [Path(v) for v in values]


_WAIT = click.option(
    "--wait",
    default=30.0,
    show_default=True,
    type=float,
    callback=_seconds,
    metavar="SECONDS",
    help="How long to wait for a daemon that is starting, or another writer to finish.",
)


def _import(
    ctx: click.Context, agent: str, paths: list[Path], fmt: str, wait: float
) -> dict[str, object]:
    """Run one import; print its summary as text (for the table format) and return it as data."""
    from agentd.importers import Progress, run_import

    config = _config(ctx)
    progress = Progress(enabled=fmt == "table" and sys.stderr.isatty())
    summary = run_import(config, agent, paths, progress=progress, wait_s=wait)
    if fmt == "table":
        click.echo(summary.to_text())
    return summary.to_json()


def _import_command(name: str) -> click.Command:
    """`agentd import NAME [--path|--db ...]` over the agent's importer module."""
    importer = AGENTS[name].role("importer")
    flag, help_text = importer.PATH_OPTION

    @output_options(help="Summary format: table is for people, the others for scripts.")
    @_WAIT
    @click.option(flag, "paths", multiple=True, type=click.Path(), callback=_paths, help=help_text)
    @click.pass_context
    def command(ctx: click.Context, paths: list[Path], fmt: str, wait: float) -> None:
        summary = _import(ctx, name, importer.resolve_paths(paths), fmt, wait)
        if fmt != "table":
            emit(summary, fmt)

    return click.command(name, help=importer.IMPORT_HELP)(command)


@cli.group("import", cls=AgentGroup, make=_import_command, invoke_without_command=True)
@output_options(help="Summary format: table is for people, the others for scripts.")
@_WAIT
@click.pass_context
def import_(ctx: click.Context, fmt: str, wait: float) -> None:
    """Backfill from what the agents keep on disk: Claude Code transcripts, OpenCode's database.

    Adds what live capture missed (history from before agentd was installed, failures no hook
    reports) and duplicates nothing: rows have the same ids either way. Incremental: a re-run
    reads only what changed since. It writes through the daemon when one runs, else directly.
    Without a subcommand it imports every agent, from its default places.

    \b
    Example:
      agentd import                 # every agent, from the default places
      agentd import --json | jq .claude.events
    """
    if ctx.invoked_subcommand is not None:
        return
    summaries: dict[str, object] = {}
    for name, agent in AGENTS.items():
        importer = agent.role("importer")
        paths = importer.default_paths()
        if paths:
            summaries[name] = _import(ctx, name, paths, fmt, wait)
        elif fmt == "table":
            click.echo(importer.not_found())
    if fmt != "table":  # one document: {"claude": summary, "opencode": summary}
        emit(summaries, fmt)


cli.add_command(install)
cli.add_command(uninstall)


# -- doctor --------------------------------------------------------------------------------------

_MARKS = {"ok": "ok  ", "warn": "warn", "fail": "FAIL", "skip": "skip"}


@cli.command()
@output_options(help="Format of the checks: table is for people, the others for scripts.")
@click.pass_context
def doctor(ctx: click.Context, fmt: str) -> None:
    """Check the install: daemon, database, and for each agent its capture (hooks, plugin, a test
    event end to end, transcript retention).

    Exits 1 when a check fails (nothing would be captured), 0 otherwise; warnings say what would
    be lost and how to fix it. The end-to-end check stores one raw event of kind AgentdDoctor.

    \b
    Example:
      agentd doctor
      agentd doctor --json | jq '.checks[] | select(.status != "ok")'
    """
    from agentd.doctor import run_checks

    config = _config(ctx)
    checks = run_checks(config, dict(os.environ), Path.cwd())
    failed = any(c.status == "fail" for c in checks)
    if fmt in ("csv", "ndjson"):  # one row a check
        columns = ["name", "status", "detail", "hint"]
        emit(Rows(columns, [[tuple(c.to_json()[k] for k in columns) for c in checks]]), fmt)
    else:
        document = {"ok": not failed, "checks": [c.to_json() for c in checks]}
        emit(document, fmt, lambda _: _checks_text(checks), sort_keys=False)
    if failed:
        ctx.exit(1)


def _checks_text(checks: list[Any]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{_MARKS.get(c.status, c.status)}  {c.name:{width}}  {c.detail}")
        if c.hint and c.status != "ok":
            lines.append(f"      {'':{width}}  -> {c.hint}")
    return "\n".join(lines)
