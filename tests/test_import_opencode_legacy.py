"""`agentd import opencode` on the JSON storage of OpenCode 1.1.x (`~/.local/share/opencode/storage/`).

The storage is written by the real old CLI (opencode-ai 1.1.65, installed by scripts/install-agents
into .agents-legacy/) run offline against the fake model server, in a git project (OpenCode keeps
snapshot diffs only there): a tools run, an automatic compaction, and a run that dies on HTTP 401.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agentd.db.store import connect_sync
from conftest import PAYLOADS, query_db

pytestmark = pytest.mark.realclient

TYPED = ("sessions", "messages", "tools", "file_operations", "session_errors", "compaction_events")


@pytest.fixture(autouse=True)
def _inline_prepare(monkeypatch):
    monkeypatch.setenv("AGENTD_IMPORT_WORKERS", "0")


@pytest.fixture(scope="module")
def legacy() -> Iterator[SimpleNamespace]:
    """The storage tree the real OpenCode 1.1.65 leaves after three runs."""
    from realclients.agents import Scratch, opencode_legacy_bin, run_opencode
    from realclients.fake_model import FakeModelServer, http_error, text, tool

    base = Path(tempfile.mkdtemp(prefix="agl-", dir="/tmp"))
    try:
        scratch = Scratch.create(prefix="oc-", base=base)
        proj = scratch.proj
        (proj / "old.txt").write_text("a\nb\nc\n")
        for argv in (
            ["git", "init", "-q"],
            ["git", "add", "."],
            ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "0"],
        ):
            subprocess.run(argv, cwd=proj, check=True, capture_output=True)
        hello, old = str(proj / "hello.txt"), str(proj / "old.txt")
        scripts = {
            "tools": [
                tool("bash", {"command": "echo hello-oc", "description": "Say hello"}),
                tool("write", {"filePath": hello, "content": "hello world\nsecond line\n"}),
                tool("edit", {"filePath": hello, "oldString": "world", "newString": "there"}),
                tool("read", {"filePath": old}),  # 1.1 refuses to overwrite an unread file
                tool("write", {"filePath": old, "content": "a\nB\nc\nd\n"}),
                tool("bash", {"command": "ls /definitely/not/here", "description": "Fail"}),
                tool("read", {"filePath": str(proj / "missing.txt")}),
                text("All done."),
            ],
            "compaction": [
                tool(
                    "bash",
                    {"command": "echo big", "description": "Big"},
                    usage={"input_tokens": 195_000, "output_tokens": 50},
                ),
                text("After compaction."),
            ],  # fmt: skip
            "401": [http_error(401, message="fake unauthorized")],
        }
        sessions: dict[str, str] = {}
        storage = scratch.home / ".local" / "share" / "opencode" / "storage"
        for name, script in scripts.items():
            before = set(storage.glob("session/*/*.json"))
            with FakeModelServer(script) as server:
                proc = run_opencode(scratch, server, "do the thing", binary=opencode_legacy_bin())
            assert proc.returncode == 0, proc.stderr[-2000:]
            (new,) = set(storage.glob("session/*/*.json")) - before
            sessions[name] = new.stem
        assert not (storage.parent / "opencode.db").exists()  # 1.1.65 keeps JSON only
        yield SimpleNamespace(scratch=scratch, storage=storage, sessions=sessions, base=base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def prepared_home(path: Path) -> Path:
    """An AGENTD_HOME whose database has `outcome` and `last_error` on sessions (another branch's
    migration adds them; added here when this schema lacks them)."""
    path.mkdir(parents=True)
    conn = connect_sync(path / "agentd.db")
    present = {r[1] for r in conn.execute("PRAGMA table_info(sessions)")}
    for column in ("outcome", "last_error"):
        if column not in present:
            conn.execute(f"ALTER TABLE sessions ADD COLUMN {column} TEXT")
    conn.close()
    return path


def agentd(home: Path, user_home: Path, *args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTD_", "XDG_", "OPENCODE"))}
    env.update(AGENTD_HOME=str(home), HOME=str(user_home), AGENTD_IMPORT_WORKERS="0")
    proc = subprocess.run(
        [sys.executable, "-m", "agentd", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def snapshot(db: Path) -> dict[str, list[dict[str, Any]]]:
    return {t: query_db(db, f"SELECT * FROM {t} ORDER BY id") for t in TYPED}


def test_storage_from_the_default_place_gives_the_live_rows(legacy, tmp_path):
    home = prepared_home(tmp_path / "agentd")
    summary = agentd(home, legacy.scratch.home, "import", "opencode")  # no --db: found in HOME
    assert summary["paths"] == [str(legacy.storage)]
    assert summary["files"]["read"] == 3 and summary["errors"] == []
    db = home / "agentd.db"
    by_id = {s["id"]: s for s in query_db(db, "SELECT * FROM sessions")}
    tools_s, compact_s, error_s = (
        by_id[legacy.sessions[k]] for k in ("tools", "compaction", "401")
    )
    for s in by_id.values():
        assert (s["source"], s["title"], s["project_path"]) == (
            "opencode", "Fake session title", str(legacy.scratch.proj)
        )  # fmt: skip
        assert (s["model"], s["provider"]) == ("fake/model", "fake")
        assert s["prompt_count"] == 1  # the compaction request and its "Continue" are OpenCode's
    assert compact_s["message_count"] == 6
    assert (tools_s["outcome"], compact_s["outcome"]) == ("ok", "ok")
    assert (error_s["outcome"], error_s["last_error"]) == ("error", "HTTP 401: fake unauthorized")

    tools = query_db(
        db,
        "SELECT tool_name, success, exit_code, error_message, file_path FROM tools"
        " WHERE session_id = ? ORDER BY started_at",
        (tools_s["id"],),
    )
    assert [(t["tool_name"], t["success"], t["exit_code"]) for t in tools] == [
        ("bash", 1, 0),
        ("write", 1, None),
        ("edit", 1, None),
        ("read", 1, None),
        ("write", 1, None),
        ("bash", 0, 2),
        ("read", 0, None),
    ]
    assert "missing.txt" in tools[-1]["error_message"]
    ops = query_db(
        db,
        "SELECT file_path, operation_type, lines_added, lines_removed FROM file_operations"
        " WHERE session_id = ? ORDER BY created_at",
        (tools_s["id"],),
    )
    proj = legacy.scratch.proj
    assert [tuple(o.values()) for o in ops] == [
        (str(proj / "hello.txt"), "created", 2, 0),
        (str(proj / "hello.txt"), "edited", 1, 1),
        (str(proj / "old.txt"), "read", None, None),
        # The write over old.txt reports no lines; OpenCode's snapshot diff of the turn does.
        (str(proj / "old.txt"), "edited", 2, 1),
    ]
    (compaction,) = query_db(db, "SELECT * FROM compaction_events")
    assert (compaction["session_id"], compaction["trigger"]) == (compact_s["id"], "auto")
    assert compaction["tokens_before"] == 100 and compaction["tokens_after"] == 20


def test_second_import_reads_nothing_and_a_changed_session_is_read_again(legacy, tmp_path):
    home = prepared_home(tmp_path / "agentd")
    storage = tmp_path / "storage"
    shutil.copytree(legacy.storage, storage)
    first = agentd(home, tmp_path, "import", "opencode", "--db", str(storage))
    before = snapshot(home / "agentd.db")
    second = agentd(home, tmp_path, "import", "opencode", "--db", str(storage))
    assert (first["files"]["read"], second["files"]["unchanged"]) == (3, 3)
    assert second["events"]["sent"] == 0 and snapshot(home / "agentd.db") == before
    # One part file of the 401 session rewritten (same content, new mtime): only that session.
    (part,) = [p for p in storage.glob("part/*/*.json") if legacy.sessions["401"] in p.read_text()][
        :1
    ]
    os.utime(part, ns=(1, 1))
    third = agentd(home, tmp_path, "import", "opencode", "--db", str(storage))
    assert (third["files"]["read"], third["files"]["unchanged"]) == (1, 2)
    assert snapshot(home / "agentd.db") == before


def migrated_database(storage: Path, path: Path) -> Path:
    """opencode.db as OpenCode 1.2 to 1.15 fill it from the JSON files on first start: the same
    session, message and part ids, `data` = the object less its id columns."""
    conn = sqlite3.connect(path)
    conn.executescript((PAYLOADS / "opencode_db_schema.sql").read_text())
    for file in storage.glob("session/*/*.json"):
        s = json.loads(file.read_text())
        conn.execute(
            "INSERT INTO session (id, project_id, slug, directory, title, version, time_created,"
            " time_updated) VALUES (?,?,?,?,?,?,?,?)",
            (s["id"], s["projectID"], s["slug"], s["directory"], s["title"], s["version"],
             s["time"]["created"], s["time"]["updated"]),
        )  # fmt: skip
    created: dict[str, int] = {}
    for file in storage.glob("message/*/*.json"):
        m = json.loads(file.read_text())
        created[m["id"]] = m["time"]["created"]
        data = {k: v for k, v in m.items() if k not in ("id", "sessionID")}
        at = m["time"].get("completed") or m["time"]["created"]
        conn.execute(
            "INSERT INTO message VALUES (?,?,?,?,?)",
            (m["id"], m["sessionID"], m["time"]["created"], at, json.dumps(data)),
        )
    for file in storage.glob("part/*/*.json"):
        p = json.loads(file.read_text())
        data = {k: v for k, v in p.items() if k not in ("id", "messageID", "sessionID")}
        times = p.get("state", {}).get("time", {})
        start = times.get("start") or created[p["messageID"]]
        conn.execute(
            "INSERT INTO part VALUES (?,?,?,?,?,?)",
            (p["id"], p["messageID"], p["sessionID"], start, times.get("end") or start,
             json.dumps(data)),
        )  # fmt: skip
    conn.commit()
    conn.close()
    return path


def test_a_session_in_both_storage_and_database_is_imported_once(legacy, tmp_path):
    database = migrated_database(legacy.storage, tmp_path / "opencode.db")
    alone = prepared_home(tmp_path / "alone")
    agentd(alone, tmp_path, "import", "opencode", "--db", str(legacy.storage))
    both = prepared_home(tmp_path / "both")
    summary = agentd(
        both, tmp_path, "import", "opencode", "--db", str(legacy.storage), "--db", str(database)
    )
    assert summary["files"]["read"] == 4 and summary["errors"] == []
    expected, got = snapshot(alone / "agentd.db"), snapshot(both / "agentd.db")
    for table in TYPED:
        assert [r["id"] for r in got[table]] == [r["id"] for r in expected[table]], table
    assert len(got["sessions"]) == 3 and len(got["tools"]) == 8
    # The database's copy says the same things (it is read last, so its values are the ones kept).
    for table in ("tools", "file_operations", "compaction_events"):
        assert got[table] == expected[table], table
    columns = ("id", "title", "model", "prompt_count", "message_count", "outcome", "last_error")
    assert [{c: s[c] for c in columns} for s in got["sessions"]] == [
        {c: s[c] for c in columns} for s in expected["sessions"]
    ]


def test_damaged_files_are_skipped_and_counted_and_a_wrong_directory_is_refused(legacy, tmp_path):
    storage = tmp_path / "storage"
    shutil.copytree(legacy.storage, storage)
    tools_session = legacy.sessions["tools"]
    (session_file,) = storage.glob(f"session/*/{legacy.sessions['401']}.json")
    session_file.write_text("{not json")
    (message,) = sorted(storage.glob(f"message/{tools_session}/*.json"))[-1:]
    message.write_text("[1, 2")
    home = prepared_home(tmp_path / "agentd")
    summary = agentd(home, tmp_path, "import", "opencode", "--db", str(storage))
    assert summary["files"] == {
        "found": 3, "unchanged": 0, "read": 2, "vanished": 0, "unreadable": 1,
    }  # fmt: skip
    assert summary["errors"] == [f"{session_file}: unreadable session file (not JSON)"]
    assert summary["skipped"]["message: unreadable file (not JSON)"] == 1
    ids = {s["id"] for s in query_db(home / "agentd.db", "SELECT id FROM sessions")}
    assert ids == {tools_session, legacy.sessions["compaction"]}
    # The tools session lost only its last message (the final text); its tools are all there.
    assert len(query_db(home / "agentd.db", "SELECT id FROM tools WHERE session_id = ?",
                        (tools_session,))) == 7  # fmt: skip

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTD_", "XDG_"))}
    env.update(AGENTD_HOME=str(home), HOME=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "agentd", "import", "opencode", "--db", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "not OpenCode's storage (it has no session/ folder)" in proc.stderr
