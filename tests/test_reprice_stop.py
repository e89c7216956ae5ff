"""`agentd reprice` stopped midway and run twice: by the daemon's stop, by its client leaving, by
a second reprice meeting it; the CLI's line when the daemon goes; transactions bounded by rowids
(test_reprice.py has the fixtures and the row-for-row comparison)."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from test_reprice import HOUR, T, age, aged, agentd, assert_same_rows, fresh

from agentd.config import Config
from conftest import Daemon, query_db

__all__ = ["aged", "fresh"]  # test_reprice.py's fixtures, used here too

AGED_SQL = "SELECT count(*) AS n FROM messages WHERE cost_source IS NULL"


def grow(db: Path, copies: int) -> int:
    """`copies` more of every message (new ids, rowids after the originals), so a reprice takes
    several of the daemon's batches; the messages there are now."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(messages)") if r[1] != "id"]
        names = ", ".join(columns)
        for k in range(copies):
            conn.execute(
                f"INSERT INTO messages (id, {names}) SELECT id || '-copy{k}', {names}"
                " FROM messages WHERE instr(id, '-copy') = 0"
            )
        return conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    finally:
        conn.close()


def exchange(config: Config, line: bytes) -> list[dict[str, Any]]:
    """Send one line on a connection of its own; the answers, by id."""
    from agentd.client import Client

    with Client(config.socket_path, timeout=60.0) as client:
        client.send_line(line)
        answer = json.loads(client.read_line())
    return sorted(answer if isinstance(answer, list) else [answer], key=lambda a: a["id"])


def request(request_id: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def line_of(*messages: dict[str, Any]) -> bytes:
    return json.dumps(list(messages) if len(messages) > 1 else messages[0]).encode() + b"\n"


def assert_clean_log(daemon: Daemon) -> None:
    log = daemon.stderr_path.read_text(errors="replace")
    for sign in ("Traceback", "never retrieved", "failed", "closed database"):
        assert sign not in log, log


def test_a_stop_ends_a_reprice_between_batches_and_a_second_run_finishes(
    fresh, aged, agentd_env, config, tmp_path
):
    """`shutdown` while a reprice runs (the two in one batch line: the reprice is under way when
    the stop is asked): it stops after the batch it is in, answers -32002 with its counts, the
    daemon exits cleanly; what was committed stays, and a second run ends where a run never
    stopped does."""
    total = grow(aged, 20)
    assert total > 2 * 500  # several of the daemon's batches
    whole = tmp_path / "whole.db"
    shutil.copy(aged, whole)
    unpriced = query_db(aged, AGED_SQL)[0]["n"]
    daemon = Daemon(agentd_env, config).start()
    try:
        stopped, stopping = exchange(
            config, line_of(request(1, "reprice", {}), request(2, "shutdown"))
        )
        assert daemon.process.wait(30) == 0
    finally:
        daemon.stop()
    assert stopping["result"] == {"stopping": True}
    error = stopped["error"]
    assert error["code"] == -32002 and "run `agentd reprice` again to finish" in error["message"]
    assert 0 < error["data"]["examined"] <= 500
    assert_clean_log(daemon)
    left = query_db(aged, AGED_SQL)[0]["n"]
    assert 0 < left < unpriced  # the first batch's messages are priced, the others not yet
    second = agentd(agentd_env, "reprice", "--json")  # directly: the daemon is gone
    assert second.returncode == 0, second.stderr

    async def reprice_whole() -> dict[str, Any]:
        from agentd.db.reprice import Selection
        from agentd.db.store import Store

        store = Store(whole)
        await store.open()
        try:
            return await store.reprice(Selection())
        finally:
            await store.close()

    never_stopped = asyncio.run(reprice_whole())
    report = json.loads(second.stdout)
    assert report["repriced"] + error["data"]["repriced"] == never_stopped["repriced"] > 0
    assert_same_rows(whole, aged)


def test_one_reprice_at_a_time_and_its_params_may_be_left_out(aged, daemon, config):
    """Two reprices at once (one batch line: both under way together): the second answers -32005
    and does nothing; a request without params is one with `{}`."""
    first, second = exchange(
        config, line_of(request(1, "reprice"), request(2, "reprice", {"source": "claude"}))
    )
    assert first["result"]["repriced"] > 0 and first["result"]["examined"] > 0
    assert second["error"]["code"] == -32005
    assert "a reprice is already running" in second["error"]["message"]
    (again,) = exchange(config, line_of(request(3, "reprice")))
    assert again["result"]["repriced"] == 0 and again["result"]["examined"] > 0
    daemon.stop()
    assert_clean_log(daemon)


def test_a_reprice_stops_when_its_client_leaves(aged, daemon, config):
    """A client that sends `reprice` and closes: the run stops after its batch, not the table's
    end. The writer lock, held here, keeps the first batch from committing until the daemon has
    seen the client go."""
    from agentd.client import Client

    grow(aged, 20)
    unpriced = query_db(aged, AGED_SQL)[0]["n"]
    probe = request(9, "reprice", {"model": "no-such-model"})
    holder = sqlite3.connect(aged, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with Client(config.socket_path, timeout=10.0) as leaving:
            # Two lines: their tasks start in order, so the probe meets the run under way.
            leaving.send_line(line_of(request(1, "reprice", {})))
            leaving.send_line(line_of(probe))
            assert json.loads(leaving.read_line())["error"]["code"] == -32005
        # Answered after that close was read: the daemon knows the client went.
        (busy,) = exchange(config, line_of(probe))
        assert busy["error"]["code"] == -32005
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    import time

    for _ in range(1200):  # probes until one runs (the first has ended): it changes nothing
        (answer,) = exchange(config, line_of(probe))
        if "result" in answer:
            break
        assert answer["error"]["code"] == -32005
        time.sleep(0.05)
    assert answer["result"]["examined"] == 0
    left = query_db(aged, AGED_SQL)[0]["n"]
    assert 0 < left < unpriced  # one batch priced, then it stopped
    daemon.stop()
    assert_clean_log(daemon)


def test_the_cli_says_the_daemon_stopped_when_it_goes_mid_reprice(
    fresh, aged, daemon, agentd_env, config
):
    """The daemon killed while `agentd reprice` waits for it (the writer lock held here keeps the
    run from ending first): one clear line, exit 1, and a second run finishes. Whichever way the
    kill falls (before the command's request reached the daemon, it ran directly instead), the
    database ends priced."""
    import time

    holder = sqlite3.connect(aged, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    cli = subprocess.Popen(
        [sys.executable, "-m", "agentd", "reprice"], env=agentd_env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for _ in range(1200):  # the command's connection open beside this status request's
            if daemon.call("status")["connections"] >= 2:
                break
            time.sleep(0.01)
        daemon.process.kill()
        daemon.process.wait()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        out, err = cli.communicate(timeout=120)
    if cli.returncode == 1:
        assert err == (
            "Error: the daemon stopped before reprice finished; what it committed stays: run"
            " `agentd reprice` again to finish\n"
        )
        again = agentd(agentd_env, "reprice")
        assert again.returncode == 0, again.stderr
    else:
        assert cli.returncode == 0, err
    assert_same_rows(fresh, aged)


async def test_transactions_bounded_by_rowids_still_price_each_selected_message_once(
    fresh, tmp_path
):
    """A transaction reads at most `span` rowids (a narrow selection does not scan the table in
    one): with spans and batches smaller than the table and its selections, the same counts and
    the same database as one pass."""
    from agentd.db.reprice import Selection
    from agentd.db.store import Store

    small, whole = tmp_path / "small.db", tmp_path / "whole.db"
    for db in (small, whole):
        shutil.copy(fresh, db)
        age(db)
    results: dict[Path, list[dict[str, Any]]] = {}
    for db, sizes in ((small, {"batch": 3, "span": 5}), (whole, {})):
        store = Store(db)
        await store.open()
        try:
            results[db] = [
                await store.reprice(selection, **sizes)
                for selection in (
                    Selection(model="claude-haiku-4-5"),
                    Selection(since=T + 20 * HOUR, source="opencode"),
                    Selection(model="no-such-model"),
                    Selection(),
                )
            ]
        finally:
            await store.close()
    assert results[small] == results[whole]
    haiku, later, none, rest = results[small]
    assert haiku["repriced"] == haiku["examined"] == 12 and later["repriced"] > 0
    assert none["examined"] == 0 and rest["repriced"] > 0
    assert_same_rows(fresh, small)
    assert_same_rows(whole, small)
