"""`agentd install claude` / `uninstall claude` against real settings files."""

import json
import subprocess
import sys

import pytest

from agentd.installers.claude import EVENTS as CLAUDE_EVENTS, HOOK_MARKER
from conftest import load_jsonl, query_db, wait_for

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
    # No PATH, no virtualenv. Autostart off: a late ack must not start a second daemon.
    env = {"AGENTD_HOME": agentd_env["AGENTD_HOME"], "PATH": "", "AGENTD_AUTOSTART": "0"}
    result = subprocess.run(
        ["/bin/sh", "-c", command],
        input=json.dumps(payload).encode(),
        env=env,
        cwd="/",
        capture_output=True,
        timeout=10,
    )
    assert (result.returncode, result.stdout) == (0, b"")
    # Acked, or (the hook's 0.5 s budget missed on a loaded machine) spooled and then drained.
    spool = daemon.config.spool_dir
    assert wait_for(lambda: not (spool.exists() and list(spool.glob("*.ndjson"))), 60)
    assert wait_for(lambda: query_db(daemon.config.db_path, "SELECT 1 FROM tools"), 60)
    assert query_db(daemon.config.db_path, "SELECT count(*) AS n FROM tools") == [{"n": 1}]


# -- the user's file stays the user's (issue: install hygiene) ---------------------------------

ORIGINAL_TEXT = (
    '{\n    "model":   "opus",\n    "statusLine": {"type": "command", "command": "echo café ☕"},\n'
    '    "hooks": {}\n}\n'
)


def _claude_settings(tmp_path, text=ORIGINAL_TEXT, mode=0o600):
    settings = tmp_path / "settings.json"
    settings.write_text(text, encoding="utf-8")
    settings.chmod(mode)
    return settings


def test_install_keeps_the_files_mode_and_the_backups_mode(tmp_path):
    from agentd.installers import claude

    settings = _claude_settings(tmp_path, mode=0o600)
    plan = claude.install(settings)
    assert plan.applied and plan.backup is not None
    assert settings.stat().st_mode & 0o777 == 0o600
    assert plan.backup.stat().st_mode & 0o777 == 0o600
    fresh = tmp_path / "new" / "settings.json"
    claude.install(fresh)
    assert fresh.stat().st_mode & 0o777 == 0o600  # agentd makes no world-readable file


def test_install_and_uninstall_write_through_a_symlinked_settings_file(tmp_path):
    from agentd.installers import claude

    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    real = _claude_settings(dotfiles)
    link = tmp_path / "settings.json.link"
    link.symlink_to(real)
    claude.install(link)
    assert link.is_symlink() and link.resolve() == real
    assert set(json.loads(real.read_text())["hooks"]) == set(CLAUDE_EVENTS)
    claude.uninstall(link)
    assert link.is_symlink() and real.read_text(encoding="utf-8") == ORIGINAL_TEXT


def test_backup_keeps_the_pre_install_original_across_installs(tmp_path):
    from agentd.installers import claude

    settings = _claude_settings(tmp_path)
    backup = claude.install(settings).backup
    # Installed again by another Python (or checkout): the command changes, the backup must not.
    plan = claude.install(settings, command=claude.hook_command(python="/other/python"))
    assert plan.applied and plan.backup is None
    assert backup.read_text(encoding="utf-8") == ORIGINAL_TEXT


def test_uninstall_gives_back_the_users_file_byte_for_byte(tmp_path):
    from agentd.installers import claude

    settings = _claude_settings(tmp_path)
    claude.install(settings)
    assert "\\u" not in settings.read_text(encoding="utf-8")  # non-ASCII kept as written
    claude.uninstall(settings)
    assert settings.read_text(encoding="utf-8") == ORIGINAL_TEXT
    assert not (tmp_path / "settings.json.agentd-backup").exists()


def test_uninstall_after_the_user_changed_the_file_keeps_their_change(tmp_path):
    from agentd.installers import claude

    settings = _claude_settings(tmp_path)
    claude.install(settings)
    edited = json.loads(settings.read_text(encoding="utf-8"))
    edited["theme"] = "dark"
    settings.write_text(json.dumps(edited, indent=2), encoding="utf-8")
    claude.uninstall(settings)
    after = json.loads(settings.read_text(encoding="utf-8"))
    assert after == {**json.loads(ORIGINAL_TEXT), "theme": "dark"}  # `"hooks": {}` kept too
    assert "café ☕" in settings.read_text(encoding="utf-8")


@pytest.mark.parametrize("gone", ["python", "hook"])
def test_installed_command_exits_0_silently_when_agentd_is_gone(tmp_path, gone):
    """`pipx uninstall` without `agentd uninstall claude` first: Claude must not show an error on
    every event."""
    from agentd.installers import claude

    missing = str(tmp_path / "removed" / gone)
    command = (
        claude.hook_command(python=missing)
        if gone == "python"
        else claude.hook_command(hook=missing)
    )
    result = subprocess.run(
        ["/bin/sh", "-c", command],
        input=b'{"hook_event_name":"Stop","session_id":"s"}',
        capture_output=True,
        timeout=10,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
