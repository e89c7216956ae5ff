"""`agentd import opencode` on hostile databases and OpenCode 1.1 storage trees: each bad file,
row or value is skipped (or repaired) and counted, everything else imported, and no run hangs,
fills memory or ends in a traceback."""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import PAYLOADS, query_db

T0 = 1767225600000


@pytest.fixture(autouse=True)
def _inline_prepare(monkeypatch):
    monkeypatch.setenv("AGENTD_IMPORT_WORKERS", "0")


def agentd(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """The CLI in a child process: a hang is a timeout, and its memory is capped at 1 GB."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    return subprocess.run(
        [sys.executable, "-m", "agentd", *args],
        env=dict(env, AGENTD_IMPORT_WORKERS="0"),
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=cap,
    )


def imported(env: dict[str, str], *args: str) -> dict[str, Any]:
    proc = agentd(env, "import", "opencode", "--json", *args)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)


def tool_ids(db: Path) -> list[str]:
    return [r["id"] for r in query_db(db, "SELECT id FROM tools ORDER BY id")]


# -- OpenCode 1.1's storage/ tree ------------------------------------------------------------------


def _write(root: Path, rel: str, value: Any) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(value if isinstance(value, bytes) else json.dumps(value).encode())
    return path


def _tool_part(part_id: str, tool: str = "bash", **state: Any) -> dict[str, Any]:
    return {
        "id": part_id, "messageID": "msg_a", "sessionID": "ses_L", "type": "tool", "tool": tool,
        "callID": f"c-{part_id}",
        "state": {"status": "completed", "input": {"command": "ls"}, "output": "x",
                  "metadata": {"exit": 0}, "time": {"start": T0 + 2, "end": T0 + 3}, **state},
    }  # fmt: skip


def storage_tree(root: Path) -> Path:
    """A session with a user message, an assistant message and two good tool parts."""
    _write(root, "session/proj/ses_L.json", {
        "id": "ses_L", "projectID": "proj", "directory": "/home/dev/p", "title": "t",
        "version": "1.1.65", "time": {"created": T0, "updated": T0 + 10},
    })  # fmt: skip
    _write(root, "message/ses_L/msg_u.json", {
        "id": "msg_u", "sessionID": "ses_L", "role": "user", "time": {"created": T0 + 1},
        "summary": {"diffs": [{"file": "a.txt", "additions": 1, "deletions": 0}]},
    })  # fmt: skip
    _write(root, "message/ses_L/msg_a.json", {
        "id": "msg_a", "sessionID": "ses_L", "role": "assistant", "parentID": "msg_u",
        "modelID": "claude-sonnet-4-5", "providerID": "anthropic", "cost": 0.5,
        "tokens": {"input": 100, "output": 50, "reasoning": 0, "cache": {"read": 0, "write": 0}},
        "time": {"created": T0 + 2, "completed": T0 + 3},
    })  # fmt: skip
    _write(root, "part/msg_a/prt_1.json", _tool_part("prt_1"))
    _write(root, "part/msg_a/prt_9.json", _tool_part("prt_9"))
    return root


def test_storage_reads_only_regular_files_of_bounded_size(agentd_env, agentd_home, tmp_path):
    storage = storage_tree(tmp_path / "storage")
    parts = storage / "part" / "msg_a"
    os.mkfifo(parts / "prt_fifo.json")  # a plain open() blocks on it for ever
    (parts / "prt_zero.json").symlink_to("/dev/zero")  # a plain read() fills memory
    (parts / "prt_loop.json").symlink_to(".")
    with (parts / "prt_big.json").open("wb") as f:
        f.truncate(65 << 20)  # sparse: over the 64 MiB bound without taking the disk
    _write(storage, "part/msg_a/prt_deep.json", b'{"type":"tool","x":' + b"[" * 100_000
           + b"]" * 100_000 + b"}")  # fmt: skip
    summary = imported(agentd_env, "--db", str(storage))
    assert summary["errors"] == [] and summary["files"]["read"] == 1
    assert summary["skipped"] == {
        "part: unreadable file (not a regular file)": 1,
        "part: unreadable file (a symlink)": 2,
        "part: unreadable file (over 64 MiB)": 1,
        "part: unreadable file (nested deeper than 256 levels)": 1,
    }
    assert tool_ids(agentd_home / "agentd.db") == ["ses_L:c-prt_1", "ses_L:c-prt_9"]


def test_storage_values_of_the_wrong_type_do_not_stop_the_import(agentd_env, agentd_home, tmp_path):
    storage = storage_tree(tmp_path / "storage")
    bad_write = _tool_part("prt_w", tool="write", input={"filePath": "/home/dev/p/a.txt"})
    bad_write["state"]["metadata"] = [1]  # a list where OpenCode writes an object
    _write(storage, "part/msg_a/prt_w.json", bad_write)
    _write(storage, "message/ses_L/msg_v.json", {
        "id": "msg_v", "sessionID": "ses_L", "role": "user", "summary": {"diffs": 5},
    })  # fmt: skip
    _write(storage, "message/ses_L/msg_w.json", {
        "id": "msg_w", "sessionID": "ses_L", "role": "assistant", "parentID": "msg_u",
        "cost": float("nan"), "tokens": {"input": float("inf")},
    })  # fmt: skip
    summary = imported(agentd_env, "--db", str(storage))
    assert summary["errors"] == [] and summary["files"]["read"] == 1
    assert summary["skipped"] == {"message.updated: NaN or an infinite number": 1}
    db = agentd_home / "agentd.db"
    assert tool_ids(db) == ["ses_L:c-prt_1", "ses_L:c-prt_9", "ses_L:c-prt_w"]
    assert [m["id"] for m in query_db(db, "SELECT id FROM messages ORDER BY id")] == [
        "msg_a", "msg_u", "msg_v",
    ]  # fmt: skip


# -- opencode.db -----------------------------------------------------------------------------------


def database(path: Path, *extra: tuple[str, tuple[Any, ...]]) -> Path:
    """An opencode.db of OpenCode's schema: a session, a user and an assistant message, a tool part
    (prt_1) and five more after it (prt_ok0..4), plus the `extra` statements."""
    conn = sqlite3.connect(path)
    conn.executescript((PAYLOADS / "opencode_db_schema.sql").read_text())
    conn.execute(
        "INSERT INTO project VALUES ('proj','/home/dev/p','git','p',NULL,NULL,NULL,?,?,NULL,'[]',"
        "NULL)",
        (T0, T0),
    )
    conn.execute(
        "INSERT INTO session (id, project_id, slug, directory, title, version, time_created,"
        " time_updated) VALUES ('ses_1','proj','s','/home/dev/p','t','1.18',?,?)",
        (T0, T0 + 10),
    )
    messages = {
        "msg_u1": {"role": "user", "time": {"created": T0 + 1},
                   "summary": {"diffs": [{"file": "a.txt", "additions": 1, "deletions": 0}]}},
        "msg_a1": {"role": "assistant", "parentID": "msg_u1", "modelID": "claude-sonnet-4-5",
                   "providerID": "anthropic", "cost": 0.5,
                   "tokens": {"input": 100, "output": 50, "reasoning": 0,
                              "cache": {"read": 0, "write": 0}},
                   "time": {"created": T0 + 2, "completed": T0 + 3}},
    }  # fmt: skip
    for n, (mid, data) in enumerate(messages.items()):
        conn.execute(
            "INSERT INTO message VALUES (?, 'ses_1', ?, ?, ?)",
            (mid, T0 + n, T0 + n, json.dumps(data)),
        )
    for n, pid in enumerate(["prt_1", *(f"prt_ok{i}" for i in range(5))]):
        part = _tool_part(pid)
        del part["id"], part["messageID"], part["sessionID"]
        conn.execute(
            "INSERT INTO part VALUES (?, 'msg_a1', 'ses_1', ?, ?, ?)",
            (pid, T0 + 3 + 2 * n, T0 + 3 + 2 * n, json.dumps(part)),
        )
    for sql, params in extra:
        conn.execute(sql, params)
    conn.commit()
    conn.close()
    return path


GOOD_TOOLS = ["ses_1:c-prt_1", *(f"ses_1:c-prt_ok{i}" for i in range(5))]


def test_rows_with_values_of_the_wrong_type_are_skipped_and_counted(
    agentd_env, agentd_home, tmp_path
):
    deep = '{"type":"tool","tool":"bash","x":' + "[" * 100_000 + "]" * 100_000 + "}"
    write = _tool_part("prt_w", tool="write", input={"filePath": "/home/dev/p/a.txt"})
    write["state"]["metadata"] = [1]
    del write["id"], write["messageID"], write["sessionID"]
    db = database(
        tmp_path / "opencode.db",
        ("UPDATE message SET time_updated = 'yesterday' WHERE id = 'msg_u1'", ()),
        ("UPDATE session SET time_updated = 9223372036854775807", ()),  # far in the future
        ("UPDATE part SET time_updated = x'00ff' WHERE id = 'prt_ok0'", ()),
        ("INSERT INTO part VALUES ('prt_deep', 'msg_a1', 'ses_1', ?, ?, ?)", (T0, T0, deep)),
        ("INSERT INTO part VALUES ('prt_w', 'msg_a1', 'ses_1', ?, ?, ?)",
         (T0 + 20, T0 + 20, json.dumps(write))),
        ("INSERT INTO message VALUES ('msg_n', 'ses_1', 1, ?, ?)",
         (T0 + 30, '{"role":"assistant","cost":NaN,"tokens":{"input":1e400}}')),
        ("INSERT INTO part VALUES ('prt_b', 'msg_a1', 'ses_1', ?, ?, ?)",
         (T0 + 40, T0 + 40, json.dumps(_tool_part("prt_b")).encode())),  # a BLOB, not text
    )  # fmt: skip
    summary = imported(agentd_env, "--db", str(db))
    assert summary["errors"] == [] and summary["files"]["read"] == 1
    assert summary["skipped"] == {
        "message: time_updated not an integer": 1,
        "part: time_updated not an integer": 1,
        "part: unreadable data": 2,  # the one nested too deep, the BLOB
        "message.updated: NaN or an infinite number": 1,
    }
    tools = tool_ids(agentd_home / "agentd.db")
    assert tools == sorted({*GOOD_TOOLS, "ses_1:c-prt_w"} - {"ses_1:c-prt_ok0"})
    # Nothing is read again but what is new (the mark moved past the bad rows), and the future
    # time moved it no further than now: a part written later is read.
    again = imported(agentd_env, "--db", str(db))
    assert again["files"]["unchanged"] == 1 and again["events"]["sent"] == 0
    later = _tool_part("prt_later")
    del later["id"], later["messageID"], later["sessionID"]
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO part VALUES ('prt_later', 'msg_a1', 'ses_1', ?, ?, ?)",
            (T0 + 50, int(time.time() * 1000), json.dumps(later)),
        )
    conn.close()
    imported(agentd_env, "--db", str(db))
    assert "ses_1:c-prt_later" in tool_ids(agentd_home / "agentd.db")


def test_a_row_that_is_not_utf8_is_repaired_and_blocks_no_other_row(
    agentd_env, agentd_home, tmp_path
):
    part = _tool_part("prt_bad", output="@")
    del part["id"], part["messageID"], part["sessionID"]
    raw = json.dumps(part).encode().replace(b'"@"', b'"\xff big"')
    db = database(
        tmp_path / "opencode.db",
        ("INSERT INTO part VALUES ('prt_bad', 'msg_a1', 'ses_1', ?, ?, CAST(? AS TEXT))",
         (T0 + 4, T0 + 4, raw)),
    )  # fmt: skip
    summary = imported(agentd_env, "--db", str(db))
    assert summary["errors"] == [] and summary["files"]["read"] == 1
    assert summary["repaired"] == {"invalid UTF-8 (replaced by U+FFFD)": 1}
    home = agentd_home / "agentd.db"
    assert tool_ids(home) == sorted([*GOOD_TOOLS, "ses_1:c-prt_bad"])
    (bad,) = query_db(home, "SELECT tool_output FROM tools WHERE id = 'ses_1:c-prt_bad'")
    assert "\ufffd big" in bad["tool_output"]
    assert imported(agentd_env, "--db", str(db))["files"]["unchanged"] == 1
