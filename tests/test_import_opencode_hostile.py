"""`agentd import opencode` on hostile databases and OpenCode 1.1 storage trees: each bad file,
row or value is skipped (or repaired) and counted, everything else imported, and no run hangs,
fills memory or ends in a traceback."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import query_db

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
