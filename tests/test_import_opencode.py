"""`agentd import opencode`: opencode.db -> the plugin's event shapes -> the same rows as live capture.

The fast tests build an opencode.db with OpenCode's real schema (tests/payloads) and the rows
the real plugin events of tests/payloads/opencode_plugin_events_examples.jsonl describe; the realclient
tests at the end let the real OpenCode CLI write its database, with and without live capture.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agentd.config import Config
from agentd.importers import run_import
from agentd.importers.opencode import default_databases
from conftest import PAYLOADS, load_jsonl, query_db, wait_for

TYPED = ("sessions", "messages", "tools", "file_operations", "session_errors", "compaction_events")
MAIN = "ses_e02fabf2effeHoAA45Cl6mOCI7"


@pytest.fixture(autouse=True)
def _inline_prepare(monkeypatch):
    monkeypatch.setenv("AGENTD_IMPORT_WORKERS", "0")


def rows(db: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    return query_db(db, sql, params)


def snapshot(db: Path, tables: tuple[str, ...] = TYPED) -> dict[str, list[dict[str, Any]]]:
    return {t: rows(db, f"SELECT * FROM {t} ORDER BY id") for t in tables}


def plugin_events(scenario: str = "oc-main") -> list[dict[str, Any]]:
    return [
        {k: v for k, v in e.items() if k not in ("scenario", "ts", "pid")}
        for e in load_jsonl("opencode_plugin_events_examples.jsonl")
        if e["scenario"] == scenario and e["kind"] != "plugin.init"
    ]


def build_db(path: Path, events: list[dict[str, Any]]) -> Path:
    """An opencode.db holding what the bus events say: the last snapshot of every session,
    message and part, as OpenCode stores them (data = the object less its id columns)."""
    conn = sqlite3.connect(path)
    conn.executescript((PAYLOADS / "opencode_db_schema.sql").read_text())
    sessions: dict[str, dict[str, Any]] = {}
    messages: dict[str, tuple[dict[str, Any], int]] = {}
    parts: dict[str, tuple[dict[str, Any], int, int]] = {}
    for tick, record in enumerate(events):
        event = record.get("event") or {}
        props = event.get("properties") or {}
        at = 1795246342000 + tick
        if event.get("type") in ("session.created", "session.updated"):
            sessions[props["info"]["id"]] = props["info"]
        elif event.get("type") == "message.updated":
            messages[props["info"]["id"]] = (props["info"], at)
        elif event.get("type") == "message.part.updated":
            part = props["part"]
            first = parts.get(part["id"], (None, at, at))[2]
            parts[part["id"]] = (part, at, first)
    for info in sessions.values():
        conn.execute(
            "INSERT INTO session (id, project_id, parent_id, slug, directory, path, title, version,"
            " agent, model, time_created, time_updated) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (info["id"], info["projectID"], info.get("parentID"), info["slug"], info["directory"],
             info.get("path"), info["title"], info["version"], info.get("agent"),
             json.dumps(info.get("model")), info["time"]["created"], info["time"]["updated"]),
        )  # fmt: skip
    for info, at in messages.values():
        data = {k: v for k, v in info.items() if k not in ("id", "sessionID")}
        conn.execute(
            "INSERT INTO message VALUES (?,?,?,?,?)",
            (info["id"], info["sessionID"], info["time"]["created"], at, json.dumps(data)),
        )
    for part, at, first in parts.values():
        data = {k: v for k, v in part.items() if k not in ("id", "messageID", "sessionID")}
        conn.execute(
            "INSERT INTO part VALUES (?,?,?,?,?,?)",
            (part["id"], part["messageID"], part["sessionID"], first, at, json.dumps(data)),
        )
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def opencode_db(tmp_path) -> Path:
    return build_db(tmp_path / "opencode.db", plugin_events())


def test_database_rows_become_the_live_rows(config, opencode_db):
    digest = hashlib.sha256(opencode_db.read_bytes()).hexdigest()
    summary = run_import(config, "opencode", [opencode_db])
    assert (summary.files_read, summary.errors, summary.events_refused) == (1, [], 0)
    assert hashlib.sha256(opencode_db.read_bytes()).hexdigest() == digest  # read-only
    db = config.db_path
    (s,) = rows(db, "SELECT * FROM sessions")
    assert (s["id"], s["source"], s["project_name"]) == (MAIN, "opencode", "proj")
    assert s["title"] and s["project_path"] == "/home/dev/runs/oc-main/proj"
    tools = {t["tool_name"]: t for t in rows(db, "SELECT * FROM tools ORDER BY started_at")}
    assert set(tools) == {"bash", "write", "read", "edit"}
    assert (tools["bash"]["success"], tools["bash"]["exit_code"]) == (1, 0)
    assert all(t["id"].startswith(f"{MAIN}:toolu_fake_") for t in tools.values())
    failed = rows(db, "SELECT success, error_message FROM tools WHERE success = 0")
    assert len(failed) == 1 and "does-not-exist.txt" in failed[0]["error_message"]  # thrown
    ops = rows(db, "SELECT operation_type FROM file_operations ORDER BY created_at")
    assert [o["operation_type"] for o in ops] == ["created", "read", "edited"]
    kinds = {r["kind"] for r in rows(db, "SELECT DISTINCT kind FROM events")}
    # A typed prompt is sent as the plugin's chat.message too: it says the message is a prompt.
    assert kinds == {"session.updated", "message.updated", "message.part.updated", "chat.message"}
    (s,) = rows(db, "SELECT prompt_count FROM sessions")
    assert s["prompt_count"] == 1
    assert summary.skipped["part (not tool, compaction or retry)"] > 0  # text, step-start, ...


def test_import_after_live_capture_duplicates_nothing(daemon, opencode_db):
    events = plugin_events()
    for received, payload in enumerate(events):
        daemon.ingest("opencode", payload, received_at=1795246342000 + received)
    db = daemon.config.db_path
    live = snapshot(db)
    run_import(daemon.config, "opencode", [opencode_db])
    both = snapshot(db)
    for table in TYPED:
        live_ids = {r["id"] for r in live[table]}
        assert live_ids <= {r["id"] for r in both[table]}, table
    # Nothing the plugin saw gets a second row; the live values stay.
    assert [t["id"] for t in both["tools"]] == [t["id"] for t in live["tools"]]
    assert len(both["file_operations"]) == len(live["file_operations"])
    by_id = {t["id"]: t for t in both["tools"]}
    for t in live["tools"]:
        got = by_id[t["id"]]
        assert (got["success"], got["exit_code"], got["tool_name"]) == (
            t["success"], t["exit_code"], t["tool_name"]
        )  # fmt: skip


def test_second_import_reads_only_what_changed(config, opencode_db):
    run_import(config, "opencode", [opencode_db])
    first = snapshot(config.db_path, (*TYPED, "events"))
    unchanged = run_import(config, "opencode", [opencode_db])
    assert (unchanged.files_unchanged, unchanged.records, unchanged.events_sent) == (1, 0, 0)
    assert snapshot(config.db_path, (*TYPED, "events")) == first

    # OpenCode finishes a message later (a row changes in place, time_updated moves on).
    conn = sqlite3.connect(opencode_db)
    newest = conn.execute("SELECT max(time_updated) FROM part").fetchone()[0]
    part_id, data = conn.execute(
        "SELECT id, data FROM part WHERE json_extract(data, '$.tool') = 'bash'"
    ).fetchone()
    part = json.loads(data)
    part["state"]["metadata"]["exit"] = 4
    conn.execute(
        "UPDATE part SET data = ?, time_updated = ? WHERE id = ?",
        (json.dumps(part), newest + 120_000, part_id),
    )
    conn.commit()
    conn.close()
    again = run_import(config, "opencode", [opencode_db])
    # Rows changed within a minute before the newest one seen are read again (writes that were
    # in flight), and deduplicated: one new event.
    assert again.files_read == 1 and (again.events_new, again.rows_added["events"]) == (1, 1)
    (bash,) = rows(config.db_path, "SELECT success, exit_code FROM tools WHERE tool_name = 'bash'")
    assert bash == {"success": 0, "exit_code": 4}


def test_unreadable_rows_are_skipped_and_counted(config, opencode_db):
    conn = sqlite3.connect(opencode_db)
    conn.execute("UPDATE part SET data = '{not json' WHERE json_extract(data, '$.tool') = 'read'")
    conn.execute("INSERT INTO message VALUES ('msg_x', ?, 1, 2, '[1, 2')", (MAIN,))
    conn.commit()
    conn.close()
    summary = run_import(config, "opencode", [opencode_db])
    assert summary.errors == []
    assert summary.skipped["message: unreadable data"] == 1
    assert summary.skipped["part: unreadable data"] == 2  # both reads
    assert summary.skipped["part (not tool, compaction or retry)"] > 0
    tools = {t["tool_name"] for t in rows(config.db_path, "SELECT tool_name FROM tools")}
    assert tools == {"bash", "write", "edit"}


def test_a_file_that_is_not_an_opencode_database_is_an_error_not_a_crash(config, tmp_path):
    bogus = tmp_path / "opencode.db"
    sqlite3.connect(bogus).execute("CREATE TABLE t (x)").connection.close()
    garbage = tmp_path / "opencode-beta.db"
    garbage.write_bytes(b"not a database at all" * 100)
    summary = run_import(config, "opencode", [bogus, garbage])
    assert summary.files_unreadable == 2 and len(summary.errors) == 2
    assert "not an OpenCode database" in summary.errors[0]


def test_default_databases_are_found_per_channel(tmp_path):
    data = tmp_path / "share" / "opencode"
    data.mkdir(parents=True)
    for name in ("opencode.db", "opencode-beta.db", "opencode.db-wal", "other.db"):
        (data / name).write_bytes(b"")
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "share")}
    assert [p.name for p in default_databases(env)] == ["opencode-beta.db", "opencode.db"]
    assert default_databases(dict(env, OPENCODE_DB="custom.db")) == [data / "custom.db"]


def test_cli_imports_a_given_database(agentd_env, opencode_db):
    proc = subprocess.run(
        [sys.executable, "-m", "agentd", "import", "opencode", "--db", str(opencode_db), "--json"],
        env=dict(agentd_env, AGENTD_IMPORT_WORKERS="0"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["source"] == "opencode" and summary["rows_added"]["tools"] == 5
    config = Config.load(agentd_env)
    assert (config.state_dir / "import-state.json").exists()


# -- the real OpenCode, with and without live capture ---------------------------------------------

# Columns only the plugin's live events fill or time, per table (docs/import.md).
LIVE_ONLY = {
    # *_at: when each was set, by each side's own clock (the plugin's event time, or the row's
    # time_updated at import): the values (status aside) must agree, the instants need not.
    "sessions": {"status", "status_at", "outcome_at", "last_error_at", "updated_at", "redactions"},
    "messages": {"redactions"},
    # started/ended also count the plugin callbacks around the tool (tool.execute.before/after).
    "tools": {"started_at", "ended_at", "created_at", "redactions"},
    "file_operations": {"created_at", "redactions"},
    "session_errors": {"redactions"},
    "compaction_events": {"created_at", "redactions"},
}


def _comparable(table: str, row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for column, value in row.items():
        if column in LIVE_ONLY[table]:
            continue
        if column in ("tool_input", "tool_output") and isinstance(value, str) and value[:1] in "{[":
            value = json.loads(value)
        out[column] = value
    return out


@pytest.fixture(scope="module")
def opencode_runs():
    """See _opencode_runs; its directory goes, however it ends."""
    base = Path(tempfile.mkdtemp(prefix="agj-", dir="/tmp"))
    try:
        yield _opencode_runs(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _opencode_runs(base: Path) -> Any:
    """The real CLI with agentd's plugin and a daemon capturing live; then imports of its
    opencode.db: through that daemon (live + import), again (a no-op), and alone (import only)."""
    from realclients.agents import Scratch, run_opencode
    from realclients.fake_model import FakeModelServer, http_error, text, tool

    from conftest import Daemon

    scratch = Scratch.create(prefix="oc-", base=base)
    live_home = base / "live"
    live_home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTD_", "XDG_"))}
    env.update(AGENTD_HOME=str(live_home), HOME=str(scratch.home), AGENTD_IMPORT_WORKERS="0")
    install = subprocess.run(
        [sys.executable, "-m", "agentd", "install", "opencode", "--scope", "project",
         "--project-dir", str(scratch.proj)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    config = Config.load(env)
    daemon = Daemon(env, config).start()
    agent_env = {"AGENTD_HOME": str(live_home)}
    hello = str(scratch.proj / "hello.txt")
    scripts = [
        (
            [
                tool("bash", {"command": "echo hello-oc", "description": "Say hello"}),
                tool("write", {"filePath": hello, "content": "hello world\nsecond line\n"}),
                tool("read", {"filePath": hello}),
                tool("edit", {"filePath": hello, "oldString": "world", "newString": "there"}),
                tool("edit", {"filePath": hello, "oldString": "NOT THERE", "newString": "x"}),
                tool("bash", {"command": "ls /definitely/not/here", "description": "Fail"}),
                tool("read", {"filePath": str(scratch.proj / "missing.txt")}),
                text("All done."),
            ],
            None,
        ),
        (
            [
                tool("task", {"description": "Run sub task", "subagent_type": "general",
                              "prompt": "SUBAGENT_TASK: run echo from-subagent"}),
                text("Done."),
            ],
            {"SUBAGENT_TASK": [tool("bash", {"command": "echo sub", "description": "Echo"}),
                               text("Sub done.")]},
        ),
        (
            [
                tool("bash", {"command": "echo big", "description": "Big"},
                     usage={"input_tokens": 195_000, "output_tokens": 50}),
                text("After compaction."),
            ],
            None,
        ),
        ([http_error(400, message="fake bad request")], None),
    ]  # fmt: skip
    try:
        for script, subscripts in scripts:
            with FakeModelServer(script, subscripts=subscripts) as server:
                run_opencode(scratch, server, "do the thing", extra_env=agent_env)
        db = config.db_path
        # The plugin's last events settle: acked (committed) or spooled at exit, then drained.
        assert wait_for(
            lambda: (
                rows(db, "SELECT id FROM session_errors")
                and not (config.spool_dir.exists() and list(config.spool_dir.glob("*")))
            ),
            60,
        )
        live = snapshot(db, (*TYPED, "events"))
        first = run_import(config, "opencode", [scratch.opencode_db])
        both = snapshot(db, (*TYPED, "events"))
        second = run_import(config, "opencode", [scratch.opencode_db])
        again = snapshot(db, (*TYPED, "events"))
    finally:
        daemon.stop()
    alone = Config.load({"AGENTD_HOME": str(base / "alone")})
    only = run_import(alone, "opencode", [scratch.opencode_db])
    return SimpleNamespace(
        live=live, both=both, again=again, first=first, second=second, only=only,
        imported=snapshot(alone.db_path, (*TYPED, "events")),
    )  # fmt: skip


@pytest.mark.realclient
def test_real_opencode_import_after_live_capture_duplicates_nothing(opencode_runs):
    run = opencode_runs
    assert run.first.mode == "daemon" and run.first.events_refused == 0
    assert run.first.events_stored > 0
    for table in TYPED:
        live_ids = {r["id"] for r in run.live[table]}
        both_ids = {r["id"] for r in run.both[table]}
        assert both_ids == live_ids, table  # the plugin saw everything: nothing to add
    live_tools = {t["id"]: t for t in run.live["tools"]}
    for t in run.both["tools"]:
        before = live_tools[t["id"]]
        assert (t["success"], t["exit_code"], t["error_message"]) == (
            before["success"], before["exit_code"], before["error_message"]
        )  # fmt: skip
    assert {t["tool_name"] for t in run.both["tools"] if t["success"] == 0} == {
        "edit",
        "bash",
        "read",
    }


@pytest.mark.realclient
def test_real_opencode_import_twice_changes_nothing(opencode_runs):
    assert opencode_runs.second.files_unchanged == 1 and opencode_runs.second.events_sent == 0
    assert opencode_runs.again == opencode_runs.both


@pytest.mark.realclient
def test_real_opencode_import_alone_gives_the_same_tables(opencode_runs):
    run = opencode_runs
    assert run.only.mode == "direct" and run.only.errors == []
    mismatches: list[tuple[Any, ...]] = []
    for table in TYPED:
        both = {r["id"]: r for r in run.both[table]}
        alone = {r["id"]: r for r in run.imported[table]}
        live_only = set(both) - set(alone)
        if table == "session_errors":  # bus events only: session.error, session.status retry
            assert {both[i]["error_type"] for i in live_only} == {"APIError"}
        elif table == "file_operations":  # file.edited bus events, kept apart from the tools' ops
            assert {both[i]["operation_type"] for i in live_only} == {"file.edited"}
        else:
            assert live_only == set(), table
        assert set(alone) <= set(both), table
        for key, row in alone.items():
            got, expected = _comparable(table, row), _comparable(table, both[key])
            mismatches.extend(
                (table, key, c, got.get(c), expected.get(c))
                for c in {*got, *expected}
                if got.get(c) != expected.get(c)
            )
    assert mismatches == []
    (compaction,) = run.imported["compaction_events"]
    assert (compaction["trigger"], compaction["tokens_before"]) == ("auto", 100)


def test_bare_import_does_both_from_their_default_places(agentd_env, tmp_path):
    home = tmp_path / "home"
    project = home / ".claude" / "projects" / "-home-dev-proj"
    project.mkdir(parents=True)
    (project / "s.jsonl").write_bytes((PAYLOADS / "claude_transcript_trimmed.jsonl").read_bytes())
    data = home / ".local" / "share" / "opencode"
    data.mkdir(parents=True)
    build_db(data / "opencode.db", plugin_events())
    env = {
        k: v for k, v in agentd_env.items() if not k.startswith(("XDG_", "CLAUDE_", "OPENCODE_"))
    }
    env.update(HOME=str(home), AGENTD_IMPORT_WORKERS="0")
    proc = subprocess.run(
        [sys.executable, "-m", "agentd", "import", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=os.fspath(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    both = json.loads(proc.stdout)
    assert set(both) == {"claude", "opencode"}
    assert both["claude"]["rows_added"]["tools"] == 5
    assert both["opencode"]["rows_added"]["tools"] == 5
