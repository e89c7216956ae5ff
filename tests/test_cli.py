"""`agentd start | stop | status` as a user runs them: real subprocesses, real files."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from agentd.client import NotRunning, call
from conftest import query_db, wait_for


def agentd(env, *args, timeout=30):
    return subprocess.run(
        [sys.executable, "-m", "agentd", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def started(agentd_env, config):
    """`agentd start` (detached); stopped at teardown whatever the test did."""
    result = agentd(agentd_env, "start")
    assert result.returncode == 0, result.stderr
    yield result
    agentd(agentd_env, "stop")
    pid = _pid(config)
    if pid:
        os.kill(pid, signal.SIGKILL)


def _pid(config):
    try:
        return int(config.pid_path.read_text())
    except (OSError, ValueError):
        return None


def test_start_detaches_and_stop_cleans_up(started, agentd_env, config):
    assert "agentd started (pid" in started.stdout
    assert (config.socket_path.stat().st_mode & 0o777) == 0o600
    assert (config.state_dir.stat().st_mode & 0o777) == 0o700
    # A plain client: a few lines of Python, no agentd code.
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(config.socket_path))
        s.sendall(
            b'{"jsonrpc":"2.0","id":1,"method":"ingest","params":{"source":"claude",'
            b'"payload":{"session_id":"plain","hook_event_name":"Stop"}}}\n'
        )
        assert json.loads(s.makefile().readline()) == {
            "jsonrpc": "2.0",
            "id": 1,
            "result": {"stored": True},
        }
    assert query_db(config.db_path, "SELECT session_id, kind FROM events") == [
        {"session_id": "plain", "kind": "Stop"}
    ]
    stopped = agentd(agentd_env, "stop")
    assert stopped.returncode == 0 and "agentd stopped" in stopped.stdout
    assert not config.socket_path.exists()
    assert not config.pid_path.exists()


def test_second_start_says_already_running_and_exits_0(started, agentd_env):
    again = agentd(agentd_env, "start")
    assert again.returncode == 0
    assert "already running" in again.stdout


def test_status_running_human_and_json(started, agentd_env, config):
    human = agentd(agentd_env, "status")
    assert human.returncode == 0
    assert "is running" in human.stdout and str(config.db_path) in human.stdout
    data = json.loads(agentd(agentd_env, "status", "--json").stdout)
    assert data["running"] is True and data["pid"] == _pid(config)
    assert data["events_total"] == 0 and data["spool_files"] == 0


def test_status_when_not_running_exits_3(agentd_env, config):
    result = agentd(agentd_env, "status", "--json")
    assert result.returncode == 3
    data = json.loads(result.stdout)
    assert data["running"] is False and data["socket"] == str(config.socket_path)
    assert "not running" in agentd(agentd_env, "status").stdout


def test_status_formats_and_json_flag_agree(agentd_env, config):
    """--json is --format json; ndjson is the same object on one line, csv one header and row."""
    as_json = agentd(agentd_env, "status", "--json")
    assert agentd(agentd_env, "status", "--format", "json").stdout == as_json.stdout
    ndjson = agentd(agentd_env, "status", "--format", "ndjson")
    assert ndjson.returncode == 3 and json.loads(ndjson.stdout) == json.loads(as_json.stdout)
    header, row = agentd(agentd_env, "status", "--format", "csv").stdout.splitlines()
    assert header.split(",")[:3] == ["database", "database_bytes", "running"]
    assert row.split(",")[:3] == [str(config.db_path), "0", "false"]
    clash = agentd(agentd_env, "status", "--json", "--format", "csv")
    assert clash.returncode == 2 and "--json means --format json" in clash.stderr


def test_stop_when_not_running_is_fine(agentd_env):
    result = agentd(agentd_env, "stop")
    assert result.returncode == 0 and "not running" in result.stdout


def test_stop_signals_no_process_a_stale_pid_file_names(agentd_env, config, tmp_path):
    """After a crash the pid file may name any process (the pid reused), or a direct writer
    (import, prune) holding it: `stop` signals only a daemon that listens on the socket."""
    from agentd import pidfile

    config.state_dir.mkdir(parents=True, exist_ok=True)
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        config.pid_path.write_text(f"{victim.pid}\n")
        # A crashed daemon's socket file, with no one listening on it.
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(config.socket_path))
        stopped = agentd(agentd_env, "stop")
        assert (stopped.returncode, stopped.stdout.strip()) == (0, "agentd is not running")
        assert victim.poll() is None  # not signalled
        config.socket_path.unlink()
        fd = pidfile.acquire(config.pid_path)  # this test process, writing directly
        try:
            stopped = agentd(agentd_env, "stop")
            assert (stopped.returncode, stopped.stdout.strip()) == (0, "agentd is not running")
        finally:
            pidfile.release(config.pid_path, fd)
    finally:
        victim.kill()
        victim.wait()


def test_stale_socket_of_a_crashed_daemon_is_replaced(agentd_env, config):
    first = subprocess.Popen(
        [sys.executable, "-m", "agentd", "start", "--foreground"],
        env=agentd_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def answers() -> bool:
            try:
                return call(config.socket_path, "ping")["pid"] == first.pid
            except (NotRunning, OSError):
                return False

        assert wait_for(answers, 60)  # up and serving: its socket is bound
        first.kill()  # kill -9: no cleanup, the socket file stays behind
        first.wait()
        assert config.socket_path.exists()
        result = agentd(agentd_env, "start")
        assert result.returncode == 0, result.stderr
        assert call(config.socket_path, "ping")["pid"] != first.pid
    finally:
        if first.poll() is None:  # the test failed before killing it
            first.kill()
            first.wait()
        agentd(agentd_env, "stop")


def test_a_regular_file_at_the_socket_path_is_not_replaced(agentd_env, config):
    config.state_dir.mkdir(parents=True, exist_ok=True)
    config.socket_path.write_text("precious")
    result = agentd(agentd_env, "start", "--foreground")
    assert result.returncode == 1
    assert "is not a socket" in result.stderr and "Traceback" not in result.stderr
    assert config.socket_path.read_text() == "precious"


def test_sigterm_and_sigint_stop_gracefully(agentd_env, config):
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = subprocess.Popen(
            [sys.executable, "-m", "agentd", "start", "--foreground"],
            env=agentd_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:

            def ingested(sig: signal.Signals = sig) -> bool:
                try:
                    call(
                        config.socket_path,
                        "ingest",
                        {"source": "claude", "payload": {"sig": int(sig)}},
                    )
                except Exception:
                    return False
                return True

            assert wait_for(ingested, 60)
            proc.send_signal(sig)
            assert proc.wait(timeout=15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stderr.close()
        assert not config.socket_path.exists() and not config.pid_path.exists()
    assert query_db(config.db_path, "SELECT count(*) AS n FROM events") == [{"n": 2}]


def test_every_command_has_help_with_an_example(agentd_env):
    import click

    from agentd.cli import cli

    def paths(command: click.Command, prefix: list[str]) -> list[list[str]]:
        found = [prefix]
        if isinstance(command, click.Group):  # through click's API: some groups are lazy
            ctx = click.Context(command)
            for name in command.list_commands(ctx):
                found += paths(command.get_command(ctx, name), [*prefix, name])
        return found

    commands = paths(cli, [])
    assert ["import", "claude"] in commands and ["vacuum"] in commands  # the walk found them
    for command in commands:
        result = agentd(agentd_env, *command, "--help")
        assert result.returncode == 0, command
        assert "Example:" in result.stdout, command


def test_too_long_socket_path_is_a_clear_error(agentd_env, agentd_home):
    # In the private home: a socket in /tmp itself is refused first (others can write there).
    env = dict(agentd_env, AGENTD_SOCKET=f"{agentd_home}/{'s' * 120}.sock")
    result = agentd(env, "start", "--foreground")
    assert result.returncode == 1
    assert "over the 107-byte limit" in result.stderr and "Traceback" not in result.stderr


def test_bad_config_file_is_a_clear_error_not_a_traceback(agentd_env, agentd_home):
    (agentd_home / "config.toml").write_text("autostart = 'maybe'\n")
    result = agentd(agentd_env, "status")
    assert result.returncode == 1
    assert "'autostart' must be bool" in result.stderr and "Traceback" not in result.stderr


def _run_python(env, code, *args):
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("columns", ["80", "200"])
def test_help_lists_every_command_as_the_commands_themselves_would(agentd_env, columns):
    """`agentd --help` lists the commands from cli.COMMANDS without importing their modules; the
    listing is the one click writes with every command loaded, at any width."""
    env = dict(agentd_env, COLUMNS=columns)
    modules = (
        "import atexit, sys; atexit.register(lambda: print(sorted(m for m in sys.modules "
        "if m.startswith('agentd.cli.')), file=sys.stderr)); "
    )
    lazy = _run_python(env, modules + "from agentd.cli import main; main()", "--help")
    eager = _run_python(
        env, "from agentd.cli import load_commands, main; load_commands(); main()", "--help"
    )
    assert lazy.returncode == eager.returncode == 0, lazy.stderr + eager.stderr
    assert lazy.stdout == eager.stdout
    assert lazy.stderr.strip() == "[]"  # no command module imported
    listed = lazy.stdout.split("Commands:\n")[1].splitlines()
    assert [line.split()[0] for line in listed] == sorted(
        ["doctor", "import", "install", "prices", "prune", "push", "query", "reprice", "start",
         "status", "statusline", "stop", "ui", "uninstall", "vacuum"]
    )  # fmt: skip


def test_the_command_table_matches_the_commands():
    """cli.COMMANDS names each command's module and its short help, as the command says them."""
    import click

    from agentd.cli import COMMANDS, cli, load_commands

    load_commands()
    assert set(cli.commands) == set(COMMANDS)
    for name, (module, short_help) in COMMANDS.items():
        command = cli.commands[name]
        defined_in = command.callback.__module__ if command.callback else type(command).__module__
        assert defined_in == f"agentd.cli.{module}", name
        assert command.get_short_help_str(limit=10_000) == short_help, name
    ctx = click.Context(cli)
    assert cli.get_command(ctx, "nonesuch") is None


def test_query_loads_neither_the_daemon_nor_asyncio(agentd_env, config):
    """`agentd query sessions`, run as a user runs it, on a real database: it imports only its
    own command's module, and none of the daemon, asyncio, the normalizers, pricing or msgspec."""
    from agentd.db.store import connect_sync

    connect_sync(config.db_path).close()  # the real migrations: an empty agentd database
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "agentd", "query", "sessions"],
        env=agentd_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "(no rows in the last 7d" in result.stderr
    loaded = {
        line.split("|")[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "agentd.cli.query" in loaded and "sqlite3" in loaded  # the list is the real one
    heavy = {"asyncio", "msgspec", "socket", "subprocess", "logging", "json"}
    assert not loaded & heavy, loaded & heavy
    ours = {m for m in loaded if m.startswith("agentd.")}
    assert not {m for m in ours if m.startswith(("agentd.service", "agentd.normalizers",
        "agentd.pricing", "agentd.db.store", "agentd.importers", "agentd.installers"))}  # fmt: skip
    assert {m for m in ours if m.startswith("agentd.cli.")} == {"agentd.cli.query"}


def test_query_output_is_whole_and_its_exit_code_kept(agentd_env, config):
    """`agentd query` ends its process without the interpreter's teardown: what it wrote is all
    there, through a pipe, and its exit codes are click's."""
    from agentd.db.store import connect_sync

    connect_sync(config.db_path).close()
    many = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) "
        "SELECT x, 'row ' || x AS text FROM c"
    )
    result = agentd(agentd_env, "query", "--sql", many, "--format", "csv")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 100_001 and lines[0] == "x,text" and lines[-1] == "100000,row 100000"
    bad = agentd(agentd_env, "query", "--sql", "SELECT nope")
    assert (bad.returncode, bad.stdout) == (1, "")
    assert bad.stderr == "Error: SQL error: no such column: nope\n"
    usage = agentd(agentd_env, "query", "--bogus")
    assert usage.returncode == 2 and "No such option '--bogus'" in usage.stderr
    head = subprocess.run(
        f"{sys.executable} -m agentd query --sql \"{many}\" --format csv | head -n 2",
        shell=True, env=agentd_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert head.stdout == "x,text\n1,row 1\n" and head.stderr == ""


def test_query_binds_the_host_name_as_socket_gives_it(agentd_env, config):
    from agentd.db.store import connect_sync

    connect_sync(config.db_path).close()
    result = agentd(agentd_env, "query", "--sql", "SELECT :machine AS m", "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"m\n{socket.gethostname()}\n"
