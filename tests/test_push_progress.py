"""A one-shot push shows its progress on a terminal (and nothing otherwise), and the team
summary lists a machine only once a push of it committed."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import psycopg
from pushkit import CLAUDE, OPENCODE, assert_same, scalar

from agentd.push.local import TABLES

_names = itertools.count()


def test_push_shows_progress_on_a_terminal_only(pg, machine):
    url = pg.create_database(f"progress{next(_names)}")
    machine.feed("claude", CLAUDE)
    assert machine.agentd("push", "--init", url).returncode == 0
    master, slave = os.openpty()
    try:
        push = subprocess.Popen(
            [sys.executable, "-m", "agentd", "push", url, "--batch-rows", "5"],
            env=machine.env, stdout=subprocess.PIPE, stderr=slave,
        )  # fmt: skip
        os.close(slave)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the push closed the terminal's last writer
                break
            if not chunk:
                break
            shown += chunk
        out, _ = push.communicate(timeout=60)
    finally:
        os.close(master)
    assert push.returncode == 0, shown
    total = sum(len(machine.local_rows(t)) for t in TABLES)
    lines = shown.decode().split("\r")
    counts = [line for line in lines if line.startswith("agentd push: ")]
    assert len(counts) >= 2, shown  # one per server transaction, rewritten in place
    last = counts[-1].split()
    assert last[2] == last[4] == str(total), counts[-1]  # a first copy: the count is exact
    assert b"Pushed" in out
    assert_same(url, machine)
    # Not a terminal: nothing on stderr.
    machine.feed("opencode", OPENCODE)
    quiet = machine.agentd("push", url, "--batch-rows", "5")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_team_summary_lists_a_machine_once_it_pushed(pg, machine):
    url = pg.create_database(f"progress{next(_names)}")
    machine.feed("claude", CLAUDE)
    assert machine.agentd("push", "--init", url).returncode == 0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$;"
            " CREATE TRIGGER test_refuse BEFORE INSERT ON agentd.sessions"
            " FOR EACH ROW EXECUTE FUNCTION test_refuse()"
        )
        failed = machine.agentd("push", url)
        assert failed.returncode == 1 and "refused by the test" in failed.stderr
        assert scalar(url, "SELECT count(*) FROM agentd.machines") == 1  # the attempt
        assert scalar(url, "SELECT count(*) FROM agentd.team_summary") == 0
        conn.execute("DROP TRIGGER test_refuse ON agentd.sessions")
    assert machine.agentd("push", url).returncode == 0
    assert scalar(url, "SELECT sessions FROM agentd.team_summary") == len(
        machine.local_rows("sessions")
    )
