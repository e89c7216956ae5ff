"""`agentd reprice` and `agentd push`: the messages (and sessions) a reprice changes are logged for
the push like any write, and the next push gives the server their new costs.

The push merges as the store does (a NULL never blanks a value), so a cost that a reprice takes
away (a model the new table no longer knows) stays on the server; the other way, the case a
reprice is for (no cost before), is exact."""

from __future__ import annotations

import json

from pushkit import Machine, assert_same, server_rows
from test_reprice import T, age, events


def test_repriced_messages_are_pushed_again(pg):
    url = pg.create_database("reprice")
    machine = Machine().start()
    try:
        for n, (source, payload) in enumerate(events()):
            assert machine.daemon.ingest(source, payload, T + n) == {"stored": True}
        fresh = machine.local_rows("messages")
        assert age(machine.config.db_path) > 0  # an older agentd's costs
        init = machine.agentd("push", "--init", url)
        assert init.returncode == 0, init.stderr
        machine.push(url)
        assert_same(url, machine, ("messages", "sessions"))
        assert server_rows(url, machine, "messages") != fresh
        result = machine.agentd("reprice", "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["repriced"] > 0
        pushed = json.loads(machine.push(url, "--json").stdout)
        assert pushed["upserted"] > 0
        assert_same(url, machine, ("messages", "sessions"))
        assert server_rows(url, machine, "messages") == fresh == machine.local_rows("messages")
    finally:
        machine.destroy()
