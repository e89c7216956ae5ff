"""`agentd doctor`: install checks, a test event end to end, Claude Code's transcript retention."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agentd.doctor.claude import check_claude_hooks, check_retention
from conftest import query_db, with_autostart


@pytest.fixture
def user_home(tmp_path) -> Path:
    home = tmp_path / "home"
    (home / "proj").mkdir(parents=True)
    return home


def run_agentd(env: dict[str, str], home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentd", *args],
        env=dict(env, HOME=str(home)),
        cwd=home / "proj",
        capture_output=True,
        text=True,
        timeout=60,
    )


def doctor(env: dict[str, str], home: Path) -> tuple[int, dict[str, dict[str, Any]]]:
    proc = run_agentd(env, home, "doctor", "--json")
    report = json.loads(proc.stdout)
    assert report["ok"] == (proc.returncode == 0)
    return proc.returncode, {c["name"]: c for c in report["checks"]}


def write_settings(home: Path, settings: dict[str, Any]) -> Path:
    path = home / ".claude" / "settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**current, **settings}))
    return path


def test_nothing_installed_and_no_daemon_warns_with_what_to_do(agentd_env, user_home):
    agentd_env = with_autostart(agentd_env)
    code, checks = doctor(agentd_env, user_home)
    assert code == 0  # autostart is on: the hook would start the daemon
    assert checks["daemon"]["status"] == "warn" and "agentd start" in checks["daemon"]["hint"]
    assert checks["end to end"]["status"] == "skip"
    assert checks["claude hooks"]["status"] == "warn"
    assert checks["claude hooks"]["hint"] == "agentd install claude"
    assert checks["opencode plugin"]["hint"] == "agentd install opencode"
    assert checks["claude retention"]["status"] == "warn"
    assert "default: 30 days" in checks["claude retention"]["detail"]
    text = run_agentd(agentd_env, user_home, "doctor")
    assert text.returncode == 0 and "-> agentd install claude" in text.stdout


def test_no_daemon_with_autostart_off_fails(agentd_env, agentd_home, user_home):
    (agentd_home / "config.toml").write_text("autostart = false\n")
    code, checks = doctor(agentd_env, user_home)
    assert code == 1 and checks["daemon"]["status"] == "fail"


def test_a_complete_install_passes_with_a_test_event_end_to_end(daemon, agentd_env, user_home):
    for agent in ("claude", "opencode"):
        installed = run_agentd(agentd_env, user_home, "install", agent)
        assert installed.returncode == 0, installed.stderr
    write_settings(user_home, {"cleanupPeriodDays": 365})
    code, checks = doctor(agentd_env, user_home)
    assert code == 0
    assert {name: c["status"] for name, c in checks.items()} == {
        "database": "ok",
        "costs": "ok",
        "daemon": "ok",
        "end to end": "ok",
        "claude hooks": "ok",
        "claude hooks enabled": "ok",
        "claude sessions heard": "skip",  # no transcripts yet
        "opencode plugin": "ok",
        "claude retention": "ok",
        "spool": "ok",
        "imports": "ok",
    }
    assert "hook -> daemon -> database" in checks["end to end"]["detail"]
    # The test event is raw only: no session, no typed row.
    db = daemon.config.db_path
    (event,) = query_db(db, "SELECT session_id FROM events WHERE kind = 'AgentdDoctor'")
    assert event["session_id"] is None
    assert query_db(db, "SELECT count(*) AS n FROM sessions")[0]["n"] == 0


@pytest.mark.parametrize("where", ["user", "project"])
def test_disable_all_hooks_fails_even_with_the_hooks_installed(agentd_env, user_home, where):
    assert run_agentd(agentd_env, user_home, "install", "claude").returncode == 0
    path = (
        write_settings(user_home, {"disableAllHooks": True})
        if where == "user"
        else user_home / "proj" / ".claude" / "settings.json"
    )
    if where == "project":
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"disableAllHooks": True}))
    code, checks = doctor(agentd_env, user_home)
    assert checks["claude hooks"]["status"] == "ok"  # installed...
    enabled = checks["claude hooks enabled"]  # ...and switched off
    assert enabled["status"] == "fail" and code == 1
    assert f"disableAllHooks is true in {path} ({where})" in enabled["detail"]


def test_disable_all_hooks_turned_back_on_by_a_more_specific_file_passes(agentd_env, user_home):
    """Claude Code reads a setting from the most specific file that has it: a project's local
    settings saying false win over the user's true."""
    assert run_agentd(agentd_env, user_home, "install", "claude").returncode == 0
    write_settings(user_home, {"disableAllHooks": True})
    local = user_home / "proj" / ".claude" / "settings.local.json"
    local.parent.mkdir(parents=True)
    local.write_text(json.dumps({"disableAllHooks": False}))
    _, checks = doctor(agentd_env, user_home)
    assert checks["claude hooks enabled"]["status"] == "ok"
    local.write_text(json.dumps({"disableAllHooks": True}))  # and the other way round
    _, checks = doctor(agentd_env, user_home)
    assert checks["claude hooks enabled"]["status"] == "fail"


def test_sessions_that_write_transcripts_but_send_no_hook_event_are_a_warning(
    daemon, agentd_env, user_home
):
    import time

    assert run_agentd(agentd_env, user_home, "install", "claude").returncode == 0
    project = user_home / ".claude" / "projects" / "-home-proj"
    project.mkdir(parents=True)
    heard, silent = "11111111-0000-4000-8000-000000000001", "22222222-0000-4000-8000-000000000002"
    for sid in (heard, silent):
        (project / f"{sid}.jsonl").write_text("{}\n")
    now = int(time.time() * 1000)
    daemon.ingest("claude", {"session_id": heard, "hook_event_name": "Stop"}, received_at=now)
    _, checks = doctor(agentd_env, user_home)
    check = checks["claude sessions heard"]
    assert check["status"] == "warn", check
    assert "1 of 2 sessions" in check["detail"] and silent in check["detail"]
    daemon.ingest("claude", {"session_id": silent, "hook_event_name": "Stop"}, received_at=now)
    _, checks = doctor(agentd_env, user_home)
    assert checks["claude sessions heard"]["status"] == "ok"


def test_a_hook_command_naming_a_missing_file_fails(daemon, agentd_env, user_home):
    from agentd.installers.claude import EVENTS as CLAUDE_EVENTS, HOOK_MARKER

    command = f"exec /nonexistent/python -I -S /nonexistent/hook.py {HOOK_MARKER}"
    hooks = {e: [{"hooks": [{"type": "command", "command": command}]}] for e in CLAUDE_EVENTS}
    write_settings(user_home, {"hooks": hooks})
    code, checks = doctor(agentd_env, user_home)
    assert code == 1
    assert checks["claude hooks"]["status"] == "fail"
    assert "agentd install claude" in checks["claude hooks"]["hint"]
    assert checks["end to end"]["status"] == "fail"


def test_partial_hooks_and_an_outdated_plugin_are_warnings(agentd_env, user_home):
    assert run_agentd(agentd_env, user_home, "install", "claude").returncode == 0
    settings = json.loads((user_home / ".claude" / "settings.json").read_text())
    del settings["hooks"]["PostToolUseFailure"]
    write_settings(user_home, settings)
    assert run_agentd(agentd_env, user_home, "install", "opencode").returncode == 0
    plugin = user_home / ".config" / "opencode" / "plugins" / "agentd.ts"
    plugin.write_text(plugin.read_text() + "\n// an older copy\n")
    _, checks = doctor(agentd_env, user_home)
    assert checks["claude hooks"]["status"] == "warn"
    assert "missing: PostToolUseFailure" in checks["claude hooks"]["detail"]
    assert checks["opencode plugin"]["status"] == "warn"
    assert "older version" in checks["opencode plugin"]["detail"]


@pytest.mark.parametrize(
    ("user", "project", "status"),
    [
        (None, None, "warn"),  # unset: Claude Code's default, 30 days
        (30, None, "warn"),
        (7, None, "warn"),
        (365, None, "ok"),
        (365, 14, "warn"),  # the project's setting wins over the user's
        (10, 90, "ok"),
    ],
)
def test_retention_warns_at_thirty_days_or_less(tmp_path, user, project, status):
    home, cwd = tmp_path / "home", tmp_path / "proj"
    for directory, value in ((home / ".claude", user), (cwd / ".claude", project)):
        directory.mkdir(parents=True)
        if value is not None:
            (directory / "settings.json").write_text(json.dumps({"cleanupPeriodDays": value}))
    check = check_retention({"HOME": str(home)}, cwd)
    assert check.status == status
    if status == "warn":
        assert "cleanupPeriodDays" in check.hint and "agentd import claude" in check.hint


def test_claude_hooks_in_project_settings_count_too(tmp_path):
    from agentd.installers.claude import install as install_claude

    cwd = tmp_path / "proj"
    install_claude(cwd / ".claude" / "settings.json")
    check = check_claude_hooks({"HOME": str(tmp_path / "home")}, cwd)
    assert check.status == "ok" and "(project)" in check.detail


def test_messages_stored_before_pricing_are_a_warning_until_repriced(
    daemon, agentd_env, agentd_home, user_home
):
    """A database from before migration 0011 holds messages with tokens and no cost_source: the
    reports count them as $0, and doctor says so, with the command that prices them."""
    session = "d0c70r00-aaaa-4bbb-8ccc-000000000001"
    daemon.ingest("claude-transcript", {
        "type": "assistant", "sessionId": session, "uuid": "u1",
        "timestamp": "2026-11-18T10:00:00.000Z", "cwd": "/tmp/proj",
        "message": {"id": "msg_d1", "role": "assistant", "model": "claude-sonnet-4-5",
                    "content": [], "usage": {"input_tokens": 1000, "output_tokens": 100}},
    })  # fmt: skip
    _, checks = doctor(agentd_env, user_home)
    assert checks["costs"]["status"] == "ok"
    conn = sqlite3.connect(agentd_home / "agentd.db")
    with conn:  # as migration 0011 left the messages stored before it
        conn.execute("UPDATE messages SET computed_cost = NULL, cost_source = NULL")
    conn.close()
    _, checks = doctor(agentd_env, user_home)
    assert checks["costs"]["status"] == "warn" and checks["costs"]["hint"] == "agentd reprice"
    assert checks["costs"]["detail"].startswith("1 messages stored before")
    repriced = run_agentd(agentd_env, user_home, "reprice")
    assert repriced.returncode == 0, repriced.stderr
    _, checks = doctor(agentd_env, user_home)
    assert checks["costs"]["status"] == "ok"


# -- capture installs doctor must read without a traceback, and what it says of them -----------


@pytest.mark.parametrize(
    "hooks",
    [
        {"PreToolUse": [{"hooks": 5}]},
        {"PreToolUse": [{"matcher": "x", "hooks": None}]},
        {"PreToolUse": {"x": 1}},
        [1, 2],
    ],
)
def test_hooks_of_the_wrong_shape_are_a_warning_saying_where(agentd_env, user_home, hooks):
    path = write_settings(user_home, {"hooks": hooks})
    proc = run_agentd(agentd_env, user_home, "doctor", "--json")
    assert "Traceback" not in proc.stderr
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["claude hooks"]["status"] == "warn"
    assert str(path) in checks["claude hooks"]["detail"]
    assert "hooks" in checks["claude hooks"]["detail"].split(str(path), 1)[1]


def test_a_malformed_file_beside_a_good_install_is_a_warning(agentd_env, user_home):
    assert run_agentd(agentd_env, user_home, "install", "claude").returncode == 0
    project = user_home / "proj" / ".claude" / "settings.json"
    project.parent.mkdir()
    project.write_text(json.dumps({"hooks": {"Stop": [{"hooks": 5}]}}))
    code, checks = doctor(agentd_env, user_home)
    hooks = checks["claude hooks"]
    assert hooks["status"] == "warn" and "hooks.Stop[0].hooks is not a list" in hooks["detail"]
    assert str(project) in hooks["detail"] and hooks["hint"].startswith("fix that file")


def test_managed_hooks_of_the_wrong_shape_do_not_break_the_hooks_enabled_check(
    tmp_path, monkeypatch
):
    from agentd.doctor.claude import check_hooks_enabled
    from agentd.installers import claude as installer

    managed = tmp_path / "managed-settings.json"
    monkeypatch.setattr(installer, "MANAGED_SETTINGS", managed)  # the real one is in /etc
    for hooks in ([1, 2], {"Stop": [{"hooks": 5}]}, {"Stop": {"x": 1}}, None):
        managed.write_text(json.dumps({"allowManagedHooksOnly": True, "hooks": hooks}))
        check = check_hooks_enabled({"HOME": str(tmp_path)}, tmp_path)
        assert check.status == "fail" and "allowManagedHooksOnly" in check.detail


def test_opencode_only_with_the_daemon_down_fails_and_tells_the_spool_backlog(
    agentd_env, user_home, config
):
    """The plugin never starts the daemon: with no Claude hook to start it, nothing it spools is
    ever stored, though autostart is on."""
    env = with_autostart(agentd_env)
    assert run_agentd(env, user_home, "install", "opencode").returncode == 0
    code, checks = doctor(env, user_home)
    daemon = checks["daemon"]
    assert code == 1 and daemon["status"] == "fail", daemon
    assert "agentd start" in daemon["hint"] and "OpenCode's plugin" in daemon["hint"]
    assert "autostart" not in daemon["hint"] and "the spool is empty" in daemon["detail"]
    config.spool_dir.mkdir(parents=True, exist_ok=True)
    (config.spool_dir / "1-opencode.ndjson").write_text('{"x": 1}\n')
    code, checks = doctor(env, user_home)
    assert code == 1 and "the spool holds 1 files" in checks["daemon"]["detail"]
    # With Claude's hook installed too, the next hook event starts it: a warning.
    assert run_agentd(env, user_home, "install", "claude").returncode == 0
    code, checks = doctor(env, user_home)
    assert code == 0 and checks["daemon"]["status"] == "warn"
    assert checks["daemon"]["hint"].startswith("the Claude Code hook starts it at the next event")


def _newer_schema(db: Path) -> None:
    from agentd.db.store import connect_sync

    conn = connect_sync(db)
    conn.execute("INSERT INTO schema_migrations VALUES (99, '0099_future', 1)")
    conn.close()


@pytest.mark.parametrize(
    "spoil",
    [
        _newer_schema,
        lambda db: db.write_text("not a database at all " * 100),
        lambda db: sqlite3.connect(db).execute("CREATE TABLE x (a)").connection.close(),
    ],
    ids=["newer schema", "not sqlite", "another program's"],
)
def test_a_database_this_agentd_would_refuse_fails_in_the_words_of_the_commands_that_refuse_it(
    agentd_env, agentd_home, user_home, spoil
):
    """As the daemon, prune, vacuum and import refuse it (db/preflight.py), never `ok ... schema
    99`; the checks that read the tables say why they did not run."""
    db = agentd_home / "agentd.db"
    spoil(db)
    (user_home / ".claude" / "projects" / "-home-proj").mkdir(parents=True)
    (user_home / ".claude" / "projects" / "-home-proj" / "s.jsonl").write_text("{}\n")
    before = db.read_bytes()
    vacuum = run_agentd(agentd_env, user_home, "vacuum")
    assert vacuum.returncode == 1 and vacuum.stderr.startswith("Error: the database ")
    code, checks = doctor(agentd_env, user_home)
    assert code == 1
    assert checks["database"]["status"] == "fail"
    assert checks["database"]["detail"] == vacuum.stderr.removeprefix("Error: ").strip()
    for name in ("costs", "claude sessions heard"):
        assert checks[name]["status"] == "skip", checks[name]
        assert checks[name]["detail"] == (
            "not checked: this agentd cannot use the database (see the database check)"
        )
    assert db.read_bytes() == before  # looking changed nothing


def test_an_empty_database_file_is_a_warning_not_a_failure(agentd_env, agentd_home, user_home):
    """A file of 0 bytes is a new database to the daemon (it creates the tables at start)."""
    (agentd_home / "agentd.db").touch()
    _, checks = doctor(with_autostart(agentd_env), user_home)
    assert checks["database"]["status"] == "warn"
    assert checks["database"]["detail"] == f"{agentd_home / 'agentd.db'} is empty"
    assert checks["costs"] == {
        "name": "costs",
        "status": "skip",
        "detail": "not checked: the database has no tables yet",
        "hint": "",
    }
    assert (agentd_home / "agentd.db").stat().st_size == 0
