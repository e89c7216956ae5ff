"""The agent registry (agents.py): every agent has every role, and every generated command has
every agent. A new agent that misses a role or a command fails here, not in a user's shell."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import click
import pytest

from agentd import agents, normalizers
from agentd.agents import AGENTS, ROLES
from agentd.cli import cli

# What each role module must provide (agents.py's docstring lists the same).
ROLE_API = {
    "installer": {
        "callables": ("target", "install", "uninstall", "summary"),
        "texts": ("SCOPE_HELP", "INSTALL_HELP", "UNINSTALL_HELP", "AFTER_INSTALL"),
    },
    "importer": {
        "callables": ("default_paths", "not_found", "resolve_paths", "run"),
        "texts": ("WHAT", "IMPORT_HELP", "SOURCE"),
    },
    "doctor": {"callables": ("checks", "installed_capture"), "texts": ()},
}


def test_roles_are_the_ones_the_registry_knows():
    assert set(ROLE_API) == set(ROLES)


@pytest.mark.parametrize("name", list(AGENTS))
def test_every_agent_has_every_role(name):
    agent = AGENTS[name]
    for role, api in ROLE_API.items():
        module = agent.role(role)
        assert module.__name__ == getattr(agent, role)
        assert (
            module.__name__.split(".")[1]
            == {
                "installer": "installers",
                "importer": "importers",
                "doctor": "doctor",
            }[role]
        ), f"{name}'s {role} lives outside its role folder"
        for attr in api["callables"]:
            assert callable(getattr(module, attr, None)), f"{module.__name__}.{attr}"
        for attr in api["texts"]:
            value = getattr(module, attr, None)
            assert isinstance(value, str) and value, f"{module.__name__}.{attr}"
    assert "Example:" in agent.role("installer").INSTALL_HELP
    assert "Example:" in agent.role("importer").IMPORT_HELP
    assert inspect.iscoroutinefunction(agent.role("importer").run)


@pytest.mark.parametrize("name", list(AGENTS))
def test_every_agent_registers_its_normalizers(name):
    agent = AGENTS[name]
    assert agent.normalizers, f"{name} has no normalizer"
    for module_name in agent.normalizers:
        assert module_name.startswith("agentd.normalizers."), module_name
        importlib.import_module(module_name)
        registered = [
            s for s, fn in normalizers.NORMALIZERS.items() if fn.__module__ == module_name
        ]
        assert registered, f"{module_name} registers no source"
    # The importer's events are read by one of the agent's own normalizers.
    source = agent.role("importer").SOURCE
    assert normalizers.NORMALIZERS[source].__module__ in agent.normalizers


def _subcommands(group_path: list[str]) -> list[str]:
    command: click.Command = cli
    ctx = click.Context(cli)
    for name in group_path:
        assert isinstance(command, click.Group)
        command = command.get_command(ctx, name)
        ctx = click.Context(command, parent=ctx)
    assert isinstance(command, click.Group)
    return command.list_commands(ctx)


@pytest.mark.parametrize("group", ["install", "uninstall", "import"])
def test_every_agent_appears_in_every_generated_command(group):
    assert _subcommands([group]) == list(AGENTS)
    ctx = click.Context(cli)
    generated = cli.get_command(ctx, group)
    for name in AGENTS:
        command = generated.get_command(click.Context(generated, parent=ctx), name)
        assert command is not None and command.name == name
        assert "Example:" in (command.help or "")


def test_every_agent_is_a_query_source_choice():
    query = cli.get_command(click.Context(cli), "query")
    source = next(p for p in query.params if p.name == "source")
    assert list(source.type.choices) == list(AGENTS)


def test_doctor_runs_every_agents_checks(config, tmp_path):
    from agentd.doctor import run_checks

    env = {"HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    names = {check.name for check in run_checks(config, env, tmp_path)}
    for agent in AGENTS.values():
        own = agent.role("doctor").checks(config, env, tmp_path, running=False)
        assert own, f"{agent.name} has no doctor check"
        assert {check.name for check in own} <= names


def test_an_unknown_agent_or_role_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown agent 'codex'; agents are claude, opencode"):
        agents.get("codex")
    with pytest.raises(ValueError, match="unknown role"):
        AGENTS["claude"].role("normalizer")


def test_agentd_query_imports_no_role_module():
    """`agentd query` lists sources from the registry without importing installers or importers."""
    code = (
        "import sys; from agentd.cli import query; "
        "print(sorted(m for m in sys.modules if m.startswith(('agentd.installers', "
        "'agentd.importers', 'agentd.doctor', 'agentd.normalizers'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
