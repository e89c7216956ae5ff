"""`agentd doctor`'s OpenCode check: agentd's plugin installed, and up to date."""

from __future__ import annotations

from pathlib import Path

from agentd.config import Config
from agentd.doctor import Check
from agentd.installers import InstallError, opencode as installer

__all__ = ["checks", "check_opencode_plugin", "installed_capture", "STARTS_DAEMON"]

STARTS_DAEMON = False  # the plugin spools while the daemon is down; it never starts one


def checks(
    config: Config, env: dict[str, str], cwd: Path, *, running: bool, unreadable: str | None = None
) -> list[Check]:
    return [check_opencode_plugin(env, cwd)]


def installed_capture(env: dict[str, str], cwd: Path) -> str | None:
    """ "OpenCode's plugin" when agentd's plugin file is in the project's or the user's plugins."""
    for scope in ("project", "user"):
        path = installer.target(scope, cwd if scope == "project" else None, env)
        try:
            with path.open(encoding="utf-8", errors="replace") as f:
                if f.read(len(installer.PLUGIN_MARKER)) == installer.PLUGIN_MARKER:
                    return "OpenCode's plugin"
        except OSError:
            continue
    return None


def check_opencode_plugin(env: dict[str, str], cwd: Path) -> Check:
    try:
        current = installer.plugin_source()
    except InstallError:
        current = None
    for scope in ("project", "user"):
        path = installer.target(scope, cwd if scope == "project" else None, env)
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if not text.startswith(installer.PLUGIN_MARKER):
            return Check(
                "opencode plugin",
                "warn",
                f"{path} is not agentd's plugin",
                "move it away, then: agentd install opencode",
            )
        if current is not None and text != current:
            return Check(
                "opencode plugin",
                "warn",
                f"{path} ({scope}) is an older version",
                f"agentd install opencode{' --scope project' if scope == 'project' else ''}",
            )
        return Check("opencode plugin", "ok", f"{path} ({scope}), up to date")
    return Check(
        "opencode plugin",
        "warn",
        "not installed: OpenCode sessions are not captured live",
        "agentd install opencode",
    )
