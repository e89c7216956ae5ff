"""The per-agent commands: `agentd install`, `uninstall`, `import` and `doctor`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from agentd.cli import _config, cli

__all__ = ["import_", "doctor", "install", "uninstall"]


def _import(
    ctx: click.Context, kind: str, paths: list[Path], as_json: bool, wait: float
) -> dict[str, object]:
    """Run one import; print its summary as text (unless as_json) and return it as JSON."""
    from agentd.importers import ImportFailed, Progress, run_import

    config = _config(ctx)
    progress = Progress(enabled=not as_json and sys.stderr.isatty())
    try:
        summary = run_import(config, kind, paths, progress=progress, wait_s=wait)
    except ImportFailed as e:
        raise click.ClickException(str(e)) from None
    if not as_json:
        click.echo(summary.to_text())
    return summary.to_json()


def _run(ctx: click.Context, kind: str, paths: list[Path], as_json: bool, wait: float) -> None:
    summary = _import(ctx, kind, paths, as_json, wait)
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))


_JSON = click.option(
    "--json", "as_json", is_flag=True, help="Print the summary as JSON (for scripts)."
)
_WAIT = click.option(
    "--wait",
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for a daemon that is starting, or another writer to finish.",
)


@cli.group("import", invoke_without_command=True)
@_JSON
@_WAIT
@click.pass_context
def import_(ctx: click.Context, as_json: bool, wait: float) -> None:
    """Backfill from what the agents keep on disk: Claude Code transcripts, OpenCode's database.

    Adds what live capture missed (history from before agentd was installed, failures no hook
    reports) and duplicates nothing: rows have the same ids either way. Incremental: a re-run
    reads only what changed since. It writes through the daemon when one runs, else directly.
    Without a subcommand it imports both, from their default places.

    \b
    Example:
      agentd import                 # both, from the default places
      agentd import --json | jq .claude.events
    """
    if ctx.invoked_subcommand is not None:
        return
    from agentd.importers.claude import default_root
    from agentd.importers.opencode import default_databases

    summaries: dict[str, object] = {}
    root = default_root()
    if root.exists():
        summaries["claude"] = _import(ctx, "claude", [root], as_json, wait)
    elif not as_json:
        click.echo(f"No Claude Code transcripts at {root}.")
    databases = default_databases()
    if databases:
        summaries["opencode"] = _import(ctx, "opencode", databases, as_json, wait)
    elif not as_json:
        click.echo("No OpenCode database found.")
    if as_json:  # one document: {"claude": summary, "opencode": summary}
        click.echo(json.dumps(summaries, indent=2, sort_keys=True))


@import_.command("claude")
@click.option(
    "--path",
    "paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A transcript directory or .jsonl file (repeatable; default: ~/.claude/projects, "
    "or $CLAUDE_CONFIG_DIR/projects).",
)
@_JSON
@_WAIT
@click.pass_context
def import_claude(ctx: click.Context, paths: tuple[Path, ...], as_json: bool, wait: float) -> None:
    """Import Claude Code transcripts (sessions, tools, file operations, tokens, cost, compactions).

    Reads every *.jsonl below the directory, subagent transcripts included, each from where the
    last import stopped. A torn last line waits for the next run; corrupt lines and unknown
    record types are skipped and counted in the summary.

    \b
    Example:
      agentd import claude
      agentd import claude --path ~/backup/claude-projects --json
    """
    from agentd.importers.claude import default_root

    roots = [p.expanduser() for p in paths] or [default_root()]
    for root in roots:
        if not root.exists():
            raise click.ClickException(f"{root} does not exist")
    _run(ctx, "claude", [r.absolute() for r in roots], as_json, wait)


@import_.command("opencode")
@click.option(
    "--db",
    "databases",
    multiple=True,
    type=click.Path(path_type=Path),
    help="An opencode.db (repeatable; default: $OPENCODE_DB, else opencode.db and "
    "opencode-<channel>.db in ~/.local/share/opencode).",
)
@_JSON
@_WAIT
@click.pass_context
def import_opencode(
    ctx: click.Context, databases: tuple[Path, ...], as_json: bool, wait: float
) -> None:
    """Import OpenCode's database (sessions, messages with tokens and cost, tool calls, compactions).

    Opens it read-only (OpenCode may keep running) and reads only rows changed since the last
    import.

    \b
    Example:
      agentd import opencode
      agentd import opencode --db ~/.local/share/opencode/opencode-beta.db
    """
    from agentd.importers.opencode import default_databases

    dbs = [p.expanduser() for p in databases] or default_databases()
    if not dbs:
        raise click.ClickException(
            "no OpenCode database found (looked in ~/.local/share/opencode); give one with --db"
        )
    for db in dbs:
        if not db.is_file():
            raise click.ClickException(f"{db} does not exist")
    _run(ctx, "opencode", [d.absolute() for d in dbs], as_json, wait)


_MARKS = {"ok": "ok  ", "warn": "warn", "fail": "FAIL", "skip": "skip"}


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Check the install: hooks, plugin, daemon, a test event end to end, transcript retention.

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
    if as_json:
        click.echo(
            json.dumps({"ok": not failed, "checks": [c.to_json() for c in checks]}, indent=2)
        )
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            click.echo(f"{_MARKS.get(c.status, c.status)}  {c.name:{width}}  {c.detail}")
            if c.hint and c.status != "ok":
                click.echo(f"      {'':{width}}  -> {c.hint}")
    if failed:
        ctx.exit(1)


# -- install / uninstall ----------------------------------------------------------------------

_SCOPE = click.option(
    "--scope",
    type=click.Choice(["user", "project"]),
    default="user",
    show_default=True,
    help="user: ~/.claude/settings.json (all projects); project: DIR/.claude/settings.json.",
)
_PROJECT_DIR = click.option(
    "--project-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The project for --scope project (default: the current directory).",
)
_DRY_RUN = click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")


def _print_plan(plan: Any, done: str, dry_run: bool) -> None:
    from agentd.installers import Plan

    assert isinstance(plan, Plan)
    if not plan.changed:
        click.echo(f"Nothing to change in {plan.path}: {done} already.")
        return
    verb = "Would change" if dry_run else "Changed"
    click.echo(f"{verb} {plan.path}: {len(plan.changes)} hook entries")
    for change in plan.changes:
        click.echo(f"  {change}")
    if plan.backup:
        click.echo(f"Backup of the previous file: {plan.backup}")


@cli.group()
def install() -> None:
    """Install agentd's capture into an agent's configuration.

    \b
    Example:
      agentd install claude                       # every project (user settings)
      agentd install claude --scope project       # this project only
    """


@cli.group()
def uninstall() -> None:
    """Remove exactly what `agentd install` added.

    \b
    Example:
      agentd uninstall claude
    """


def _plan(action: Any, where: Any, scope: str, project_dir: Path | None, dry_run: bool) -> Any:
    """Run an install/uninstall `action` on the file `where(scope, project_dir, env)` names."""
    from agentd.installers import InstallError

    if project_dir is not None and scope != "project":
        raise click.UsageError("--project-dir goes with --scope project")
    try:
        return action(where(scope, project_dir, dict(os.environ)), dry_run=dry_run)
    except InstallError as e:
        raise click.ClickException(str(e)) from None


@install.command("claude")
@_SCOPE
@_PROJECT_DIR
@_DRY_RUN
def install_claude_command(scope: str, project_dir: Path | None, dry_run: bool) -> None:
    """Add agentd's hook to every Claude Code hook event.

    Merges into settings.json: your other hooks and keys stay, the previous file is kept as
    settings.json.agentd-backup, and running it again changes nothing. The hook command names
    this Python and agentd's hook by absolute path, so it works from any directory without PATH
    or an activated virtualenv.

    \b
    Example:
      agentd install claude --dry-run
      agentd install claude --scope project --project-dir ~/src/myapp
    """
    from agentd.installers import claude_settings_path, install_claude

    plan = _plan(install_claude, claude_settings_path, scope, project_dir, dry_run)
    _print_plan(plan, "agentd's hooks are installed", dry_run)
    if plan.applied:
        click.echo("Claude Code picks the hooks up by itself; check with: agentd status")


@uninstall.command("claude")
@_SCOPE
@_PROJECT_DIR
@_DRY_RUN
def uninstall_claude_command(scope: str, project_dir: Path | None, dry_run: bool) -> None:
    """Remove agentd's hooks from Claude Code's settings.json (nothing else).

    \b
    Example:
      agentd uninstall claude --scope project
    """
    from agentd.installers import claude_settings_path, uninstall_claude

    plan = _plan(uninstall_claude, claude_settings_path, scope, project_dir, dry_run)
    _print_plan(plan, "no agentd hooks are present", dry_run)


_OPENCODE_SCOPE = click.option(
    "--scope",
    type=click.Choice(["user", "project"]),
    default="user",
    show_default=True,
    help="user: ~/.config/opencode/plugins/ (all projects); project: DIR/.opencode/plugins/.",
)


def _print_file_plan(plan: Any, state: str, dry_run: bool) -> None:
    if not plan.changed:
        click.echo(f"Nothing to change: {state} ({plan.path}).")
        return
    past = {"add": "Added", "update": "Updated", "remove": "Removed"}
    for change in plan.changes:
        verb, what = change.split(" ", 1)
        click.echo(f"{'Would ' + verb if dry_run else past.get(verb, verb)} {what}: {plan.path}")


@install.command("opencode")
@_OPENCODE_SCOPE
@_PROJECT_DIR
@_DRY_RUN
def install_opencode_command(scope: str, project_dir: Path | None, dry_run: bool) -> None:
    """Add agentd's plugin to OpenCode (a file in OpenCode's plugins directory).

    OpenCode loads every plugins/*.ts of its config directories by itself: no opencode.json
    entry, no npm install. Running it again changes nothing, or updates an older copy; a file of
    that name that is not agentd's is left alone.

    \b
    Example:
      agentd install opencode --dry-run
      agentd install opencode --scope project --project-dir ~/src/myapp
    """
    from agentd.installers import install_opencode, opencode_plugin_path

    plan = _plan(install_opencode, opencode_plugin_path, scope, project_dir, dry_run)
    _print_file_plan(plan, "agentd's plugin is installed and up to date", dry_run)
    if plan.applied:
        click.echo("OpenCode loads it when it next starts; its events then count in: agentd status")


@uninstall.command("opencode")
@_OPENCODE_SCOPE
@_PROJECT_DIR
@_DRY_RUN
def uninstall_opencode_command(scope: str, project_dir: Path | None, dry_run: bool) -> None:
    """Remove agentd's plugin file from OpenCode's plugins directory (only if it is agentd's).

    \b
    Example:
      agentd uninstall opencode --scope project
    """
    from agentd.installers import opencode_plugin_path, uninstall_opencode

    plan = _plan(uninstall_opencode, opencode_plugin_path, scope, project_dir, dry_run)
    _print_file_plan(plan, "agentd's plugin is not installed", dry_run)
