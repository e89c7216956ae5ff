"""`agentd doctor`'s OpenCode check: agentd's plugin installed, and up to date."""

from __future__ import annotations

from pathlib import Path

from agentd.config import Config
from agentd.doctor import Check
from agentd.installers import InstallError, opencode as installer

__all__ = ["checks", "check_opencode_plugin"]


def checks(
    config: Config, env: dict[str, str], cwd: Path, *, running: bool, unreadable: str | None = None
) -> list[Check]:
    return [check_opencode_plugin(env, cwd)]


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
