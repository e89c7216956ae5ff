"""`agentd install claude` / `uninstall claude` against real settings files."""

import json
import subprocess
import sys

import pytest

from agentd.installers.claude import EVENTS as CLAUDE_EVENTS, HOOK_MARKER
from conftest import load_jsonl, query_db

USER_SETTINGS = {
    "model": "opus",
    "permissions": {"allow": ["Bash(ls)"]},
    "hooks": {
        "PreToolUse": [
            {"matcher": "Bash", "hooks": [{"type": "command", "command": "my-guard.sh"}]}
        ],
        "Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}],
    },
}


def agentd(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "agentd", *args], env=env, capture_output=True, text=True, timeout=30
    )


@pytest.fixture
def project(tmp_path):
    (tmp_path / ".claude").mkdir()
    settings = tmp_path / ".claude" / "settings.json"
    settings.write_text(json.dumps(USER_SETTINGS, indent=2))
    return tmp_path


def settings_of(project):
    return json.loads((project / ".claude" / "settings.json").read_text())


def test_install_merges_keeps_the_users_hooks_and_backs_up(project, agentd_env):
    result = agentd(
        agentd_env, "install", "claude", "--scope", "project", "--project-dir", str(project)
    )
    assert result.returncode == 0, result.stderr
    assert f"{len(CLAUDE_EVENTS)} hook entries" in result.stdout
    settings = settings_of(project)
    assert settings["model"] == "opus" and settings["permissions"] == USER_SETTINGS["permissions"]
    assert set(settings["hooks"]) == set(CLAUDE_EVENTS)
    pre = settings["hooks"]["PreToolUse"]
    assert pre[0] == USER_SETTINGS["hooks"]["PreToolUse"][0]  # the user's own hook, untouched
    assert pre[1]["matcher"] == "*" and pre[1]["hooks"][0]["command"].endswith(HOOK_MARKER)
    assert "matcher" not in settings["hooks"]["Stop"][1]  # Stop takes no matcher
    backup = project / ".claude" / "settings.json.agentd-backup"
    assert json.loads(backup.read_text()) == USER_SETTINGS


def test_second_install_changes_nothing(project, agentd_env):
    agentd(agentd_env, "install", "claude", "--scope", "project", "--project-dir", str(project))
    before = (project / ".claude" / "settings.json").read_bytes()
    again = agentd(
        agentd_env, "install", "claude", "--scope", "project", "--project-dir", str(project)
    )
    assert again.returncode == 0 and "Nothing to change" in again.stdout
    assert (project / ".claude" / "settings.json").read_bytes() == before


def test_uninstall_removes_exactly_what_install_added(project, agentd_env):
    agentd(agentd_env, "install", "claude", "--scope", "project", "--project-dir", str(project))
    result = agentd(
        agentd_env, "uninstall", "claude", "--scope", "project", "--project-dir", str(project)
    )
    assert result.returncode == 0, result.stderr
    assert settings_of(project) == USER_SETTINGS
    again = agentd(
        agentd_env, "uninstall", "claude", "--scope", "project", "--project-dir", str(project)
    )
    assert "Nothing to change" in again.stdout


def test_dry_run_writes_nothing(project, agentd_env):
    before = (project / ".claude" / "settings.json").read_bytes()
    result = agentd(
        agentd_env,
        "install",
        "claude",
        "--scope",
        "project",
        "--project-dir",
        str(project),
        "--dry-run",
    )
    assert result.returncode == 0 and "Would change" in result.stdout
    assert (project / ".claude" / "settings.json").read_bytes() == before
    assert not (project / ".claude" / "settings.json.agentd-backup").exists()


def test_user_scope_writes_home_settings_and_creates_them(tmp_path, agentd_env):
    env = dict(agentd_env, HOME=str(tmp_path))
    env.pop("CLAUDE_CONFIG_DIR", None)
    assert agentd(env, "install", "claude").returncode == 0
    assert set(json.loads((tmp_path / ".claude" / "settings.json").read_text())["hooks"]) == set(
        CLAUDE_EVENTS
    )
    env["CLAUDE_CONFIG_DIR"] = str(tmp_path / "cfg")
    assert agentd(env, "install", "claude").returncode == 0
    assert (tmp_path / "cfg" / "settings.json").exists()


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"hooks": []}'])
def test_unreadable_settings_are_refused_untouched(project, agentd_env, text):
    (project / ".claude" / "settings.json").write_text(text)
    result = agentd(
        agentd_env, "install", "claude", "--scope", "project", "--project-dir", str(project)
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "settings.json" in result.stderr
    assert (project / ".claude" / "settings.json").read_text() == text


def test_project_dir_needs_project_scope(project, agentd_env):
    result = agentd(agentd_env, "install", "claude", "--project-dir", str(project))
    assert result.returncode == 2 and "--scope project" in result.stderr


def test_installed_command_works_from_any_cwd_without_path(project, daemon, agentd_env):
    agentd(agentd_env, "install", "claude", "--scope", "project", "--project-dir", str(project))
    command = settings_of(project)["hooks"]["PostToolUse"][0]["hooks"][0]["command"]
    payload = next(
        r["stdin"]
        for r in load_jsonl("claude_hooks_examples.jsonl")
        if r["hook_event_name"] == "PostToolUse"
    )
    env = {"AGENTD_HOME": agentd_env["AGENTD_HOME"], "PATH": ""}  # no PATH, no virtualenv
    result = subprocess.run(
        ["/bin/sh", "-c", command],
        input=json.dumps(payload).encode(),
        env=env,
        cwd="/",
        capture_output=True,
        timeout=10,
    )
    assert (result.returncode, result.stdout) == (0, b"")
    assert query_db(daemon.config.db_path, "SELECT count(*) AS n FROM tools") == [{"n": 1}]
