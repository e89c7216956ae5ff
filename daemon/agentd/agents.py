"""The agents agentd captures: one entry each, naming the module that plays each of its roles.

Everything agent-specific lives in one module per role folder, and this table is the only place
that lists them (the idea of uvicorn's `config.py` name -> import string tables):

| role | folder | what the module provides |
|---|---|---|
| normalizers | `normalizers/` | `@register(source)` functions: an agent's raw payload -> rows |
| installer | `installers/` | `target()`, `install()`, `uninstall()`, `summary()` and the CLI help |
| importer | `importers/` | `default_paths()`, `check_paths()`, `run()` and the CLI help |
| doctor | `doctor/` | `checks()`: is capture installed and working for this agent; `installed_capture()` and `STARTS_DAEMON`: what is installed, and whether it starts the daemon |

The CLI generates `agentd install|uninstall|import <agent>` from this table, `agentd doctor` runs
every agent's checks, and `agentd query --source` offers its names. A new agent (say Codex CLI) is
one module in each role folder plus one entry below; tests/test_agents.py checks that every entry
has every role and appears in every generated command.

Stdlib only and import strings only: `agentd query` reads the names without importing any role.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

__all__ = ["Agent", "AGENTS", "ROLES", "get"]

ROLES = ("installer", "importer", "doctor")


@dataclass(frozen=True)
class Agent:
    name: str  # as typed on the command line: `agentd install <name>`, `--source <name>`
    title: str  # as people know it, for messages
    normalizers: tuple[str, ...]  # modules that register the agent's event sources
    installer: str
    importer: str
    doctor: str

    def role(self, role: str) -> ModuleType:
        """The module that plays `role` (one of ROLES) for this agent."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        return importlib.import_module(getattr(self, role))


AGENTS: dict[str, Agent] = {
    agent.name: agent
    for agent in (
        Agent(
            name="claude",
            title="Claude Code",
            normalizers=(
                "agentd.normalizers.claude_hooks",
                "agentd.normalizers.claude_transcript",
                "agentd.normalizers.claude_statusline",
            ),
            installer="agentd.installers.claude",
            importer="agentd.importers.claude",
            doctor="agentd.doctor.claude",
        ),
        Agent(
            name="opencode",
            title="OpenCode",
            normalizers=("agentd.normalizers.opencode",),
            installer="agentd.installers.opencode",
            importer="agentd.importers.opencode",
            doctor="agentd.doctor.opencode",
        ),
    )
}


def get(name: str) -> Agent:
    try:
        return AGENTS[name]
    except KeyError:
        raise ValueError(f"unknown agent {name!r}; agents are {', '.join(AGENTS)}") from None
