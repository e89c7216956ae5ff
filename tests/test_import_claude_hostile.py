"""`agentd import claude` and the daemon's follower (the same reader) on hostile transcripts and
state files: each bad line is skipped or repaired and counted, and the rest of the file imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agentd.importers import Summary, run_import
from agentd.importers.claude import AGENT, TranscriptFile, TranscriptImport
from agentd.importers.state import FOLLOW_FILE, STATE_FILE, ImportState
from agentd.protocol import MAX_DEPTH
from conftest import query_db


@pytest.fixture(autouse=True)
def _inline_prepare(monkeypatch):
    monkeypatch.setenv("AGENTD_IMPORT_WORKERS", "0")


def _record(**fields: Any) -> bytes:
    base = {"sessionId": "s-1", "cwd": "/w", "timestamp": "2026-11-21T07:00:00.000Z"}
    return json.dumps({**base, **fields}).encode() + b"\n"


def _prompt() -> bytes:
    message = {"role": "user", "content": "go"}
    return _record(type="user", uuid="u0", parentUuid=None, promptId="p-1", message=message)


def _assistant(tool_id: str, message: str, tool_input: Any = None) -> bytes:
    block = {"type": "tool_use", "id": tool_id, "name": "Bash", "input": tool_input or {"c": 1}}
    return _record(type="assistant", uuid=f"a-{tool_id}", parentUuid="p",
                   message={"id": message, "model": "claude-x", "content": [block],
                            "usage": {"input_tokens": 10, "output_tokens": 2}})  # fmt: skip


def _result(tool_id: str, text: str = "ok") -> bytes:
    block = {"type": "tool_result", "tool_use_id": tool_id, "content": text, "is_error": False}
    return _record(type="user", uuid=f"r-{tool_id}", parentUuid="p", promptId="p-1",
                   message={"role": "user", "content": [block]})  # fmt: skip


def _transcript(tmp_path: Path, body: bytes) -> Path:
    root = tmp_path / "projects" / "-w"
    root.mkdir(parents=True)
    (root / "s-1.jsonl").write_bytes(body)
    return tmp_path / "projects"


def _tools(db: Path) -> list[str]:
    """The tools both asked for (an assistant record) and finished (a tool result)."""
    sql = "SELECT id FROM tools WHERE success = 1 AND tool_name IS NOT NULL ORDER BY id"
    return [r["id"] for r in query_db(db, sql)]


def _follow_read(path: Path) -> tuple[Summary, int, dict[str, Any]]:
    """Read a transcript as the daemon's follower does (follow.py): (summary, events, entry)."""
    summary = Summary(source=AGENT)

    class Quiet:
        def advance(self, n: int) -> None:
            pass

    reader = TranscriptImport(None, None, summary, Quiet())  # type: ignore[arg-type]
    file = TranscriptFile(str(path), path.stat(), None)
    with path.open("rb") as handle:
        events = list(reader.read(file, handle))
    assert file.entry is not None
    return summary, len(events), file.entry


def test_a_line_nested_too_deep_is_skipped_and_counted_and_the_rest_imported(config, tmp_path):
    deep = _assistant("t2", "m2", tool_input={"x": "@"}).replace(
        b'"@"', b"[" * 50_000 + b"]" * 50_000
    )
    shallow_enough = _assistant("t3", "m3", tool_input={"x": "@"}).replace(
        b'"@"', b"[" * (MAX_DEPTH - 8) + b"]" * (MAX_DEPTH - 8)
    )
    body = (
        _prompt()
        + _assistant("t1", "m1")
        + _result("t1")
        + deep
        + _result("t2")
        + shallow_enough
        + _result("t3")
        + _assistant("t4", "m4")
        + _result("t4")
    )
    projects = _transcript(tmp_path, body)
    summary = run_import(config, "claude", [projects])
    assert summary.errors == [] and summary.events_refused == 0
    assert summary.skipped[f"nested deeper than {MAX_DEPTH} levels"] == 1
    assert _tools(config.db_path) == ["s-1:t1", "s-1:t3", "s-1:t4"]
    # The daemon's follower reads with the same reader: it gets past the line too.
    followed, events, entry = _follow_read(projects / "-w" / "s-1.jsonl")
    assert followed.skipped[f"nested deeper than {MAX_DEPTH} levels"] == 1
    assert entry["offset"] == len(body) and events == 8


@pytest.mark.parametrize(
    "entry",
    [
        {"size": "abc", "offset": 1},
        5,
        {"size": [1], "offset": 1},
        {"size": 1, "offset": 1, "tail": "x", "prompt": 5, "at": "zz"},
        {"offset": "1"},
    ],
)
@pytest.mark.parametrize("state_file", [STATE_FILE, FOLLOW_FILE])
def test_a_damaged_state_entry_is_treated_as_absent(config, tmp_path, entry, state_file):
    projects = _transcript(tmp_path, _prompt() + _assistant("t1", "m1") + _result("t1"))
    path = projects / "-w" / "s-1.jsonl"
    if isinstance(entry, dict):
        entry = {"inode": path.stat().st_ino, **entry}
    config.state_dir.mkdir(parents=True, exist_ok=True)
    (config.state_dir / state_file).write_text(
        json.dumps({"version": 1, AGENT: {str(path): entry}})
    )
    summary = run_import(config, "claude", [projects])  # read from the start: safe, deduplicated
    assert summary.errors == [] and summary.files_read == 1
    assert _tools(config.db_path) == ["s-1:t1"]
    # Read to its end, and the import's entry now holds where (the follower's uses the same code).
    own = ImportState.load(config.state_dir, STATE_FILE).entries(AGENT)[str(path)]
    assert own["offset"] == path.stat().st_size


@pytest.mark.parametrize("agent,flag", [("claude", "--path"), ("opencode", "--db")])
def test_a_path_that_is_neither_a_file_nor_a_directory_is_refused(
    agentd_env, tmp_path, agent, flag
):
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    for path in ("/dev/zero", str(fifo)):
        proc = subprocess.run(
            [sys.executable, "-m", "agentd", "import", agent, flag, path],
            env=agentd_env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert f"{path} is neither a " in proc.stderr
