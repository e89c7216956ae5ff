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


# -- refusals change nothing, and say why in one line (adversarial review) ----------------------


def _install(agentd_env, project, *args, command="install"):
    return agentd(
        agentd_env, command, "claude", "--scope", "project", "--project-dir", str(project), *args
    )


def _refused_untouched(result, project, before, *says):
    assert result.returncode != 0 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.stderr
    for words in says:
        assert words in errors[0], errors[0]
    assert "Changed" not in result.stdout and "Backup" not in result.stdout
    assert (project / ".claude" / "settings.json").read_bytes() == before
    assert sorted(p.name for p in (project / ".claude").iterdir()) == ["settings.json"]


@pytest.mark.parametrize(
    ("text", "args", "says"),
    [
        ('{"a": 1}', ["--force"], "--force goes with --statusline"),
        (
            '{"statusLine": {"type": "command", "command": "mine"}}',
            ["--statusline"],
            "already has a statusLine of your own",
        ),
    ],
)
def test_a_refused_flag_writes_nothing_not_even_the_hooks(project, agentd_env, text, args, says):
    (project / ".claude" / "settings.json").write_text(text)
    result = _install(agentd_env, project, *args)
    _refused_untouched(result, project, text.encode(), says)


@pytest.mark.parametrize(
    ("hooks", "where"),
    [
        ({"PreToolUse": [{"hooks": 5}]}, "hooks.PreToolUse[0].hooks is not a list"),
        ({"PreToolUse": [{"matcher": "x", "hooks": None}]}, "hooks.PreToolUse[0].hooks"),
        ({"PreToolUse": [{"matcher": "x"}]}, "hooks.PreToolUse[0].hooks"),
        ({"PreToolUse": {"x": 1}}, "hooks.PreToolUse is not a list"),
        ({"Stop": [5]}, "hooks.Stop[0] is not an object"),
        ({"Stop": [{"hooks": ["echo hi"]}]}, "hooks.Stop[0].hooks[0] is not an object"),
        (None, '"hooks" is not an object'),
    ],
)
@pytest.mark.parametrize("command", ["install", "uninstall"])
def test_hooks_of_a_shape_agentd_cannot_read_are_refused_saying_where(
    project, agentd_env, hooks, where, command
):
    text = json.dumps({"model": "opus", "hooks": hooks})
    (project / ".claude" / "settings.json").write_text(text)
    result = _install(agentd_env, project, command=command)
    _refused_untouched(result, project, text.encode(), where, "settings.json")


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b'{"a": "\xff\xfe"}', "not valid UTF-8"),
        (b'{"a": 1, "a": 2}', 'the key "a" appears twice'),
        (b'{"a": NaN}', "NaN is not JSON"),
        (b'{"a": -Infinity}', "-Infinity is not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_settings_agentd_could_not_write_back_as_they_are_are_refused(
    project, agentd_env, raw, says
):
    (project / ".claude" / "settings.json").write_bytes(raw)
    _refused_untouched(_install(agentd_env, project), project, raw, says)


def test_numbers_and_escapes_are_written_back_as_the_user_wrote_them(project, agentd_env):
    big = "1" + "0" * 5000  # more digits than Python converts by default
    text = (
        '{"x": 1e400, "y": 1.0000000000000001, "z": -0, "w": 1.50, "big": '
        + big
        + ', "s": "\\ud800", "e": "café"}'
    )
    (project / ".claude" / "settings.json").write_text(text, encoding="utf-8")
    assert _install(agentd_env, project).returncode == 0
    written = (project / ".claude" / "settings.json").read_text(encoding="utf-8")
    for kept in ('"x": 1e400', '"y": 1.0000000000000001', '"z": -0,', '"w": 1.50', big):
        assert kept in written
    assert '"s": "\\ud800"' in written and '"e": "café"' in written

    def no_constant(name):
        raise AssertionError(f"{name} written")

    strict = json.loads(written, parse_constant=no_constant, parse_int=str)
    assert set(strict["hooks"]) == set(CLAUDE_EVENTS)
    assert _install(agentd_env, project, command="uninstall").returncode == 0
    assert (project / ".claude" / "settings.json").read_text(encoding="utf-8") == text


def test_force_with_statusline_over_the_users_own_backs_it_up_and_uninstall_gives_it_back(
    project, agentd_env
):
    settings = project / ".claude" / "settings.json"
    text = json.dumps({**USER_SETTINGS, "statusLine": {"type": "command", "command": "mine"}})
    settings.write_text(text)
    result = _install(agentd_env, project, "--statusline", "--force")
    assert result.returncode == 0, result.stderr
    assert "update statusLine" in result.stdout
    assert result.stdout.count("Backup of the previous file") == 2  # hooks' and statusLine's
    assert json.loads(settings.read_text())["statusLine"]["command"].endswith("agentd-statusline")
    result = _install(agentd_env, project, command="uninstall")
    assert result.returncode == 0, result.stderr
    assert "restore your statusLine" in result.stdout
    assert settings.read_text() == text  # byte for byte: hooks and statusLine out in one write
    assert sorted(p.name for p in settings.parent.iterdir()) == ["settings.json"]


def test_uninstall_says_when_it_keeps_the_backup(project, agentd_env):
    settings = project / ".claude" / "settings.json"
    _install(agentd_env, project)
    edited = json.loads(settings.read_text())
    edited["theme"] = "dark"
    settings.write_text(json.dumps(edited))
    result = _install(agentd_env, project, command="uninstall")
    assert result.returncode == 0, result.stderr
    backup = project / ".claude" / "settings.json.agentd-backup"
    assert f"Kept {backup}" in result.stdout and backup.exists()
    assert json.loads(settings.read_text()) == {**USER_SETTINGS, "theme": "dark"}


@pytest.mark.parametrize("agent", ["claude", "opencode"])
def test_a_missing_project_dir_is_refused_and_nothing_is_made(tmp_path, agentd_env, agent):
    missing = tmp_path / "does" / "not" / "exist"
    result = agentd(
        agentd_env, "install", agent, "--scope", "project", "--project-dir", str(missing)
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "does not exist" in result.stderr
    assert not (tmp_path / "does").exists()
