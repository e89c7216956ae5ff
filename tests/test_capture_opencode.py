"""Real `opencode run` (1.18.33), offline against the fake model, captured by agentd's plugin.

The plugin is installed the way a user would (`agentd install opencode --scope project` into a
scratch project), a real daemon runs with its own AGENTD_HOME, and OpenCode gets AGENTD_HOME in its
environment. Each test asserts what the rows say, not just that rows exist.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from realclients.agents import Scratch, run_opencode
from realclients.fake_model import FakeModelServer, RecordedRequest, http_error, text, tool

from agentd.config import Config
from agentd.db.store import connect_sync
from conftest import Daemon, query_db, spool_empty, wait_for

pytestmark = pytest.mark.realclient

TURN_USAGE = (100, 20)  # the fake model's default usage per turn: prompt, completion


@dataclass
class Run:
    scratch: Scratch
    config: Config
    env: dict[str, str]
    proc: subprocess.CompletedProcess[str]
    requests: list[RecordedRequest]

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        return query_db(self.config.db_path, sql, params)

    def count(self, table: str) -> int:
        return self.rows(f"SELECT count(*) AS n FROM {table}")[0]["n"]

    def tool_ids(self) -> list[str]:
        """The tool call ids the fake model handed out, in order (main script first)."""
        return [i for r in self.requests if r.kind == "turn" for i in r.tool_ids]

    def main_session(self) -> str:
        (row,) = self.rows("SELECT id FROM sessions WHERE parent_session_id IS NULL")
        return row["id"]


def agentd_env(home: Path, scratch: Scratch) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTD_", "XDG_"))}
    env["AGENTD_HOME"] = str(home)
    env["HOME"] = str(scratch.home)
    return env


def install_plugin(env: dict[str, str], *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agentd", "install", "opencode", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="agc-", dir="/tmp"))  # short: socket paths
    yield root
    shutil.rmtree(root, ignore_errors=True)


def capture(
    workdir: Path,
    name: str,
    script: Any,
    *,
    subscripts: dict[str, Any] | None = None,
    daemon: bool = True,
    scope: str = "project",
    prompt: str = "do the thing",
    prepare: Any = None,
) -> tuple[Run, Daemon | None]:
    """One `opencode run` with the plugin installed (`scope`); the daemon left running.
    `prepare(home)` runs on the fresh AGENTD_HOME before the daemon starts."""
    home = workdir / name
    home.mkdir()
    if prepare is not None:
        prepare(home)
    scratch = Scratch.create(prefix=f"{name}-", base=workdir)
    env = agentd_env(home, scratch)
    config = Config.load(env)
    running = Daemon(env, config).start() if daemon else None
    if scope == "project":
        install_plugin(env, "--scope", "project", "--project-dir", str(scratch.proj))
    else:
        install_plugin(env)
    if callable(script):
        script = script(scratch.proj)
    with FakeModelServer(script, subscripts=subscripts) as server:
        proc = run_opencode(scratch, server, prompt, extra_env={"AGENTD_HOME": str(home)})
    run = Run(scratch, config, env, proc, server.requests)
    if running is not None:
        # The plugin waits a bounded time for acks at exit, then spools the rest (a loaded
        # machine): the rows are complete once the daemon has drained that.
        assert wait_for(lambda: spool_empty(config), 60), sorted(config.spool_dir.iterdir())
    return run, running


def tools_script(proj: Path) -> list[dict[str, Any]]:
    hello = str(proj / "hello.txt")
    return [
        tool("bash", {"command": "echo hello-oc", "description": "Say hello"}),
        tool("write", {"filePath": hello, "content": "hello world\nsecond line\n"}),
        tool("read", {"filePath": hello}),
        tool("edit", {"filePath": hello, "oldString": "world", "newString": "there"}),
        tool("bash", {"command": "ls /definitely/not/here", "description": "Fail"}),
        tool("read", {"filePath": str(proj / "missing.txt")}),
        text("All done."),
    ]


TYPED = ("sessions", "messages", "tools", "file_operations", "session_errors", "compaction_events")


@pytest.fixture(scope="module")
def tools_run(workdir) -> Iterator[Run]:
    run, daemon = capture(workdir, "tools", tools_script)
    yield run
    if daemon:
        daemon.stop()


def test_tools_are_captured_with_outcomes_and_durations(tools_run):
    run = tools_run
    assert run.proc.returncode == 0, run.proc.stderr
    session = run.main_session()
    bash, write, read, edit, failing, missing = run.tool_ids()
    tools = {
        r["id"].split(":", 1)[1]: r
        for r in run.rows(
            "SELECT id, session_id, tool_name, tool_input, tool_output, file_path, success, "
            "exit_code, error_message, duration_ms, started_at, ended_at, message_id FROM tools"
        )
    }
    assert set(tools) == {bash, write, read, edit, failing, missing}
    assert {t["session_id"] for t in tools.values()} == {session}
    hello = str(run.scratch.proj / "hello.txt")

    assert tools[bash]["tool_name"] == "bash"
    assert json.loads(tools[bash]["tool_input"])["command"] == "echo hello-oc"
    assert (tools[bash]["success"], tools[bash]["exit_code"]) == (1, 0)
    assert tools[bash]["tool_output"].strip() == "hello-oc"
    assert tools[bash]["error_message"] is None

    for call, name in ((write, "write"), (read, "read"), (edit, "edit")):
        assert (tools[call]["tool_name"], tools[call]["success"]) == (name, 1)
        assert tools[call]["file_path"] == hello
        assert tools[call]["exit_code"] is None

    # A failing command is "completed" for OpenCode; its exit code says otherwise.
    assert (tools[failing]["success"], tools[failing]["exit_code"]) == (0, 2)
    assert tools[failing]["error_message"].startswith("Exit code 2\n")
    assert "/definitely/not/here" in tools[failing]["error_message"]

    # A tool that throws never reaches tool.execute.after: its error part tells.
    assert (tools[missing]["tool_name"], tools[missing]["success"]) == ("read", 0)
    assert str(run.scratch.proj / "missing.txt") in tools[missing]["error_message"]
    assert tools[missing]["exit_code"] is None

    for t in tools.values():
        assert t["duration_ms"] is not None and 0 <= t["duration_ms"] < 30_000, t
        assert t["started_at"] <= t["ended_at"]
        # OpenCode's own timing of the tool; started/ended also count the plugin callbacks.
        assert t["duration_ms"] <= t["ended_at"] - t["started_at"]
        assert t["message_id"].startswith("msg_")

    events = {
        r["kind"]: r["n"] for r in run.rows("SELECT kind, count(*) AS n FROM events GROUP BY 1")
    }
    assert events["tool.execute.before"] == 6
    assert events["tool.execute.after"] == 5  # not for the thrown read
    assert "message.part.delta" not in events


def test_file_operations_have_types_and_line_counts(tools_run):
    run = tools_run
    session = run.main_session()
    _, write, read, edit, _, missing = run.tool_ids()
    ops = run.rows(
        "SELECT tool_id, file_path, operation_type, lines_added, lines_removed "
        "FROM file_operations WHERE session_id = ? ORDER BY created_at",
        (session,),
    )
    hello = str(run.scratch.proj / "hello.txt")
    assert ops == [
        {
            "tool_id": f"{session}:{write}",
            "file_path": hello,
            "operation_type": "created",
            "lines_added": 2,
            "lines_removed": 0,
        },
        {
            "tool_id": f"{session}:{read}",
            "file_path": hello,
            "operation_type": "read",
            "lines_added": None,
            "lines_removed": None,
        },
        {
            "tool_id": f"{session}:{edit}",
            "file_path": hello,
            "operation_type": "edited",
            "lines_added": 1,
            "lines_removed": 1,
        },
    ]  # the failed read of missing.txt read nothing
    assert not any(o["tool_id"].endswith(missing) for o in ops)
    # file.edited bus events name only a path: kept apart, never counted as a second edit.
    edited = run.rows("SELECT session_id FROM file_operations WHERE operation_type = 'file.edited'")
    assert edited and all(e["session_id"] is None for e in edited)


def test_session_and_messages_carry_tokens(tools_run):
    run = tools_run
    (session,) = run.rows("SELECT * FROM sessions")
    turns = len(run.tool_ids()) + 1  # one model turn per tool call, then the final text
    prompt, completion = TURN_USAGE
    assert session["source"] == "opencode"
    assert session["title"] == "Fake session title"
    assert session["project_path"] == str(run.scratch.proj)
    assert session["project_name"] == "proj"
    assert (session["model"], session["provider"]) == ("fake/model", "fake")
    assert session["status"] == "idle"
    assert session["prompt_tokens"] == prompt * turns
    assert session["completion_tokens"] == completion * turns
    assert session["tool_call_count"] == 6
    assert session["prompt_count"] == 1
    assistant = run.rows(
        "SELECT prompt_tokens, completion_tokens, completed_at FROM messages "
        "WHERE role = 'assistant' ORDER BY created_at"
    )
    assert [(m["prompt_tokens"], m["completion_tokens"]) for m in assistant] == [
        (prompt, completion)
    ] * turns
    assert all(m["completed_at"] for m in assistant)
    assert run.count("session_errors") == 0


def test_nothing_is_left_in_the_spool_after_the_live_run(tools_run):
    # Delivered, or spooled and drained (capture() waits for that): nothing is rejected or stuck.
    # That nothing was lost or duplicated is what the exact counts of the tests above say.
    spool = tools_run.config.spool_dir
    assert not spool.exists() or list(spool.iterdir()) == []


def test_daemon_down_spools_then_drains_to_the_same_rows(workdir, tools_run):
    run, _ = capture(workdir, "spooled", tools_script, daemon=False)
    assert run.proc.returncode == 0, run.proc.stderr
    spool = run.config.spool_dir
    files = sorted(spool.iterdir())
    # Finished (renamed) at dispose and at exit, so drainable at once; named for OpenCode's pid.
    assert files and all(re.fullmatch(r"opencode-\d+-[0-9a-f-]+\.ndjson", f.name) for f in files)
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert {line["source"] for line in lines} == {"opencode"}
    assert all(set(line) == {"source", "received_at", "payload"} for line in lines)
    # An event's id is the hash of its payload and the time the plugin saw it: identical
    # callbacks at different moments (chat.params of each model call) are distinct events.
    distinct = len(
        {(json.dumps(line["payload"], sort_keys=True), line["received_at"]) for line in lines}
    )
    kept = workdir / "spooled-copy"
    kept.mkdir()
    for f in files:
        shutil.copy(f, kept / f.name)

    daemon = Daemon(run.env, run.config).start()
    try:
        assert wait_for(lambda: list(spool.iterdir()) == [], timeout=60)
        assert run.count("events") == distinct  # every spooled event, once
        counts = {t: run.count(t) for t in TYPED}
        assert counts == {t: tools_run.count(t) for t in TYPED}
        # The same files drained again (a replay): not one row more.
        for f in kept.iterdir():
            # Whole or not at all, as spool files are written: a name the drain ignores, renamed.
            shutil.copy(f, spool / f"{f.name}.part")
            os.replace(spool / f"{f.name}.part", spool / f.name)
        assert wait_for(lambda: list(spool.iterdir()) == [], timeout=60)
        assert run.count("events") == distinct
        assert {t: run.count(t) for t in TYPED} == counts
        failing = run.rows(
            "SELECT exit_code FROM tools WHERE success = 0 AND exit_code IS NOT NULL"
        )
        assert failing == [{"exit_code": 2}]
    finally:
        daemon.stop()


def test_subagent_gets_a_child_session_with_its_own_tools(workdir):
    script = [
        tool(
            "task",
            {
                "description": "Run sub task",
                "prompt": "SUBAGENT_TASK: run echo from-subagent",
                "subagent_type": "general",
            },
        ),
        text("Done."),
    ]
    sub = [
        tool("bash", {"command": "echo from-subagent", "description": "Echo"}),
        text("Sub done."),
    ]
    run, daemon = capture(workdir, "task", script, subscripts={"SUBAGENT_TASK": sub})
    try:
        assert run.proc.returncode == 0, run.proc.stderr
        parent = run.main_session()
        (child,) = run.rows(
            "SELECT id, title, status FROM sessions WHERE parent_session_id = ?", (parent,)
        )
        assert "subagent" in child["title"]
        assert child["status"] == "idle"
        tools = run.rows("SELECT session_id, tool_name, success, exit_code, tool_output FROM tools")
        by_name = {t["tool_name"]: t for t in tools}
        assert by_name["task"]["session_id"] == parent and by_name["task"]["success"] == 1
        assert by_name["bash"]["session_id"] == child["id"]
        assert (by_name["bash"]["success"], by_name["bash"]["exit_code"]) == (1, 0)
        assert by_name["bash"]["tool_output"].strip() == "from-subagent"
        tokens = run.rows(
            "SELECT session_id, sum(prompt_tokens) AS p FROM messages "
            "WHERE role = 'assistant' GROUP BY 1"
        )
        assert {t["session_id"]: t["p"] for t in tokens} == {parent: 200, child["id"]: 200}
    finally:
        daemon.stop()


def test_auto_compaction_records_trigger_and_tokens(workdir):
    # The first turn reports a prompt near the context limit (200k - 8192 output): OpenCode
    # compacts before the next turn.
    script = [
        tool(
            "bash",
            {"command": "echo big", "description": "Big"},
            usage={"input_tokens": 195_000, "output_tokens": 50},
        ),
        text("After compaction."),
    ]
    run, daemon = capture(workdir, "compact", script)
    try:
        assert run.proc.returncode == 0, run.proc.stderr
        assert [r.kind for r in run.requests if r.kind in ("turn", "summary")] == [
            "turn",
            "summary",
            "turn",
        ]
        session = run.main_session()
        (compaction,) = run.rows("SELECT * FROM compaction_events")
        assert compaction["session_id"] == session
        assert compaction["trigger"] == "auto"
        # What the summarizer read and wrote (the fake's default usage for the summary request).
        assert (compaction["tokens_before"], compaction["tokens_after"]) == TURN_USAGE
        assert compaction["created_at"] > 0
        (big,) = run.rows("SELECT prompt_tokens FROM messages WHERE prompt_tokens = 195000")
        assert big
        kinds = {r["kind"] for r in run.rows("SELECT DISTINCT kind FROM events")}
        assert {"session.compacted", "experimental.session.compacting"} <= kinds
        # Three user messages: the prompt, OpenCode's compaction request and its "Continue".
        prompts = "SELECT prompt_count FROM sessions"
        roles = "SELECT role, count(*) AS n FROM messages WHERE role != 'assistant' GROUP BY 1"
        assert run.rows(prompts) == [{"prompt_count": 1}]
        assert run.rows(roles) == [{"role": "system", "n": 2}, {"role": "user", "n": 1}]
        agentd_json(run.env, "import", "opencode", "--db", str(run.scratch.opencode_db))
        assert run.rows(prompts) == [{"prompt_count": 1}]  # the import agrees
        assert run.rows(roles) == [{"role": "system", "n": 2}, {"role": "user", "n": 1}]
    finally:
        daemon.stop()


def test_http_400_is_a_session_error_with_its_status_code(workdir):
    run, daemon = capture(workdir, "error400", [http_error(400, message="fake bad request")])
    try:
        assert run.proc.returncode == 1
        (error,) = run.rows("SELECT * FROM session_errors")
        assert error["session_id"] == run.main_session()
        assert error["error_type"] == "APIError"
        assert error["status_code"] == 400
        assert error["error_message"] == "fake bad request"
        assert run.count("tools") == 0
    finally:
        daemon.stop()


def test_user_scope_install_is_loaded_too(workdir):
    script = [tool("bash", {"command": "echo user-scope", "description": "Echo"}), text("Done.")]
    run, daemon = capture(workdir, "user", script, scope="user")
    try:
        assert run.proc.returncode == 0, run.proc.stderr
        plugin = run.scratch.home / ".config" / "opencode" / "plugins" / "agentd.ts"
        assert plugin.exists() and not (run.scratch.proj / ".opencode" / "plugins").exists()
        (row,) = run.rows("SELECT tool_name, success FROM tools")
        assert row == {"tool_name": "bash", "success": 1}
    finally:
        daemon.stop()


def add_outcome_columns(home: Path) -> None:
    """sessions.outcome / last_error come with another branch's migration: add them here when this
    schema lacks them, before the daemon reads its columns."""
    conn = connect_sync(home / "agentd.db")
    present = {r[1] for r in conn.execute("PRAGMA table_info(sessions)")}
    for column in ("outcome", "last_error"):
        if column not in present:
            conn.execute(f"ALTER TABLE sessions ADD COLUMN {column} TEXT")
    conn.close()


def agentd_json(env: dict[str, str], *args: str) -> Any:
    proc = subprocess.run(
        [sys.executable, "-m", "agentd", *args, "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_http_401_session_reads_error_live_and_import_changes_nothing(workdir):
    script = [http_error(401, message="fake unauthorized")]
    run, daemon = capture(workdir, "error401", script, prepare=add_outcome_columns)
    try:
        assert run.proc.returncode == 1
        sql = "SELECT status, outcome, last_error FROM sessions"
        expected = [
            {"status": "idle", "outcome": "error", "last_error": "HTTP 401: fake unauthorized"}
        ]
        # The errored message.updated comes after session.idle: wait for the plugin's last events.
        assert wait_for(lambda: run.rows(sql) == expected, timeout=60), run.rows(sql)
        assert agentd_json(run.env, "query", "--sql", sql) == expected
        report = agentd_json(run.env, "query", "sessions")
        assert len(report) == 1
        if "outcome" in report[0]:  # the sessions report shows it once its column is there
            assert report[0]["outcome"] == "error"
        before = {t: run.rows(f"SELECT * FROM {t} ORDER BY id") for t in TYPED}
        summary = agentd_json(run.env, "import", "opencode", "--db", str(run.scratch.opencode_db))
        assert summary["mode"] == "daemon" and summary["events"]["stored"] > 0
        assert {t: run.rows(f"SELECT * FROM {t} ORDER BY id") for t in TYPED} == before
    finally:
        daemon.stop()


def test_write_over_a_file_gets_its_lines_from_the_snapshot_diff_on_import(workdir):
    def script(proj: Path) -> list[dict[str, Any]]:
        (proj / "old.txt").write_text("a\nb\nc\n")
        for argv in (
            ["git", "init", "-q"],
            ["git", "add", "."],
            ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "0"],
        ):  # OpenCode keeps snapshots (and their diffs) in git projects only
            subprocess.run(argv, cwd=proj, check=True, capture_output=True)
        return [tool("write", {"filePath": str(proj / "old.txt"), "content": "a\nB\nc\nd\n"}),
                text("Done.")]  # fmt: skip

    run, daemon = capture(workdir, "overwrite", script)
    try:
        assert run.proc.returncode == 0, run.proc.stderr
        sql = (
            "SELECT operation_type, lines_added, lines_removed FROM file_operations"
            " WHERE tool_id IS NOT NULL"
        )
        # OpenCode's write reports no line counts, and live capture cannot join the turn's diff.
        assert run.rows(sql) == [
            {"operation_type": "edited", "lines_added": None, "lines_removed": None}
        ]
        agentd_json(run.env, "import", "opencode", "--db", str(run.scratch.opencode_db))
        assert run.rows(sql) == [{"operation_type": "edited", "lines_added": 2, "lines_removed": 1}]
    finally:
        daemon.stop()
