"""`agentd import claude`: transcripts -> the same rows as live capture, incremental, robust.

The fast tests use the real transcripts in tests/payloads (the same session as the hook payloads
in claude_hooks_examples.jsonl) and hand-made broken files; the realclient tests at the end make
transcripts with the real Claude Code CLI, with and without live capture.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agentd import pidfile
from agentd.config import Config
from agentd.importers import ImportFailed, run_import
from agentd.importers.claude import transcript_files
from conftest import PAYLOADS, load_jsonl, query_db, wait_for

MAIN_SESSION = "bbce9559-ac03-43d5-abf7-5a5bf173473b"
SUB_SESSION = "6087c44d-4f26-44de-a67d-49deaec348a0"
SUB_AGENT = "abb204bb3a040e500"
PROMPT = "2514a302-3387-47d8-b91e-c7556df98dd1"
COMPACT_PROMPT = "d3c02cba-6ea1-454f-bde8-f3b6cd983522"
TYPED = ("sessions", "messages", "tools", "file_operations", "session_errors", "compaction_events")


@pytest.fixture(autouse=True)
def _inline_prepare(monkeypatch):
    """Prepare events in this process (no worker pool) unless a test asks for workers."""
    monkeypatch.setenv("AGENTD_IMPORT_WORKERS", "0")


def make_tree(root: Path) -> Path:
    """The samples filed as Claude Code files them."""
    main = root / "-home-dev-runs-claude-main-proj" / f"{MAIN_SESSION}.jsonl"
    sub = root / "-home-dev-runs-claude-subagent-proj" / SUB_SESSION / "subagents"
    sub.mkdir(parents=True)
    main.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(PAYLOADS / "claude_transcript_trimmed.jsonl", main)
    shutil.copy(
        PAYLOADS / "claude_subagent_transcript_trimmed.jsonl", sub / f"agent-{SUB_AGENT}.jsonl"
    )
    return root


@pytest.fixture
def tree(tmp_path) -> Path:
    return make_tree(tmp_path / "projects")


def rows(db: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    return query_db(db, sql, params)


def snapshot(db: Path, tables: tuple[str, ...] = TYPED) -> dict[str, list[dict[str, Any]]]:
    return {t: rows(db, f"SELECT * FROM {t} ORDER BY id") for t in tables}


def other_config(tmp_path: Path, name: str) -> Config:
    home = tmp_path / name
    home.mkdir()
    return Config.load({"AGENTD_HOME": str(home)})


# -- what a transcript becomes -------------------------------------------------------------------


def test_sample_transcripts_fill_every_table(config, tree):
    summary = run_import(config, "claude", [tree])
    assert summary.mode == "direct"
    assert (summary.files, summary.files_read, summary.errors) == (2, 2, [])
    db = config.db_path

    (s,) = rows(db, "SELECT * FROM sessions WHERE id = ?", MAIN_SESSION)
    assert s["source"] == "claude"
    assert (s["project_path"], s["project_name"]) == ("/home/dev/runs/claude-main/proj", "proj")
    assert (s["model"], s["permission_mode"]) == ("claude-opus-5-5", "bypassPermissions")
    assert s["cost"] == pytest.approx(0.0056)  # the last cost-state: Claude Code's own total
    assert (s["prompt_count"], s["tool_call_count"], s["message_count"]) == (1, 5, 7)
    # Each API response once, although its usage is repeated on every content block's line:
    # the same 600 / 120 Claude Code counted itself before the /compact (first cost-state).
    assert (s["prompt_tokens"], s["completion_tokens"]) == (600, 120)
    assert s["status"] is None and s["ended_at"] is None  # only hooks know

    tools = rows(db, "SELECT * FROM tools WHERE session_id = ? ORDER BY started_at", MAIN_SESSION)
    assert [(t["tool_name"], t["success"]) for t in tools] == [
        ("Bash", 1), ("Write", 1), ("Read", 1), ("Edit", 1), ("Bash", 0),
    ]  # fmt: skip
    hello = "/home/dev/runs/claude-main/proj/hello.txt"
    bash, write, read, edit, failing = tools
    assert bash["id"] == f"{MAIN_SESSION}:toolu_fake_c13916e3ced54f22"
    assert json.loads(bash["tool_input"]) == {"command": "echo hi", "description": "Say hi"}
    assert json.loads(bash["tool_output"])["stdout"] == "hi"
    assert (write["file_path"], read["file_path"], edit["file_path"]) == (hello, hello, hello)
    assert (failing["exit_code"], failing["interrupted"]) == (2, 0)
    assert failing["error_message"].startswith("Exit code 2\nls: cannot access")
    for t in tools:
        assert t["message_id"].startswith(f"{MAIN_SESSION}:msg_fake_")
        assert t["started_at"] <= t["ended_at"] and t["duration_ms"] is None  # hooks time tools
        assert t["source"] == "claude" and t["agent_id"] is None

    ops = rows(
        db,
        "SELECT id, tool_id, file_path, operation_type, lines_added, lines_removed "
        "FROM file_operations ORDER BY created_at",
    )
    assert ops == [
        {"id": f"{write['id']}:{hello}", "tool_id": write["id"], "file_path": hello,
         "operation_type": "created", "lines_added": 1, "lines_removed": 0},
        {"id": f"{read['id']}:{hello}", "tool_id": read["id"], "file_path": hello,
         "operation_type": "read", "lines_added": None, "lines_removed": None},
        {"id": f"{edit['id']}:{hello}", "tool_id": edit["id"], "file_path": hello,
         "operation_type": "edited", "lines_added": 1, "lines_removed": 1},
    ]  # fmt: skip

    (c,) = rows(db, "SELECT * FROM compaction_events")
    assert c["id"] == f"{MAIN_SESSION}:{COMPACT_PROMPT}"  # the id PreCompact/PostCompact use
    assert (c["trigger"], c["tokens_before"], c["tokens_after"]) == ("manual", 120, 2699)

    (prompt,) = rows(db, "SELECT * FROM messages WHERE role = 'user'")
    assert prompt["id"] == f"{MAIN_SESSION}:{PROMPT}"  # the id UserPromptSubmit uses

    # The subagent: its work carries its agent id, in its parent's session; no prompt of its own.
    sub_tools = rows(db, "SELECT * FROM tools WHERE session_id = ?", SUB_SESSION)
    assert [(t["tool_name"], t["success"], t["agent_id"]) for t in sub_tools] == [
        ("Bash", 1, SUB_AGENT)
    ]
    sub_messages = rows(db, "SELECT role, agent_id FROM messages WHERE session_id = ?", SUB_SESSION)
    assert sub_messages == [{"role": "assistant", "agent_id": SUB_AGENT}] * 2
    assert rows(db, "SELECT count(*) AS n FROM session_errors")[0]["n"] == 0

    kinds = {r["kind"] for r in rows(db, "SELECT DISTINCT kind FROM events")}
    assert kinds == {"user", "assistant", "cost-state", "system.compact_boundary"}
    assert {r["source"] for r in rows(db, "SELECT DISTINCT source FROM events")} == {
        "claude-transcript"
    }
    # What no normalizer reads was skipped before it was decoded, and counted.
    assert summary.skipped["api-request-shape"] == 2 and summary.skipped["api-request"] == 8
    assert summary.skipped["attachment"] > 0 and "api-request" not in summary.ingested


def test_an_import_after_live_capture_adds_only_what_hooks_cannot_know(daemon, tree):
    """The hook samples are the same session as the transcript sample: the ids must meet."""
    for hook in load_jsonl("claude_hooks_examples.jsonl"):
        if hook["scenario"] == "claude-main":
            daemon.ingest("claude", hook["stdin"])
    db = daemon.config.db_path
    live = snapshot(db)
    assert len(live["tools"]) == 5 and len(live["messages"]) == 1

    summary = run_import(daemon.config, "claude", [tree])
    assert summary.mode == "daemon" and summary.events_refused == 0
    both = snapshot(db)
    for table in TYPED:
        live_ids = {r["id"] for r in live[table]}
        both_ids = [r["id"] for r in both[table]]
        assert live_ids <= set(both_ids), table
    assert len(both["tools"]) == 5 + 1  # + the subagent's (its hooks are not in the sample)
    assert len(both["file_operations"]) == 3 and len(both["compaction_events"]) == 1
    # Live values stay; what only the transcript knows is added.
    by_id = {t["id"]: t for t in both["tools"]}
    for t in live["tools"]:
        assert by_id[t["id"]]["duration_ms"] == t["duration_ms"] is not None
        assert by_id[t["id"]]["message_id"] is not None
    (c,) = both["compaction_events"]
    assert (c["trigger"], c["tokens_before"], c["tokens_after"]) == ("manual", 120, 2699)
    (s,) = [s for s in both["sessions"] if s["id"] == MAIN_SESSION]
    (before,) = [s for s in live["sessions"] if s["id"] == MAIN_SESSION]
    assert s["status"] == before["status"] is not None  # only hooks know it; the import keeps it
    assert s["model"] == "claude-opus-5-5"
    assert (s["prompt_count"], s["prompt_tokens"]) == (1, 600)


# -- idempotent, incremental ---------------------------------------------------------------------


def test_importing_twice_changes_nothing_and_rereads_nothing(config, tree):
    run_import(config, "claude", [tree])
    first = snapshot(config.db_path, (*TYPED, "events"))
    again = run_import(config, "claude", [tree])
    assert (again.files_unchanged, again.files_read, again.bytes_read) == (2, 0, 0)
    assert again.events_sent == 0
    assert snapshot(config.db_path, (*TYPED, "events")) == first
    # Even with the offsets forgotten, everything read again is stored once.
    (config.state_dir / "import-state.json").unlink()
    reread = run_import(config, "claude", [tree])
    assert reread.files_read == 2 and reread.events_new == 0
    assert snapshot(config.db_path, (*TYPED, "events")) == first


def test_reading_a_growing_transcript_piece_by_piece_gives_the_same_rows(config, tmp_path, tree):
    whole = run_import(other_config(tmp_path, "whole"), "claude", [tree])
    expected = snapshot(Config.load({"AGENTD_HOME": str(tmp_path / "whole")}).db_path)
    assert whole.events_stored > 0

    transcript = next(tree.glob("*/*.jsonl"))
    data = transcript.read_bytes()
    lines = data.splitlines(keepends=True)
    boundary = next(i for i, line in enumerate(lines) if b'"compact_boundary"' in line)
    cuts = [
        len(b"".join(lines[:20])) + 40,  # inside a line: a torn last line, read next time
        len(b"".join(lines[: boundary + 1])),  # just after the boundary: its prompt id is next
        len(b"".join(lines[: boundary + 3])),
        len(data),
    ]
    transcript.write_bytes(b"")
    for cut in cuts:
        with transcript.open("ab") as f:
            f.write(data[transcript.stat().st_size : cut])
        run_import(config, "claude", [tree])
        if cut == cuts[1]:  # the boundary waits for the record that names its prompt
            assert rows(config.db_path, "SELECT id FROM compaction_events") == []
    got = snapshot(config.db_path)
    assert got == expected


def test_a_rewritten_or_shrunk_transcript_is_read_from_the_start(config, tree):
    run_import(config, "claude", [tree])
    transcript = next(tree.glob("*/*.jsonl"))
    replacement = transcript.with_suffix(".new")
    replacement.write_text(
        json.dumps({"type": "custom-title", "customTitle": "Renamed", "sessionId": MAIN_SESSION})
        + "\n"
    )
    replacement.replace(transcript)  # a new inode, and smaller
    summary = run_import(config, "claude", [tree])
    assert summary.files_read == 1
    assert rows(config.db_path, "SELECT title FROM sessions WHERE id = ?", MAIN_SESSION) == [
        {"title": "Renamed"}
    ]


def test_a_transcript_rewritten_in_place_and_grown_is_read_from_the_start(config, tree):
    """Truncated and written again, same inode, larger than before: the bytes before the old
    offset are not the ones read there, so reading on from it would lose the new first lines."""
    run_import(config, "claude", [tree])
    transcript = next(tree.glob("*/*.jsonl"))
    data = transcript.read_bytes()
    inode = transcript.stat().st_ino
    with transcript.open("r+b") as f:
        f.truncate(0)
        f.write(_assistant("toolu_rewritten") + _result("toolu_rewritten") + data)
    assert transcript.stat().st_ino == inode and transcript.stat().st_size > len(data)
    summary = run_import(config, "claude", [tree])
    assert summary.files_read == 1 and summary.errors == []
    assert rows(config.db_path, "SELECT tool_name, success FROM tools WHERE id = ?",
                "s-1:toolu_rewritten") == [{"tool_name": "Bash", "success": 1}]  # fmt: skip
    # Appending is not mistaken for a rewrite: the next run reads only the new line.
    again = run_import(config, "claude", [tree])
    assert again.files_unchanged == 2
    with transcript.open("ab") as f:
        f.write(_result("toolu_late"))
    grown = run_import(config, "claude", [tree])
    assert grown.bytes_read == len(_result("toolu_late"))


# -- broken input --------------------------------------------------------------------------------


def _record(**fields: Any) -> bytes:
    base = {"sessionId": "s-1", "cwd": "/w", "timestamp": "2026-11-21T07:00:00.000Z"}
    return json.dumps({**base, **fields}).encode() + b"\n"


def _assistant(tool_id: str, name: str = "Bash", message: str = "m1") -> bytes:
    return _record(
        type="assistant",
        uuid=f"u-{tool_id}",
        parentUuid="p",
        message={
            "id": message,
            "model": "claude-x",
            "content": [
                {"type": "tool_use", "id": tool_id, "name": name, "input": {"command": "ls"}}
            ],
            "usage": {"input_tokens": 10, "output_tokens": 2},
        },
    )


def _result(tool_id: str, text: str = "ok", error: bool = False) -> bytes:
    block = {"type": "tool_result", "tool_use_id": tool_id, "content": text, "is_error": error}
    return _record(type="user", uuid=f"r-{tool_id}", parentUuid="p", promptId="p-1",
                   message={"role": "user", "content": [block]})  # fmt: skip


def test_corrupt_unknown_and_torn_lines_are_skipped_and_counted(config, tmp_path):
    root = tmp_path / "projects" / "-w"
    root.mkdir(parents=True)
    transcript = root / "s-1.jsonl"
    torn = _result("t3")
    transcript.write_bytes(
        _record(
            type="user",
            uuid="u0",
            parentUuid=None,
            promptId="p-1",
            message={"role": "user", "content": "go"},
        )  # fmt: skip
        + _assistant("t1")
        + b'{"type": "user", "message": {"content": "cut he\n'  # corrupt: cut short
        + b"not json at all\n"
        + b"\xff\xfe invalid utf-8\n"
        + _record(type="brand-new-record", value=1)  # a type nobody knows yet
        + b"\n"  # a blank line
        + _result("t1", "Exit code 7\nboom", error=True)
        + _assistant("t2", message="m2")
        + _result("t2", "fine \\ud83e half an emoji").replace(b"\\\\ud83e", b"\\ud83e")
        + _assistant("t3", message="m3")
        + torn[:-20]  # the writer is still writing this one
    )
    summary = run_import(config, "claude", [tmp_path / "projects"])
    assert summary.errors == []
    assert summary.skipped["corrupt line"] == 3
    assert summary.skipped["brand-new-record"] == 1
    assert summary.skipped["torn last line (read again next time)"] == 1
    tools = rows(
        config.db_path, "SELECT id, success, exit_code, error_message FROM tools ORDER BY id"
    )
    assert tools == [
        {"id": "s-1:t1", "success": 0, "exit_code": 7, "error_message": "Exit code 7\nboom"},
        {"id": "s-1:t2", "success": 1, "exit_code": None, "error_message": None},
        {"id": "s-1:t3", "success": None, "exit_code": None, "error_message": None},
    ]
    # The writer finishes the line: the next run reads it, and only it.
    with transcript.open("ab") as f:
        f.write(torn[-20:])
    again = run_import(config, "claude", [tmp_path / "projects"])
    assert again.records == 1 and again.skipped == {}
    assert rows(config.db_path, "SELECT success FROM tools WHERE id = 's-1:t3'") == [{"success": 1}]


def test_a_line_of_json_with_invalid_utf8_is_refused_and_counted(config, tmp_path):
    """Valid JSON around bytes that are not UTF-8: msgspec raises UnicodeDecodeError for them
    before 0.23 and DecodeError from 0.23 on; either way the import carries on."""
    root = tmp_path / "projects" / "-w"
    root.mkdir(parents=True)
    prompt = {"role": "user", "content": "go"}
    (root / "s-1.jsonl").write_bytes(
        _record(type="user", uuid="u0", parentUuid=None, promptId="p-1", message=prompt)
        + _record(type="user", uuid="u1", parentUuid="u0", promptId="p-2",
                  message={"role": "user", "content": "caf\u00e9"}).replace(b"\\u00e9", b"\xe9")
        + _assistant("t1")
        + _result("t1")
    )  # fmt: skip
    summary = run_import(config, "claude", [tmp_path / "projects"])
    assert summary.errors == []
    assert summary.events_refused == 1
    ((reason, count),) = summary.refused_reasons.items()
    assert reason.startswith("unreadable payload: ") and count == 1
    assert rows(config.db_path, "SELECT id, success FROM tools") == [{"id": "s-1:t1", "success": 1}]


def test_failures_no_hook_reports_are_imported(config, tmp_path):
    """An Edit whose old_string does not match, a tool that does not exist: no hook fires."""
    root = tmp_path / "p" / "-w"
    root.mkdir(parents=True)
    (root / "s-1.jsonl").write_bytes(
        _assistant("e1", name="Edit")
        + _result("e1", "<tool_use_error>String to replace not found in file.\nString: x</tool_use_error>", error=True)
        + _assistant("g1", name="Glob", message="m2")
        + _result("g1", "<tool_use_error>Error: No such tool available: Glob</tool_use_error>", error=True)
    )  # fmt: skip
    run_import(config, "claude", [tmp_path / "p"])
    tools = rows(config.db_path, "SELECT tool_name, success, error_message FROM tools ORDER BY id")
    assert tools == [
        {"tool_name": "Edit", "success": 0,
         "error_message": "String to replace not found in file.\nString: x"},
        {"tool_name": "Glob", "success": 0, "error_message": "Error: No such tool available: Glob"},
    ]  # fmt: skip
    assert rows(config.db_path, "SELECT count(*) AS n FROM file_operations") == [{"n": 0}]


def test_a_file_deleted_mid_import_is_counted_not_fatal(config, tree, monkeypatch):
    from agentd.importers import claude

    listed = list(claude.transcript_files(tree))
    ghost = (str(tree / "-gone" / "deleted.jsonl"), listed[0][1])
    monkeypatch.setattr(claude, "transcript_files", lambda root: iter([ghost, *listed]))
    summary = run_import(config, "claude", [tree])
    assert (summary.files_vanished, summary.files_read, summary.errors) == (1, 2, [])
    assert rows(config.db_path, "SELECT count(*) AS n FROM tools")[0]["n"] == 6


# -- writers -------------------------------------------------------------------------------------


def test_daemon_direct_and_worker_processes_give_the_same_rows(daemon, tree, tmp_path, monkeypatch):
    run_import(daemon.config, "claude", [tree])
    direct = other_config(tmp_path, "direct")
    run_import(direct, "claude", [tree])
    monkeypatch.setenv("AGENTD_IMPORT_WORKERS", "2")
    pooled = other_config(tmp_path, "pooled")
    run_import(pooled, "claude", [tree])
    expected = snapshot(daemon.config.db_path, (*TYPED, "events"))
    assert snapshot(direct.db_path, (*TYPED, "events")) == expected
    assert snapshot(pooled.db_path, (*TYPED, "events")) == expected


def test_a_direct_import_holds_the_daemons_lock_and_waits_for_another_writer(config, tree):
    fd = pidfile.acquire(config.pid_path)  # a daemon starting, or a prune, holds it
    try:
        with pytest.raises(ImportFailed, match="holds the database's writer lock"):
            run_import(config, "claude", [tree], wait_s=0.3)
    finally:
        pidfile.release(config.pid_path, fd)
    assert run_import(config, "claude", [tree]).events_stored > 0


def test_only_one_import_runs_at_a_time(config, tree):
    import fcntl
    import os

    config.state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(config.state_dir / "import.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(ImportFailed, match="another `agentd import` is running"):
            run_import(config, "claude", [tree])
    finally:
        os.close(fd)


def test_a_daemon_running_older_code_is_refused(daemon, tree, monkeypatch):
    """Once stored, an event is deduplicated forever: one stored raw by a daemon without the
    transcript normalizer would never get its rows."""
    import time

    from agentd.importers import writer

    monkeypatch.setattr(writer, "_newest_code_mtime", lambda: time.time() + 60)
    with pytest.raises(ImportFailed, match="restart it"):
        run_import(daemon.config, "claude", [tree])


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("--path", ""), "an empty path"),  # it read the current directory
        (("--wait", "nan"), "nan is not a number of seconds"),
        (("--wait", "inf"), "inf is not a number of seconds"),
        (("--wait", "-5"), "-5.0 is not a number of seconds"),
    ],
)
def test_cli_refuses_an_empty_path_and_waits_that_are_no_time(agentd_env, tmp_path, args, error):
    result = subprocess.run(
        [sys.executable, "-m", "agentd", "import", "claude", *args],
        env=agentd_env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2 and error in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "agentd.db").exists()


def test_cli_prints_a_summary_and_json(agentd_env, tree):
    def agentd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agentd", *args],
            env=dict(agentd_env, AGENTD_IMPORT_WORKERS="0"),
            capture_output=True,
            text=True,
            timeout=60,
        )

    text = agentd("import", "claude", "--path", str(tree))
    assert text.returncode == 0, text.stderr
    assert "Imported Claude Code transcripts" in text.stdout and "tools +6" in text.stdout
    again = agentd("import", "claude", "--path", str(tree), "--json")
    summary = json.loads(again.stdout)
    assert summary["files"] == {
        "found": 2,
        "unchanged": 2,
        "read": 0,
        "vanished": 0,
        "unreadable": 0,
    }
    assert summary["events"]["sent"] == 0 and summary["mode"] == "direct"
    missing = agentd("import", "claude", "--path", str(tree / "nope"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    assert agentd("import", "claude", "--help").stdout.rstrip().splitlines()[-1].strip()
    assert "Example:" in agentd("import", "--help").stdout


# -- the real Claude Code, with and without live capture ------------------------------------------

# Columns only the hooks can fill or time, per table (docs/import.md): compared nowhere else.
HOOK_ONLY = {
    "sessions": {
        "status",
        "end_reason",
        "ended_at",
        "created_at",
        "updated_at",
        "redactions",
        "status_at",
        "outcome",
        "outcome_at",
        "last_error",
        "last_error_at",
    },  # fmt: skip
    "messages": {"created_at", "completed_at", "redactions"},
    # Hooks time the tool itself; a transcript has when the request and the result were written.
    "tools": {"duration_ms", "started_at", "ended_at", "created_at", "redactions"},
    "file_operations": {"created_at", "redactions"},
    "session_errors": {"created_at", "redactions"},
    "compaction_events": {"created_at", "redactions"},
}
JSON_COLUMNS = {"tool_input", "tool_output"}


def _comparable(table: str, row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for column, value in row.items():
        if column in HOOK_ONLY[table]:
            continue
        if column in JSON_COLUMNS and isinstance(value, str) and value[:1] in "{[":
            value = json.loads(value)
        out[column] = value
    return out


@pytest.fixture(scope="module")
def claude_runs():
    """See _claude_runs; its directory goes, however it ends."""
    base = Path(tempfile.mkdtemp(prefix="agi-", dir="/tmp"))  # short: socket paths
    try:
        yield _claude_runs(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _claude_runs(base: Path) -> Any:
    """The real CLI, hooks installed, a daemon capturing live; then imports: through that daemon
    (live + import), again (a no-op), and alone into a fresh database (import only)."""
    from realclients.agents import Scratch, parse_claude_json, run_claude
    from realclients.fake_model import FakeModelServer, http_error, text, tool

    from conftest import Daemon

    scratch = Scratch.create(prefix="cc-", base=base)
    live_home = base / "live"
    live_home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTD_")}
    env.update(AGENTD_HOME=str(live_home), HOME=str(scratch.home), AGENTD_IMPORT_WORKERS="0")
    install = subprocess.run(
        [sys.executable, "-m", "agentd", "install", "claude", "--scope", "project",
         "--project-dir", str(scratch.proj)],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    config = Config.load(env)
    daemon = Daemon(env, config).start()
    agent_env = {"AGENTD_HOME": str(live_home), "AGENTD_AUTOSTART": "0"}  # one daemon: the test's
    note = str(scratch.proj / "note.txt")
    try:
        script = [
            # HTTP 529 once, retried by Claude Code: only the transcript has it.
            http_error(529, times=1, then=tool("Bash", {"command": "echo hello-from-bash"})),
            tool("Write", {"file_path": note, "content": "one\ntwo\nthree\n"}),
            tool("Read", {"file_path": note}),
            tool("Edit", {"file_path": note, "old_string": "two", "new_string": "2"}),
            tool("Edit", {"file_path": note, "old_string": "NOT THERE", "new_string": "x"}),
            tool("Glob", {"pattern": "*.txt"}),
            tool("Bash", {"command": "echo oops >&2; exit 3", "description": "Fail on purpose"}),
            text("All done."),
        ]
        with FakeModelServer(script) as server:
            result = run_claude(scratch, server, "do the scripted steps", extra_env=agent_env)
        assert result.returncode == 0, result.stderr
        main = parse_claude_json(result)["session_id"]
        with FakeModelServer([text("unused")]) as server:
            result = run_claude(scratch, server, "/compact", resume=main, extra_env=agent_env)
        assert result.returncode == 0, result.stderr
        delegate = [
            tool("Agent", {"description": "Run sub task", "subagent_type": "general-purpose",
                           "prompt": "SUBAGENT_TASK: run echo from-subagent"}),
            text("Started the subagent."),
            text("The subagent finished."),
        ]  # fmt: skip
        sub = [tool("Bash", {"command": "echo from-subagent", "description": "Echo"}), text("done")]
        with FakeModelServer(delegate, subscripts={"SUBAGENT_TASK": sub}) as server:
            result = run_claude(scratch, server, "delegate the task", extra_env=agent_env)
        assert result.returncode == 0, result.stderr
        with FakeModelServer([http_error(500)]) as server:
            run_claude(scratch, server, "this will fail", extra_env=agent_env)
        db = config.db_path
        projects = scratch.home / ".claude" / "projects"
        # The last hooks (acked, or spooled and drained) and the follower's reads settle.
        assert wait_for(
            lambda: (
                rows(db, "SELECT id FROM session_errors WHERE status_code = 500")
                and not (config.spool_dir.exists() and list(config.spool_dir.glob("*")))
                and _followed_all(config, projects)
            ),
            60,
        )
        live = snapshot(db, (*TYPED, "events"))
        first = run_import(config, "claude", [projects])
        both = snapshot(db, (*TYPED, "events"))
        second = run_import(config, "claude", [projects])
        again = snapshot(db, (*TYPED, "events"))
    finally:
        daemon.stop()
    alone = Config.load({"AGENTD_HOME": str(base / "alone")})
    only = run_import(alone, "claude", [projects])
    return SimpleNamespace(
        scratch=scratch, main=main, live=live, both=both, again=again, first=first,
        second=second, only=only, imported=snapshot(alone.db_path, (*TYPED, "events")),
    )  # fmt: skip


def _followed_all(config: Config, projects: Path) -> bool:
    """The daemon's follower has read every transcript to its current size."""
    from agentd.importers.state import FOLLOW_FILE, ImportState

    followed = ImportState.load(config.state_dir, FOLLOW_FILE).entries("claude")
    files = list(transcript_files(projects))
    return bool(files) and all(
        (followed.get(path) or {}).get("size") == st.st_size for path, st in files
    )


@pytest.mark.realclient
def test_real_live_capture_has_everything_and_a_later_import_changes_nothing(claude_runs):
    run = claude_runs
    live = run.live
    # Without any import: what no hook reports (PostToolBatch named the calls, without an
    # outcome): the Edit whose old_string did not match, the tool that does not exist.
    failed = {(t["tool_name"], t["success"]) for t in live["tools"] if t["success"] == 0}
    assert {("Edit", 0), ("Glob", 0), ("Bash", 0)} <= failed
    mismatch = next(t for t in live["tools"] if t["tool_name"] == "Edit" and t["success"] == 0)
    assert mismatch["error_message"].startswith("String to replace not found")
    for t in live["tools"]:
        assert t["message_id"] and t["message_id"].startswith(f"{t['session_id']}:")
    # Tokens, Claude's own cost and the model, per session; per subagent too.
    (main,) = [s for s in live["sessions"] if s["id"] == run.main]
    assert main["model"] == "claude-opus-5-5" and main["cost"] > 0 and main["prompt_tokens"] > 0
    assert main["completion_tokens"] > 0 and main["outcome"] == "ok"
    assert any(m["agent_id"] and m["prompt_tokens"] for m in live["messages"])
    assert all(m["model"] for m in live["messages"] if m["role"] == "assistant")
    # API errors: the 529 Claude Code retried, the 500 that ended a turn.
    codes = {(e["error_type"], e["status_code"]) for e in live["session_errors"]}
    assert ("retry", 529) in codes and ("server_error", 500) in codes
    (failed_session,) = [s for s in live["sessions"] if s["outcome"] == "error"]
    assert "500" in failed_session["last_error"]
    (c,) = live["compaction_events"]
    assert c["tokens_before"] > 0 and c["tokens_after"] > 0
    # The import after it: nothing to read, no row added, no value changed.
    assert run.first.mode == "daemon" and run.first.events_sent == 0
    assert run.both == run.live


@pytest.mark.realclient
def test_real_import_twice_changes_nothing(claude_runs):
    assert claude_runs.second.files_read == 0 and claude_runs.second.events_sent == 0
    assert claude_runs.again == claude_runs.both


@pytest.mark.realclient
def test_real_import_alone_gives_the_same_tables_as_with_live_capture(claude_runs):
    run = claude_runs
    assert run.only.mode == "direct" and run.only.errors == []
    mismatches: list[tuple[Any, ...]] = []
    for table in TYPED:
        both = {r["id"]: r for r in run.both[table]}
        alone = {r["id"]: r for r in run.imported[table]}
        assert set(both) == set(alone), table
        for key, row in alone.items():
            expected = _comparable(table, both[key])
            got = _comparable(table, row)
            if table == "tools" and row["agent_id"] and got["tool_output"] is None:
                # A subagent's transcript keeps only the model-facing text: the structured output
                # (and its `interrupted` flag) are the hooks'.
                for column in ("tool_output", "interrupted"):
                    expected.pop(column)
                    got.pop(column)
            if table == "sessions":
                # permission_mode: hooks report it on every event, the transcript on prompts only.
                assert got.pop("permission_mode") in (expected.pop("permission_mode"), None)
            mismatches.extend(
                (table, key, c, got.get(c), expected.get(c))
                for c in {*got, *expected}
                if got.get(c) != expected.get(c)
            )
    assert mismatches == []


@pytest.mark.realclient
def test_real_api_error_that_ended_a_turn_is_one_row(claude_runs):
    failures = [e for e in claude_runs.both["session_errors"] if e["error_type"] == "server_error"]
    assert len(failures) == 1


def test_big_records_go_through_the_daemon_and_too_big_ones_are_counted(
    make_daemon, agentd_env, agentd_home, tmp_path
):
    (agentd_home / "config.toml").write_text(f"max_line_bytes = {3 * 1024 * 1024}\n")
    make_daemon().start()
    config = Config.load(agentd_env)  # with the daemon's line limit
    root = tmp_path / "p" / "-w"
    root.mkdir(parents=True)
    big = "x" * (1024 * 1024)
    lines = b""
    for n in range(4):  # four 1 MiB results: more than one daemon line can hold together
        lines += _assistant(f"b{n}", message=f"m{n}") + _result(f"b{n}", big)
    lines += _assistant("huge", message="mh") + _result("huge", "y" * (4 * 1024 * 1024))
    (root / "s-1.jsonl").write_bytes(lines)
    summary = run_import(config, "claude", [tmp_path / "p"])
    assert summary.mode == "daemon" and summary.errors == []
    assert (summary.events_too_large, summary.events_refused) == (1, 0)
    done = rows(config.db_path, "SELECT id FROM tools WHERE success = 1 ORDER BY id")
    assert [t["id"] for t in done] == [f"s-1:b{n}" for n in range(4)]


def test_a_record_too_big_for_the_daemon_waits_for_an_import_without_it(
    make_daemon, agentd_env, agentd_home, tmp_path
):
    """Through the daemon a record over its line limit cannot be sent. The records after it are,
    but the file's offset stays before it: an import without the daemon stores it, so the
    tables do not depend on whether a daemon was running (it was skipped for good)."""
    (agentd_home / "config.toml").write_text(f"max_line_bytes = {3 * 1024 * 1024}\n")
    daemon = make_daemon().start()
    config = Config.load(agentd_env)  # with the daemon's line limit
    root = tmp_path / "p" / "-w"
    root.mkdir(parents=True)
    transcript = root / "s-1.jsonl"
    transcript.write_bytes(
        _assistant("before", message="m0") + _result("before")
        + _assistant("huge", message="mh") + _result("huge", "y" * (4 * 1024 * 1024))
        + _assistant("after", message="m1") + _result("after")
    )  # fmt: skip
    first = run_import(config, "claude", [tmp_path / "p"])
    assert first.mode == "daemon" and first.events_too_large == 1
    ids = "SELECT id, success FROM tools ORDER BY id"
    assert [t["id"] for t in rows(config.db_path, ids)] == ["s-1:after", "s-1:before", "s-1:huge"]
    assert rows(config.db_path, "SELECT success FROM tools WHERE id = 's-1:huge'") == [
        {"success": None}  # its call is known, its result is not
    ]
    again = run_import(config, "claude", [tmp_path / "p"])  # still through the daemon: re-read
    assert (again.files_unchanged, again.events_too_large, again.rows_added["events"]) == (0, 1, 0)
    assert daemon.stop() == 0
    direct = run_import(config, "claude", [tmp_path / "p"])
    assert direct.mode == "direct" and direct.events_too_large == 0 and direct.events_new == 1
    assert rows(config.db_path, "SELECT success FROM tools WHERE id = 's-1:huge'") == [
        {"success": 1}
    ]
    last = run_import(config, "claude", [tmp_path / "p"])
    assert (last.files_unchanged, last.events_sent) == (1, 0)


def test_progress_line_on_a_terminal(config, tree):
    import io

    from agentd.importers import Progress

    stream = io.StringIO()
    summary = run_import(config, "claude", [tree], progress=Progress(True, stream))
    shown = stream.getvalue()
    assert shown.startswith("\r") and shown.endswith("\n")
    last = shown.rstrip("\n").rsplit("\r", 1)[-1]
    assert f"2/2 files, {summary.bytes_read / 1024:.1f} KiB" in last  # binary units (output.py)
    assert f"{summary.events_stored} events stored" in last


def test_records_without_a_time_take_the_next_one_so_rereads_dedupe(config, tmp_path):
    """An event's id includes its time: a record with no timestamp of its own (a legacy summary
    at the top of a file) gets the first one after it, the same on every read."""
    root = tmp_path / "p" / "-w"
    root.mkdir(parents=True)
    transcript = root / "s-1.jsonl"
    summary_line = json.dumps({"type": "summary", "summary": "Old title", "sessionId": "s-1"})
    transcript.write_bytes(summary_line.encode() + b"\n" + _assistant("t1") + _result("t1"))
    run_import(config, "claude", [tmp_path / "p"])
    (title,) = rows(config.db_path, "SELECT received_at FROM events WHERE kind = 'summary'")
    assert title["received_at"] == 1795244400000  # 2026-11-21T07:00:00Z, the next record's
    assert rows(config.db_path, "SELECT title FROM sessions") == [{"title": "Old title"}]
    transcript.touch()  # another mtime: it must not matter
    (config.state_dir / "import-state.json").unlink()
    again = run_import(config, "claude", [tmp_path / "p"])
    assert again.events_sent == 3 and again.events_new == 0
