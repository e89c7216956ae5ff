"""`agentd push --watch` while PostgreSQL goes away and comes back: capture goes on, the push
backs off (and `agentd status` says so), then catches up with nothing lost."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pgserver import PgServer
from pushkit import CLAUDE, OPENCODE, Machine, assert_same, scalar

from conftest import wait_for


@pytest.fixture
def pg():
    server = PgServer()
    try:
        yield server.start()
    finally:
        server.destroy()


def _state(m: Machine) -> dict:
    try:
        return json.loads((Path(m.config.state_dir) / "push-state.json").read_text())
    except (OSError, ValueError):
        return {}


def test_push_watch_rides_out_a_server_outage(pg, machine):
    url = pg.create_database("team")
    assert machine.agentd("push", "--init", url).returncode == 0
    half = len(CLAUDE) // 2
    machine.feed("claude", CLAUDE[:half])
    log = open(machine.home / "push.log", "wb")  # noqa: SIM115 - closed in finally
    watcher = subprocess.Popen(
        [sys.executable, "-m", "agentd", "push", "--watch", url],
        env=machine.env, stdout=log, stderr=log,
    )  # fmt: skip
    try:
        tools = lambda: scalar(url, "SELECT count(*) FROM agentd.tools")  # noqa: E731
        assert wait_for(lambda: tools() == len(machine.local_rows("tools")), timeout=60)
        # The state file is written after the cycle whose rows the server already has.
        assert wait_for(lambda: _state(machine).get("state") == "ok", timeout=60)

        pg.stop()
        # Capture does not notice: every event is acknowledged as stored.
        machine.feed("claude", CLAUDE[half:])
        machine.feed("opencode", OPENCODE)
        assert wait_for(lambda: _state(machine).get("state") == "backoff", timeout=60)
        status = machine.agentd("status")
        assert status.returncode == 0 and "push:          backing off" in status.stdout
        assert _state(machine)["pending"] > 0
        assert watcher.poll() is None

        pg.start()
        total = lambda: sum(len(machine.local_rows(t)) for t in ("tools", "sessions"))  # noqa: E731
        assert wait_for(
            lambda: scalar(url, "SELECT (SELECT count(*) FROM agentd.tools)"
                           " + (SELECT count(*) FROM agentd.sessions)") == total(),
            timeout=60,
        )  # fmt: skip
        assert wait_for(lambda: _state(machine).get("pending") == 0, timeout=60)
        assert "push:          to " in machine.agentd("status").stdout
    finally:
        watcher.send_signal(signal.SIGTERM)
        code = watcher.wait(30)
        log.close()
    assert code == 0, (machine.home / "push.log").read_text()
    assert_same(url, machine)
    assert "not running" in machine.agentd("status").stdout.split("push:", 1)[1]


def test_push_watch_refuses_a_wrong_password_at_once(pg, machine):
    url = pg.create_database("team", owner="alice")
    result = machine.agentd("push", "--watch", pg.url("team", "alice", "nope"), timeout=30)
    assert result.returncode == 1
    assert 'password authentication failed for user "alice"' in result.stderr
    assert "Traceback" not in result.stderr
    assert url
