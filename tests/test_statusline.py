"""`agentd statusline` as Claude Code runs it: the installed command through `sh -c`, real
daemon, real database; daemon down (spool, then drained); bad input; `install --statusline`."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentd.installers.claude import statusline_command
from agentd.statusfigures import db_stamp
from conftest import Daemon, load_jsonl, query_db, wait_for

SESSION = "5747u5-11ne-4000-8000-000000000001"


def sample(**over) -> dict:
    now = int(time.time())
    base = {
        "session_id": SESSION,
        "transcript_path": "/tmp/none.jsonl",
        "cwd": "/tmp/proj",
        "model": {"id": "claude-sonnet-4-5", "display_name": "Sonnet 4.5"},
        "workspace": {"current_dir": "/tmp/proj", "project_dir": "/tmp/proj"},
        "cost": {"total_cost_usd": 1.234, "total_duration_ms": 5000},
        "context_window": {"used_percentage": 41.6, "context_window_size": 200000},
        "rate_limits": {
            "five_hour": {"used_percentage": 37, "resets_at": now + 2 * 3600 + 5 * 60 + 30},
            "seven_day": {"used_percentage": 12, "resets_at": now + 5 * 86400},
        },
    }
    base.update(over)
    return base


def run(env: dict[str, str], stdin: bytes | str) -> subprocess.CompletedProcess[str]:
    data = stdin if isinstance(stdin, str) else stdin.decode()
    return subprocess.run(
        ["sh", "-c", statusline_command()], input=data, env=env, capture_output=True,
        text=True, timeout=30,
    )  # fmt: skip


def test_line_and_sample_with_the_daemon_up(daemon, agentd_env, agentd_home):
    # Today's cost and the session's failed tool calls come from the database.
    _figures_in_the_database(daemon)
    sent = sample()  # once: its reset times follow the clock
    result = run(agentd_env, json.dumps(sent))
    assert result.returncode == 0 and result.stderr == ""
    # $0.30 input + $0.15 output today
    assert result.stdout == (
        "Sonnet 4.5 | ctx 42% | $1.23 session | $0.45 today | 5h 37% (resets in 2h05m)"
        " | 1 failed tool call\n"
    )
    db = agentd_home / "agentd.db"
    # Stored as a notification would be (the line does not wait for the commit): moments later.
    assert wait_for(lambda: query_db(db, "SELECT 1 FROM statusline_samples"))
    (row,) = query_db(db, "SELECT * FROM statusline_samples")
    assert row["session_id"] == SESSION and row["model"] == "claude-sonnet-4-5"
    assert (row["five_hour_used_pct"], row["seven_day_used_pct"]) == (37, 12)
    assert row["five_hour_resets_at"] == sent["rate_limits"]["five_hour"]["resets_at"] * 1000
    assert (row["context_used_pct"], row["total_cost_usd"]) == (41.6, 1.234)
    (session,) = query_db(db, "SELECT source, project_path FROM sessions")
    assert session == {"source": "claude", "project_path": "/tmp/proj"}


def _figures_in_the_database(daemon: Daemon) -> None:
    """A failed tool call of SESSION and a response priced at $0.45, today."""
    failure = next(
        r["stdin"] for r in load_jsonl("claude_hooks_examples.jsonl")
        if r["hook_event_name"] == "PostToolUseFailure"
    )  # fmt: skip
    daemon.ingest("claude", {**failure, "session_id": SESSION})
    # "Today" starts at the local midnight the line takes when it runs: seeded in the last minutes
    # of a day, the response could be yesterday's by then. Such minutes are waited out (rarely).
    assert wait_for(lambda: time.localtime()[3:5] < (23, 58), 180)
    at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    daemon.ingest("claude-transcript", {
        "type": "assistant", "sessionId": SESSION, "uuid": "u1", "timestamp": at,
        "message": {"id": "msg_s1", "role": "assistant", "model": "claude-sonnet-4-5",
                    "content": [], "usage": {"input_tokens": 100000, "output_tokens": 10000}},
    })  # fmt: skip


def _midnight_ms(now: float) -> int:
    local = time.localtime(now)
    return int(now - local.tm_hour * 3600 - local.tm_min * 60 - local.tm_sec) * 1000


def test_the_statusline_method_stores_the_sample_and_answers_the_figures(daemon, agentd_home):
    _figures_in_the_database(daemon)
    db = agentd_home / "agentd.db"
    now = time.time()
    params = {"source": "claude_statusline", "payload": sample(), "received_at": int(now * 1000)}
    result = daemon.call("statusline", {**params, "day_start": _midnight_ms(now)})
    assert result == {"accepted": True, "today_cost": pytest.approx(0.45), "failures": 1}
    # Stored as `ingest` stores it, not waited for; a replay is stored once.
    samples = "SELECT count(*) AS n FROM statusline_samples"
    assert wait_for(lambda: query_db(db, samples) == [{"n": 1}])
    assert daemon.call("statusline", {**params, "day_start": _midnight_ms(now)}) == result
    daemon.call("ingest", {"source": "claude", "payload": {"session_id": "x"}})  # after it
    assert query_db(db, "SELECT count(*) AS n FROM events") == [{"n": 4}]
    # "Today" is the client's: a day that starts after the response has no cost yet; a
    # session without failures has 0; a sample without a session, no failure count.
    later = {**params, "day_start": _midnight_ms(now) + 2 * 86_400_000}
    assert daemon.call("statusline", later) == {"accepted": True, "failures": 1}
    other = {**params, "payload": sample(session_id="another"), "day_start": _midnight_ms(now)}
    assert daemon.call("statusline", other)["failures"] == 0
    alone = {**params, "payload": {"model": {"id": "x"}}, "day_start": _midnight_ms(now)}
    assert "failures" not in daemon.call("statusline", alone)


def test_the_statusline_method_refuses_bad_params(daemon):
    from agentd.client import RemoteError

    with pytest.raises(RemoteError) as missing:
        daemon.call("statusline", {"source": "claude_statusline", "payload": sample()})
    assert missing.value.code == -32602 and "day_start" in str(missing.value)
    with pytest.raises(RemoteError) as unknown:
        daemon.call("statusline", {"source": "claude_statusline", "payload": sample(),
                                   "day_start": 0, "extra": 1})  # fmt: skip
    assert unknown.value.code == -32602


def test_daemon_up_or_down_the_line_shows_the_same_figures(daemon, agentd_env, agentd_home):
    """Up, the figures come back with the sample's answer; down, as the daemon kept them when it
    stopped (the database unchanged since)."""
    _figures_in_the_database(daemon)
    sent = json.dumps(sample())
    up = run(agentd_env, sent)
    daemon.stop()
    spool = agentd_home / "spool"
    # The up run may have spooled too (its ack budget missed on a loaded machine): count the down's.
    before = set(spool.glob("claude_statusline-*.ndjson"))
    down = run({**agentd_env, "AGENTD_AUTOSTART": "0"}, sent)
    assert up.returncode == down.returncode == 0 and up.stderr == down.stderr == ""
    assert "$0.45 today" in up.stdout and "| 1 failed tool call" in up.stdout
    assert down.stdout == up.stdout
    assert len(set(spool.glob("claude_statusline-*.ndjson")) - before) == 1


def test_daemon_down_the_kept_figures_are_shown_while_the_database_is_unchanged(
    daemon, agentd_env, agentd_home
):
    """The daemon keeps the statusline's figures at stop (statusfigures.FIGURES_FILE, stamped with
    the database's size and mtime): read instead of the database while they hold, and only then."""
    _figures_in_the_database(daemon)
    sent = json.dumps(sample())
    assert "| 1 failed tool call" in run(agentd_env, sent).stdout
    daemon.stop()
    kept_path = agentd_home / "statusline-figures.json"
    kept = json.loads(kept_path.read_text())
    assert kept["failures"] == {SESSION: 1} and kept["today_cost"] == pytest.approx(0.45, abs=0.01)
    assert kept_path.stat().st_mode & 0o777 == 0o600
    down = {**agentd_env, "AGENTD_AUTOSTART": "0"}
    # The kept figures are what is shown: changed by hand (the stamp kept), the line follows them.
    kept_path.write_text(json.dumps({**kept, "failures": {SESSION: 7}}))
    assert run(down, sent).stdout.endswith(" | 7 failed tool calls\n")
    # A session the daemon was not asked about: read from the database.
    other = run(down, json.dumps(sample(session_id="5747u5-other")))
    assert "failed tool call" not in other.stdout and "$0.45 today" in other.stdout
    # Any write to the database since (here a direct one) makes them stale: the database speaks.
    conn = sqlite3.connect(agentd_home / "agentd.db")
    with conn:
        conn.execute("UPDATE tools SET success = 0 WHERE session_id = ?", (SESSION,))
        conn.execute(
            "INSERT INTO tools (id, session_id, source, tool_name, success) VALUES (?, ?, ?, ?, 0)",
            ("toolu_direct", SESSION, "claude", "Bash"),
        )
    conn.close()
    assert run(down, sent).stdout.endswith(" | 2 failed tool calls\n")
    # A torn file, one nested too deep to parse, a FIFO, a file others can write: the database.
    kept_path.write_text('{"day_start": ')
    assert run(down, sent).stdout.endswith(" | 2 failed tool calls\n")
    kept_path.write_text("[" * 60_000)
    assert run(down, sent).stdout.endswith(" | 2 failed tool calls\n")
    # Stamped anew (as if the daemon had kept them now), they are shown, unless others can write.
    fresh = {**kept, "failures": {SESSION: 7}, "db": db_stamp(str(agentd_home / "agentd.db"))}
    kept_path.write_text(json.dumps(fresh))
    assert run(down, sent).stdout.endswith(" | 7 failed tool calls\n")
    kept_path.chmod(0o666)
    assert run(down, sent).stdout.endswith(" | 2 failed tool calls\n")
    kept_path.unlink()
    os.mkfifo(kept_path, 0o600)  # nobody writes it: opening it must not wait
    result = run(down, sent)
    assert result.stdout.endswith(" | 2 failed tool calls\n") and result.stderr == ""


def test_daemon_down_what_it_reads_from_the_database_is_kept_for_the_next_runs(
    daemon, agentd_env, agentd_home
):
    """Down, with the database changed since the daemon stopped (a direct write): the first run
    reads the database and keeps what it read (stamped, as the daemon keeps its figures); the
    next runs show that instead of opening the database; a session read later joins them."""
    _figures_in_the_database(daemon)
    daemon.stop()
    db = agentd_home / "agentd.db"
    kept_path = agentd_home / "statusline-figures.json"
    assert not kept_path.exists()  # no statusline asked the daemon: it kept nothing
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "INSERT INTO tools (id, session_id, source, tool_name, success) VALUES (?, ?, ?, ?, 0)",
            ("toolu_direct", SESSION, "claude", "Bash"),
        )
    conn.close()
    down = {**agentd_env, "AGENTD_AUTOSTART": "0"}
    sent = json.dumps(sample())
    first = run(down, sent)
    assert "$0.45 today" in first.stdout and first.stdout.endswith(" | 2 failed tool calls\n")
    kept = json.loads(kept_path.read_text())
    assert kept["failures"] == {SESSION: 2} and kept["db"] == db_stamp(str(db))
    assert kept["today_cost"] == pytest.approx(0.45, abs=0.01)
    assert kept["day_start"] == _midnight_ms(time.time())
    assert kept_path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in agentd_home.glob("statusline-figures*")] == [kept_path.name]
    # The next run shows the kept figures: changed by hand (the stamp kept), the line follows.
    kept_path.write_text(json.dumps({**kept, "failures": {SESSION: 7}}))
    assert run(down, sent).stdout.endswith(" | 7 failed tool calls\n")
    # Another session (an id JSON must escape) is read from the database and joins the kept one.
    other = 'other "5747" \\ \n \u2603 \U0001f600'
    result = run(down, json.dumps(sample(session_id=other)))
    assert "failed tool call" not in result.stdout and result.stderr == ""
    assert json.loads(kept_path.read_text())["failures"] == {SESSION: 7, other: 0}
    assert run(down, sent).stdout.endswith(" | 7 failed tool calls\n")


def test_a_direct_write_brings_the_kept_figures_up_to_date(daemon, agentd_env, agentd_home):
    """A write with the daemon down (here `agentd prune`, which writes directly) reads the kept
    sessions' figures anew before it lets go of the writer's lock: the next statusline finds
    them current, stamped with the database as the write left it."""
    _figures_in_the_database(daemon)
    sent = json.dumps(sample())
    assert run(agentd_env, sent).stdout.endswith(" | 1 failed tool call\n")
    daemon.stop()
    kept_path = agentd_home / "statusline-figures.json"
    assert json.loads(kept_path.read_text())["failures"] == {SESSION: 1}
    down = {**agentd_env, "AGENTD_AUTOSTART": "0"}
    # Everything last seen before tomorrow goes: the session's failures and today's cost with it.
    tomorrow = time.strftime("%Y-%m-%d", time.localtime(time.time() + 2 * 86400))
    pruned = subprocess.run(
        [sys.executable, "-m", "agentd", "prune", "--older-than", tomorrow, "--json"],
        env=down, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout)["deleted"]["tools"] == 1
    kept = json.loads(kept_path.read_text())
    assert kept["failures"] == {SESSION: 0} and "today_cost" not in kept
    assert kept["db"] == db_stamp(str(agentd_home / "agentd.db"))
    line = run(down, sent).stdout
    assert "today" not in line and "failed tool call" not in line


def test_a_database_behind_a_symlink_or_an_odd_path_is_stamped_where_sqlite_writes(
    daemon, agentd_env, agentd_home, tmp_path
):
    """SQLite keeps the WAL beside the file a symlink names: the stamp must look there, or a
    commit still in the WAL would leave stale figures shown. A path with "#" or "?" is opened
    as itself, read-only (not cut short as a URI)."""
    _figures_in_the_database(daemon)
    daemon.stop()
    odd = tmp_path / "data #1?x=y"
    odd.mkdir()
    (agentd_home / "agentd.db").rename(odd / "agentd.db")
    link = tmp_path / "link.db"
    link.symlink_to(odd / "agentd.db")
    down = {**agentd_env, "AGENTD_AUTOSTART": "0", "AGENTD_DB": str(link)}
    sent = json.dumps(sample())
    assert run(down, sent).stdout.endswith(" | 1 failed tool call\n")
    assert json.loads((agentd_home / "statusline-figures.json").read_text())["failures"] == {
        SESSION: 1
    }
    conn = sqlite3.connect(link)  # left open: the commit stays in the WAL
    try:
        with conn:
            conn.execute(
                "INSERT INTO tools (id, session_id, source, tool_name, success) "
                "VALUES (?, ?, ?, ?, 0)",
                ("toolu_direct", SESSION, "claude", "Bash"),
            )
        assert (odd / "agentd.db-wal").stat().st_size > 0
        assert run(down, sent).stdout.endswith(" | 2 failed tool calls\n")
    finally:
        conn.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data #1?x=y", "link.db"]


def test_a_damaged_kept_file_or_a_planted_fifo_never_fails_a_write(daemon, agentd_env, agentd_home):
    """The refresh after a direct write is best effort: a kept file naming a session id SQLite
    cannot take leaves the prune's result and exit code alone; a FIFO at the temporary file's
    name (a killed writer of the same pid, a plant) is replaced, never opened."""
    from agentd import statusfigures

    _figures_in_the_database(daemon)
    daemon.stop()
    kept_path = agentd_home / "statusline-figures.json"
    kept_path.write_bytes(b'{"day_start": 0, "failures": {"\\ud800": 0}, "db": null}')
    kept_path.chmod(0o600)
    pruned = subprocess.run(
        [sys.executable, "-m", "agentd", "prune", "--older-than", "2000-01-01"],
        env={**agentd_env, "AGENTD_AUTOSTART": "0"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (pruned.returncode, pruned.stderr) == (0, "")
    fifo = agentd_home / f"statusline-figures.json.{os.getpid()}.partial"
    os.mkfifo(fifo, 0o600)
    statusfigures.keep(str(agentd_home), {"day_start": 1, "failures": {SESSION: 3}, "db": None})
    assert json.loads(kept_path.read_text())["failures"] == {SESSION: 3}
    assert not fifo.exists()


def test_the_cheap_paths_never_load_sqlite(daemon, agentd_env, agentd_home):
    """Loading libsqlite3 and parsing the schema is what makes a database read cost twice a
    Python start: with the daemon up, with the figures kept, or with no database at all, the
    statusline must not import `_sqlite3` (bench/statusline has the times)."""
    import agentd

    script = str(Path(agentd.__file__).parent / "statusline.py")

    def imports(env: dict[str, str]) -> str:
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-I", "-S", script], input=json.dumps(sample()),
            env=env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert result.returncode == 0 and result.stdout.startswith("Sonnet 4.5")
        return result.stderr

    _figures_in_the_database(daemon)
    assert "_sqlite3" not in imports(agentd_env)  # up: the daemon answers the figures
    daemon.stop()
    down = {**agentd_env, "AGENTD_AUTOSTART": "0"}
    assert "_sqlite3" not in imports(down)  # down: as the daemon kept them at stop
    assert "_sqlite3" not in imports({**down, "AGENTD_DB": str(agentd_home / "none.db")})
    # The check sees it when it happens: a copy of the database is not what the figures were
    # kept for, so it is read.
    shutil.copy(agentd_home / "agentd.db", agentd_home / "copy.db")
    assert "_sqlite3" in imports({**down, "AGENTD_DB": str(agentd_home / "copy.db")})


def test_a_sample_the_daemon_refuses_still_gets_its_figures(daemon, agentd_env):
    """An error answer (here: a sample nested too deep to store; or an older daemon without the
    `statusline` method) sends it as `ingest` and reads the figures from the database file."""
    _figures_in_the_database(daemon)
    deep: object = 1
    for _ in range(300):
        deep = [deep]
    result = run(agentd_env, json.dumps(sample(deep=deep)))
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("Sonnet 4.5 | ctx 42% | $1.23 session | $0.45 today | 5h")
    assert result.stdout.endswith(" | 1 failed tool call\n")
    assert daemon.alive


def test_daemon_down_spools_and_the_daemon_keeps_it_later(agentd_env, agentd_home, config):
    env = {**agentd_env, "AGENTD_AUTOSTART": "0"}
    result = run(env, json.dumps(sample()))
    assert result.returncode == 0
    assert result.stdout.startswith("Sonnet 4.5 | ctx 42% | $1.23 session | 5h 37%")
    assert len(list((agentd_home / "spool").glob("claude_statusline-*.ndjson"))) == 1
    daemon = Daemon(agentd_env, config).start()
    try:
        db = agentd_home / "agentd.db"
        assert wait_for(
            lambda: query_db(db, "SELECT count(*) AS n FROM statusline_samples")[0]["n"] == 1
        )
    finally:
        daemon.stop()


@pytest.mark.parametrize(
    ("stdin", "line"),
    [
        # an older Claude: no rate limits, no context window
        (json.dumps({"session_id": SESSION, "model": {"id": "claude-x", "display_name": "Opus"},
                     "cost": {"total_cost_usd": 0.5}}), "Opus | $0.50 session\n"),
        # fields of the wrong type are left out
        (json.dumps({"model": "Opus", "cost": {"total_cost_usd": "a lot"},
                     "context_window": {"used_percentage": None}}), "agentd\n"),
        ("", "agentd\n"),
        ("this is not json", "agentd\n"),
        ("[1, 2]", "agentd\n"),
        # nested past any parser's depth; megabytes of it
        ("[" * 100_000, "agentd\n"),
        ("{" * 5_000_000, "agentd\n"),
        # not numbers one can draw: NaN, infinities, a negative cost, 10^300 %, a reset in ms
        ('{"model": {"display_name": "Opus"}, "cost": {"total_cost_usd": NaN},'
         ' "rate_limits": {"five_hour": {"used_percentage": 5, "resets_at": Infinity}}}',
         "Opus | 5h 5%\n"),
        ('{"model": {"display_name": "Opus"}, "context_window": {"used_percentage": 1e300},'
         ' "cost": {"total_cost_usd": -5}, "rate_limits": {"five_hour": {"used_percentage": 30,'
         ' "resets_at": 1795246000000}, "seven_day": {"used_percentage": -3}}}',
         "Opus | 5h 30%\n"),
        # one line, no escape sequence, whatever the model's name holds; a lone surrogate
        ('{"model": {"display_name": "Evil\\nName\\r\\u001b[31mRED"}}', "Evil Name  [31mRED\n"),
        ('{"model": {"display_name": "\\ud800x"}}', "?x\n"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("form", ["installed", "click"])
def test_bad_input_prints_what_it_can_and_exits_0(agentd_env, stdin, line, form):
    env = {**agentd_env, "AGENTD_AUTOSTART": "0"}
    if form == "installed":
        result = run(env, stdin)
    else:
        result = subprocess.run(
            [sys.executable, "-m", "agentd", "statusline"], input=stdin, env=env,
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert (result.returncode, result.stdout, result.stderr) == (0, line, "")


@pytest.mark.parametrize("form", ["installed", "click"])
def test_a_home_it_cannot_use_still_draws_the_line(agentd_env, form):
    """An AGENTD_HOME that cannot exist: the sample is lost (said on stderr), the line drawn."""
    env = {**agentd_env, "AGENTD_AUTOSTART": "0", "AGENTD_HOME": "/proc/nonexistent/agentd"}
    env.pop("AGENTD_SOCKET", None)
    env.pop("AGENTD_DB", None)
    argv = ["sh", "-c", statusline_command()] if form == "installed" else [
        sys.executable, "-m", "agentd", "statusline"]  # fmt: skip
    result = subprocess.run(
        argv, input=json.dumps(sample()), env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and result.stdout.startswith("Sonnet 4.5 | ctx 42% | $1.23")
    assert result.stdout.count("\n") == 1 and "Traceback" not in result.stderr


def test_the_click_command_prints_the_same_line(agentd_env):
    payload = json.dumps(sample(rate_limits=None, context_window=None))
    result = subprocess.run(
        [sys.executable, "-m", "agentd", "statusline"], input=payload, text=True,
        env={**agentd_env, "AGENTD_AUTOSTART": "0"}, capture_output=True, timeout=30,
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (0, "Sonnet 4.5 | $1.23 session\n")


def agentd(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "agentd", *args], env=env, capture_output=True, text=True, timeout=30
    )


def test_install_statusline_never_replaces_the_users_own_without_force(tmp_path, agentd_env):
    settings = tmp_path / ".claude" / "settings.json"
    settings.parent.mkdir()
    own = {"type": "command", "command": "~/bin/my-status"}
    settings.write_text(json.dumps({"statusLine": own, "model": "opus"}))
    args = ("install", "claude", "--scope", "project", "--project-dir", str(tmp_path))
    refused = agentd(agentd_env, *args, "--statusline")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "already has a statusLine of your own" in refused.stderr and "--force" in refused.stderr
    assert json.loads(settings.read_text())["statusLine"] == own

    done = agentd(agentd_env, *args, "--statusline", "--force")
    assert done.returncode == 0, done.stderr
    assert "update statusLine" in done.stdout
    written = json.loads(settings.read_text())
    assert written["statusLine"] == {
        "type": "command",
        "command": statusline_command(),
        "padding": 0,
    }
    assert written["model"] == "opus" and "PreToolUse" in written["hooks"]
    again = agentd(agentd_env, *args, "--statusline")
    assert again.returncode == 0 and "statusLine" not in again.stdout

    removed = agentd(
        agentd_env, "uninstall", "claude", "--scope", "project", "--project-dir", str(tmp_path)
    )
    assert removed.returncode == 0, removed.stderr
    assert "restore your statusLine" in removed.stdout
    assert json.loads(settings.read_text()) == {"statusLine": own, "model": "opus"}


def test_install_statusline_into_settings_without_one(tmp_path, agentd_env):
    args = ("install", "claude", "--scope", "project", "--project-dir", str(tmp_path))
    result = agentd(agentd_env, *args, "--statusline")
    assert result.returncode == 0, result.stderr
    settings = json.loads((tmp_path / ".claude" / "settings.json").read_text())
    assert settings["statusLine"]["command"].endswith("# agentd-statusline")
    # There was no statusLine to keep: no backup of one, and none said.
    assert "Backup" not in result.stdout
    assert not (tmp_path / ".claude" / "settings.json.agentd-statusline-backup").exists()
    removed = agentd(
        agentd_env, "uninstall", "claude", "--scope", "project", "--project-dir", str(tmp_path)
    )
    assert "remove statusLine" in removed.stdout
    assert not (tmp_path / ".claude" / "settings.json").exists() or "statusLine" not in json.loads(
        (tmp_path / ".claude" / "settings.json").read_text()
    )


def test_today_cost_reads_the_rollup_sum_as_the_reports_do():
    """As query/costs.py's SUMMED_COST: a sum the rollup's float subtractions left at -1e-16 is
    nothing (unknown when unpriced messages made it), and no cost is drawn below 0."""
    from agentd.statusfigures import today_cost

    assert today_cost((-1e-16, 2)) is None  # only unknown prices today
    assert today_cost((0.0, 1)) is None
    assert today_cost((-1e-16, 0)) == 0.0 and str(today_cost((-1e-16, 0))) == "0.0"
    assert today_cost((1.5, 1)) == 1.5  # what could be priced, beside one that could not
    assert today_cost((None, None)) is None and today_cost(None) is None
