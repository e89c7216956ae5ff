"""Installing agentd into OpenCode: its plugin file in a directory OpenCode loads plugins from.

No opencode.json entry and no npm install: OpenCode loads every `plugins/*.ts` of its config
directories by itself. A file of that name that is not agentd's is never touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from agentd.installers import InstallError, Plan, files

__all__ = [
    "PLUGIN_MARKER",
    "PLUGIN_FILE",
    "target",
    "plugin_source",
    "install",
    "uninstall",
    "summary",
]

SCOPE_HELP = "user: ~/.config/opencode/plugins/ (all projects); project: DIR/.opencode/plugins/."
INSTALL_HELP = """Add agentd's plugin to OpenCode (a file in OpenCode's plugins directory).

    OpenCode loads every plugins/*.ts of its config directories by itself: no opencode.json
    entry, no npm install. Running it again changes nothing, or updates an older copy; a file of
    that name that is not agentd's is left alone.

    \b
    Example:
      agentd install opencode --dry-run
      agentd install opencode --scope project --project-dir ~/src/myapp
    """
UNINSTALL_HELP = """Remove agentd's plugin file from OpenCode's plugins directory (only if it is agentd's).

    \b
    Example:
      agentd uninstall opencode --scope project
    """
AFTER_INSTALL = "OpenCode loads it when it next starts; its events then count in: agentd status"

# The plugin file's first line starts with this: how uninstall knows the file is agentd's.
PLUGIN_MARKER = "// agentd-opencode-plugin"
PLUGIN_FILE = "agentd.ts"


def target(scope: str, project_dir: Path | None, env: Mapping[str, str]) -> Path:
    """Where OpenCode (1.18) finds the plugin without any config entry: `{plugin,plugins}/*.ts` in
    each config dir (OpenCode's plugins documentation): `~/.config/opencode` ($XDG_CONFIG_HOME honoured), or the
    project's `.opencode`."""
    if scope == "project":
        base = (project_dir or Path.cwd()).resolve() / ".opencode"
    else:
        config_home = env.get("XDG_CONFIG_HOME")
        root = (
            Path(config_home).expanduser()
            if config_home
            else Path(env.get("HOME") or Path.home()) / ".config"
        )
        base = root / "opencode"
    return base / "plugins" / PLUGIN_FILE


def plugin_source() -> str:
    """The plugin's text: shipped in the wheel as agentd/opencode_plugin/agentd.ts; an editable
    install (a checkout) reads opencode-plugin/src/agentd.ts."""
    from importlib.resources import files

    shipped = files("agentd").joinpath("opencode_plugin", PLUGIN_FILE)
    if shipped.is_file():
        return shipped.read_text(encoding="utf-8")
    checkout = Path(__file__).resolve().parents[3] / "opencode-plugin" / "src"
    checkout /= PLUGIN_FILE
    try:
        return checkout.read_text(encoding="utf-8")
    except OSError:
        raise InstallError(
            "the OpenCode plugin file is missing from this agentd installation "
            f"(looked for agentd/opencode_plugin/{PLUGIN_FILE} and {checkout})"
        ) from None


def _is_our_plugin(text: str) -> bool:
    return text.startswith(PLUGIN_MARKER)


def _read_plugin(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise InstallError(f"{path} is a directory; move it away, then run again") from None
    except OSError as e:
        raise InstallError(f"cannot read {path}: {e.strerror}") from None


def install(path: Path, *, dry_run: bool = False, source: str | None = None) -> Plan:
    """Write the plugin file at `path`, or update an older copy of it; same content: no change.
    A file of that name that is not agentd's is left alone (InstallError)."""
    text = plugin_source() if source is None else source
    current = _read_plugin(path)
    plan = Plan(path)
    if current == text:
        return plan
    if current is not None and not _is_our_plugin(current):
        raise InstallError(
            f"{path} exists and is not agentd's plugin (its first line is not "
            f"{PLUGIN_MARKER!r}); move it away, then run again"
        )
    plan.changes.append(f"{'update' if current is not None else 'add'} agentd's plugin")
    if not dry_run:
        files.make_parents(path)  # recorded: uninstall removes them again if left empty
        files.replace(path, text.encode("utf-8"), new_mode=0o644)  # code, no secret in it
        plan.applied = True
    return plan


def uninstall(path: Path, *, dry_run: bool = False) -> Plan:
    """Remove the plugin file at `path` if it is agentd's (its marker line); nothing else."""
    current = _read_plugin(path)
    plan = Plan(path)
    if current is None:
        return plan
    if not _is_our_plugin(current):
        raise InstallError(
            f"{path} is not agentd's plugin (its first line is not {PLUGIN_MARKER!r}); "
            "left as it is"
        )
    plan.changes.append("remove agentd's plugin")
    if not dry_run:
        try:
            path.unlink()  # a symlink (dotfiles): the link goes, its target stays
        except FileNotFoundError:
            pass
        except OSError as e:
            raise InstallError(f"cannot remove {path}: {e.strerror}") from None
        plan.notes += [
            f"Removed {d} (agentd had made it)" for d in files.remove_created_parents(path)
        ]
        plan.applied = True
    return plan


def summary(plan: Plan, *, dry_run: bool, installing: bool) -> list[str]:
    """What the CLI prints about a plan: one line per file added, updated or removed."""
    if not plan.changed:
        state = (
            "agentd's plugin is installed and up to date"
            if installing
            else "agentd's plugin is not installed"
        )
        return [f"Nothing to change: {state} ({plan.path})."]
    past = {"add": "Added", "update": "Updated", "remove": "Removed"}
    lines = []
    for change in plan.changes:
        verb, what = change.split(" ", 1)
        lines.append(f"{'Would ' + verb if dry_run else past.get(verb, verb)} {what}: {plan.path}")
    return lines + plan.notes
