"""The OpenCode plugin (opencode-plugin/src/agentd.ts) on its own, against a real daemon.

A small bun script (opencode-plugin/test/driver.ts) stands in for OpenCode: it loads the plugin,
calls its callbacks with the real payloads of tests/payloads, and ends the way OpenCode may
(dispose, process.exit right away, SIGTERM, the event loop running dry). The plugin's own
`bun test` suite (fake daemons, serialization, queue limits) runs here too, with a real daemon for
its last test, and `tsc --noEmit` checks the types.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import PAYLOADS, REPO, load_jsonl, query_db, wait_for

PLUGIN_DIR = REPO / "opencode-plugin"
BUN = PLUGIN_DIR / "node_modules" / ".bin" / "bun"
TSC = PLUGIN_DIR / "node_modules" / ".bin" / "tsc"
DRIVER = PLUGIN_DIR / "test" / "driver.ts"
EXAMPLES_FILE = PAYLOADS / "opencode_plugin_events_examples.jsonl"
EXAMPLES = load_jsonl("opencode_plugin_events_examples.jsonl")
# Callbacks the plugin does not forward (they carry credentials or nothing new), and the bus
# event it skips by default (streamed text chunks, whole in the part's last snapshot).
NOT_FORWARDED = {"plugin.init", "chat.headers", "shell.env"}
SKIPPED_EVENTS = {"message.part.delta"}

MAIN = "ses_e02fabf2effeHoAA45Cl6mOCI7"

pytestmark = pytest.mark.skipif(
    not (BUN.exists() and TSC.exists()),
    reason="opencode-plugin/node_modules is missing: run scripts/test (npm install there)",
)


def forwarded(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        r
        for r in records
        if r["kind"] not in NOT_FORWARDED
        and not (r["kind"] == "event" and r["event"]["type"] in SKIPPED_EVENTS)
    ]


def scenario(name: str) -> list[dict[str, Any]]:
    return [r for r in EXAMPLES if r["scenario"] == name]


def driver(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BUN), str(DRIVER), *args],
        env=env,
        cwd=PLUGIN_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def replay(env: dict[str, str], end: str = "dispose", name: str | None = None) -> dict[str, Any]:
    args = ["replay", str(EXAMPLES_FILE), "--end", end]
    if name:
        args += ["--scenario", name]
    result = driver(env, *args)
    assert result.stdout, result.stderr
    return {"returncode": result.returncode, **json.loads(result.stdout.splitlines()[0])}


def spool_files(config) -> list[Path]:
    return sorted(config.spool_dir.iterdir()) if config.spool_dir.exists() else []


def count(config, table: str) -> int:
    return query_db(config.db_path, f"SELECT count(*) AS n FROM {table}")[0]["n"]


def test_types_check():
    result = subprocess.run(
        [str(TSC), "--noEmit", "-p", str(PLUGIN_DIR)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_bun_suite_passes_and_its_events_reach_the_real_daemon(daemon, agentd_env):
    env = dict(agentd_env, AGENTD_TEST_DAEMON_HOME=agentd_env["AGENTD_HOME"])
    result = subprocess.run(
        [str(BUN), "test"], env=env, cwd=PLUGIN_DIR, capture_output=True, text=True, timeout=300
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert " 0 fail" in output and "(skip)" not in output, output
    # Its last test replayed the oc-main samples into this daemon.
    tools = query_db(daemon.config.db_path, "SELECT tool_name, success FROM tools")
    assert sorted((t["tool_name"], t["success"]) for t in tools) == [
        ("bash", 1),
        ("edit", 1),
        ("read", 0),
        ("read", 1),
        ("write", 1),
    ]
    assert count(daemon.config, "events") == len(forwarded(scenario("oc-main")))


def test_events_delivered_acked_and_normalized(daemon, agentd_env):
    stats = replay(agentd_env)
    expected = forwarded(EXAMPLES)
    assert stats["returncode"] == 0
    assert stats["acked"] == stats["enqueued"] == len(expected)
    assert (stats["spooled"], stats["pending"], stats["dropped"]) == (0, 0, 0)
    assert spool_files(daemon.config) == []
    config = daemon.config
    kinds = query_db(config.db_path, "SELECT kind, count(*) AS n FROM events GROUP BY kind")
    stored = {row["kind"]: row["n"] for row in kinds}
    assert sum(stored.values()) == len(expected)
    assert stored["tool.execute.after"] == len(
        [r for r in expected if r["kind"] == "tool.execute.after"]
    )
    assert "message.part.delta" not in stored

    # The payload is exactly the callback's arguments, received_at the plugin's clock.
    (row,) = query_db(
        config.db_path, "SELECT payload, received_at FROM events WHERE kind = 'session.created'"
    )
    (created,) = [
        r for r in expected if r["kind"] == "event" and r["event"]["type"] == "session.created"
    ]
    assert json.loads(row["payload"]) == {"kind": "event", "event": created["event"]}
    assert abs(row["received_at"] - time.time() * 1000) < 60_000

    tools = {
        r["id"].split(":")[1]: r
        for r in query_db(
            config.db_path,
            "SELECT id, tool_name, success, exit_code, error_message, duration_ms FROM tools "
            "WHERE session_id = ?",
            (MAIN,),
        )
    }
    assert tools["toolu_fake_828a13c53f9744ff"]["tool_name"] == "bash"
    assert tools["toolu_fake_828a13c53f9744ff"]["exit_code"] == 0
    assert tools["toolu_fake_1807e11d9cf44f26"]["success"] == 0  # the read of a missing file
    ops = query_db(
        config.db_path,
        "SELECT operation_type, lines_added, lines_removed FROM file_operations "
        "WHERE session_id = ? ORDER BY created_at",
        (MAIN,),
    )
    assert [(o["operation_type"], o["lines_added"], o["lines_removed"]) for o in ops] == [
        ("created", 1, 0),
        ("read", None, None),
        ("edited", 1, 1),
    ]
    errors = query_db(config.db_path, "SELECT error_type FROM session_errors ORDER BY error_type")
    assert [e["error_type"] for e in errors] == ["UnknownError", "retry"]
    (compaction,) = query_db(config.db_path, "SELECT trigger FROM compaction_events")
    assert compaction["trigger"] == "auto"


def test_daemon_down_spools_in_the_protocols_format_then_drains_without_duplicates(
    make_daemon, agentd_env, config
):
    stats = replay(agentd_env)
    expected = len(forwarded(EXAMPLES))
    assert (stats["acked"], stats["spooled"], stats["pending"]) == (0, expected, 0)
    files = spool_files(config)
    assert len(files) == 1
    assert re.fullmatch(r"opencode-\d+-[0-9a-f-]+\.ndjson", files[0].name), files[0].name
    assert files[0].stat().st_mode & 0o777 == 0o600
    assert config.spool_dir.stat().st_mode & 0o777 == 0o700
    lines = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert len(lines) == expected
    assert all(set(line) == {"source", "received_at", "payload"} for line in lines)
    assert {line["source"] for line in lines} == {"opencode"}
    assert [line["payload"] for line in lines[:2]] == [
        {"kind": r["kind"], **({"event": r["event"]} if r["kind"] == "event" else {})}
        for r in forwarded(EXAMPLES)[:2]
    ]

    daemon = make_daemon().start()
    assert wait_for(lambda: spool_files(config) == [])
    after_drain = {t: count(config, t) for t in ("events", "tools", "file_operations", "sessions")}
    assert after_drain["events"] == expected
    # The same payloads once more, live this time: not one typed row more. (The raw log keeps
    # each occurrence: these were seen again, at another moment.)
    again = replay(agentd_env)
    assert again["acked"] == expected
    typed = ("tools", "file_operations", "sessions")
    assert {t: count(config, t) for t in typed} == {t: after_drain[t] for t in typed}
    assert count(config, "events") == 2 * expected
    assert daemon.call("status")["spool_events_drained"] == expected


def test_exit_right_after_the_last_callback_loses_nothing(daemon, agentd_env):
    stats = replay(agentd_env, end="exit")
    assert stats["returncode"] == 0
    # Exited before anything was acked: all of it went to the spool at exit, and was drained.
    assert wait_for(lambda: count(daemon.config, "events") == stats["enqueued"])
    assert wait_for(lambda: spool_files(daemon.config) == [])


def test_sigterm_loses_nothing_and_still_terminates(daemon, agentd_env):
    stats = replay(agentd_env, end="signal")
    assert stats["returncode"] == -signal.SIGTERM  # the default action, as without the plugin
    assert wait_for(lambda: count(daemon.config, "events") == stats["enqueued"])


def test_event_loop_running_dry_delivers_before_exiting(daemon, agentd_env):
    result = driver(agentd_env, "replay", str(EXAMPLES_FILE), "--end", "natural")
    assert result.returncode == 0, result.stderr
    stats, final = (json.loads(line) for line in result.stdout.splitlines())
    # Delivered before the process ended, or (when beforeExit's bounded wait ran out on a loaded
    # machine) spooled at exit and drained by the daemon: never lost, never stored twice.
    assert final["final"] and (final["pending"], final["dropped"]) == (0, 0)
    assert final["acked"] + final["spooled"] == stats["enqueued"]
    assert wait_for(lambda: spool_files(daemon.config) == [], 60)
    assert wait_for(lambda: count(daemon.config, "events") == stats["enqueued"], 60)
    assert count(daemon.config, "events") == stats["enqueued"]


def test_hostile_arguments_never_throw_and_are_kept(daemon, agentd_env):
    result = driver(agentd_env, "hostile")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert (stats["threw"], stats["rejected"]) == (0, 0)
    assert stats["acked"] == stats["calls"]
    lones = query_db(daemon.config.db_path, "SELECT payload FROM events WHERE kind = 'lone'")
    assert lones  # sent more than once: each occurrence is its own event
    for lone in lones:
        assert json.loads(lone["payload"])["event"]["properties"]["text"] == "a\ufffdb"
    circular = query_db(
        daemon.config.db_path, "SELECT count(*) AS n FROM events WHERE payload LIKE '%[circular]%'"
    )
    assert circular[0]["n"] > 0


def test_the_benchmarks_workload_delivers_every_call_to_the_real_daemon(daemon, agentd_env):
    # Its cost is a figure bench/opencode_plugin prints beside a baseline, not a timed test.
    result = driver(agentd_env, "bench", "--calls", "1000")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["median_ms"] > 0, figures
    assert figures["acked"] == (200 + 1000) * 2, figures
    assert figures["spooled"] == 0, figures
    (row,) = query_db(daemon.config.db_path, "SELECT count(*) AS n FROM tools")
    # One row per call id, its before and after merged: the warm-up's ids are call_-i (call_0
    # is also the first timed call's).
    call_ids = {f"call_{-i}" for i in range(200)} | {f"call_{i}" for i in range(1000)}
    assert row["n"] == len(call_ids)


def test_the_plugin_file_exports_only_the_plugin():
    """OpenCode calls every export as a plugin and rejects a module with any other export."""
    source = (PLUGIN_DIR / "src" / "agentd.ts").read_text()
    exports = re.findall(r"^export\s+(?!type\b)(\w+)\s+(\w+)", source, re.M)
    assert exports == [("const", "AgentdPlugin")]
    assert re.findall(r"^import (?!type )", source, re.M) == ["import "] * 4  # node: builtins
    assert all(
        m.startswith("node:")
        for m in re.findall(r'^import (?!type ).* from "([^"]+)"', source, re.M)
    )
    assert source.splitlines()[0].startswith("// agentd-opencode-plugin")
