"""A connection string libpq cannot read: `agentd push`, `--init` and `--watch` say what is
wrong in one line without echoing it (it may hold a password), and a watch stops at once."""

from __future__ import annotations

import json

import pytest
from pushkit import CLAUDE, Machine

SECRET = "hunter2"
BAD = [
    f"postgresql://bob:{SECRET}%zzsecret@/team?host=/tmp/agd-no-such-dir",
    f"postgresql://bob:{SECRET}secret@[/team",
    f"password={SECRET} secret",
    f"postgresql://bob@/team?{SECRET}=x",
]


@pytest.fixture(scope="module")
def machine():
    m = Machine().start()
    try:
        m.feed("claude", CLAUDE[:3])
        yield m
    finally:
        m.destroy()


@pytest.mark.parametrize("url", BAD)
@pytest.mark.parametrize("mode", [(), ("--init",), ("--watch",)])
def test_an_unreadable_url_is_refused_without_being_shown(machine, url, mode):
    result = machine.agentd("push", *mode, url, timeout=30)
    assert result.returncode == 1, (result.stdout, result.stderr)
    out = result.stdout + result.stderr
    assert "not a valid PostgreSQL connection string" in out
    assert SECRET not in out and "secret" not in out
    assert "Traceback" not in out
    state = machine.config.state_dir / "push-state.json"
    if state.exists():
        assert SECRET not in json.dumps(json.loads(state.read_text()))


# Read by libpq, but not as their author meant: a `/` or `@` in the password, not
# percent-encoded, makes libpq take its pieces for a port, a database or a host.
MISREAD = [
    f"postgresql://alice:{SECRET}/Secret@/team?host=/tmp/agd-no-such-dir",
    f"postgresql://alice:{SECRET}@Secret@/team?host=/tmp/agd-no-such-dir",
]


@pytest.mark.parametrize("url", MISREAD)
def test_a_password_libpq_misreads_is_never_shown(machine, url):
    for mode in ((), ("--json",)):
        result = machine.agentd("push", *mode, url, timeout=30)
        assert result.returncode == 1, (result.stdout, result.stderr)
        out = result.stdout + result.stderr
        assert SECRET not in out and "Secret" not in out, out
        assert "Traceback" not in out
    state = machine.config.state_dir / "push-state.json"
    if state.exists():
        assert SECRET not in state.read_text()
