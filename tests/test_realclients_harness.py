"""The real-client harness works: real `claude -p` and `opencode run`, offline, scripted.

These tests capture with trivial loggers (a `python3 -c` command hook, a plain ESM plugin), not
agentd, so they prove the harness itself: fake model server, scratch dirs, clean environments.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from realclients.agents import (
    CLAUDE_VERSION,
    FAKE_ANTHROPIC_KEY,
    OPENCODE_VERSION,
    AgentsNotInstalled,
    Scratch,
    claude_bin,
    claude_hook_settings,
    jsonl_logger_command,
    parse_claude_json,
    parse_json_lines,
    read_jsonl,
    run_claude,
    run_opencode,
    write_claude_settings,
    write_opencode_plugin,
)
from realclients.fake_model import (
    DEFAULT_TITLE,
    EXHAUSTED_TEXT,
    SUMMARY_TEXT,
    FakeModelServer,
    http_error,
    text,
    tool,
    tools,
)

realclient = pytest.mark.realclient

# A plain ESM plugin (only node:fs): one JSON line per `event` and `tool.execute.after` callback.
CAPTURE_JS = """\
import fs from "node:fs";

const LOG = process.env.OC_EVENT_LOG;

function write(kind, fields) {
  if (!LOG) return;
  let line;
  try {
    line = JSON.stringify({ kind, ts: Date.now(), ...fields });
  } catch (err) {
    line = JSON.stringify({ kind, ts: Date.now(), unserializable: String(err) });
  }
  fs.appendFileSync(LOG, line + "\\n");
}

export const Capture = async (ctx) => {
  write("plugin.init", { directory: ctx.directory });
  return {
    event: async ({ event }) => write("event", { event }),
    "tool.execute.after": async (input, output) => write("tool.execute.after", { input, output }),
  };
};
"""


@pytest.fixture
def scratch() -> Iterator[Scratch]:
    s = Scratch.create()
    yield s
    s.cleanup()


def claude_hook_log(scratch: Scratch, events: tuple[str, ...]) -> Path:
    """Registers the JSONL logger for ``events`` in the project settings; returns the log path."""
    log = scratch.root / "hooks.jsonl"
    write_claude_settings(scratch, claude_hook_settings(jsonl_logger_command(log), events))
    return log


def of_event(hooks: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [h for h in hooks if h.get("hook_event_name") == name]


# --------------------------------------------------------------------------- fake server alone


def post(
    server: FakeModelServer, path: str, body: dict[str, Any]
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def sse_data(raw: bytes) -> list[Any]:
    out = []
    for line in raw.decode().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line[6:]))
    return out


TOOLS = [{"name": "Bash", "input_schema": {"type": "object"}}]


def test_fake_anthropic_stream_and_turn_choice() -> None:
    script = [
        tools(("Bash", {"command": "a"}), ("Bash", {"command": "b"}), text="Running."),
        text("Done.", usage={"input_tokens": 195000}),
    ]
    with FakeModelServer(script) as server:
        first = {"model": "m", "stream": True, "tools": TOOLS}
        first["messages"] = [{"role": "user", "content": "go"}, {"role": "system", "content": "x"}]
        status, headers, raw = post(server, "/v1/messages?beta=true", first)
        assert status == 200
        assert headers["Content-Type"].startswith("text/event-stream")
        events = sse_data(raw)
        assert [e["type"] for e in events][:2] == ["message_start", "content_block_start"]
        assert events[-2]["delta"]["stop_reason"] == "tool_use"
        assert events[-1]["type"] == "message_stop"
        starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
        assert [b["type"] for b in starts] == ["text", "tool_use", "tool_use"]
        ids = [b["id"] for b in starts[1:]]
        assert all(i.startswith("toolu_fake_") for i in ids) and len(set(ids)) == 2
        partial = "".join(
            e["delta"]["partial_json"]
            for e in events
            if e["type"] == "content_block_delta" and e["index"] == 1
        )
        assert json.loads(partial) == {"command": "a"}

        second = {"model": "m", "stream": False, "tools": TOOLS}
        second["messages"] = [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "text", "text": "Running."}]},
            {"role": "system", "content": "ignored"},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": ids[0]}]},
        ]
        status, _, raw = post(server, "/v1/messages", second)
        reply = json.loads(raw)
        assert reply["content"] == [{"type": "text", "text": "Done."}]
        assert reply["stop_reason"] == "end_turn"
        assert reply["usage"]["input_tokens"] == 195000

        third = dict(second, messages=second["messages"] + [{"role": "assistant", "content": "x"}])
        _, _, raw = post(server, "/v1/messages", third)
        assert json.loads(raw)["content"][0]["text"] == EXHAUSTED_TEXT

        assert json.loads(post(server, "/v1/messages/count_tokens", first)[2])["input_tokens"] > 0
        assert post(server, "/hook", {"any": 1})[0:3:2] == (200, b"{}")
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/nope")
        assert conn.getresponse().status == 404
        conn.close()
    kinds = [(r.kind, r.turn) for r in server.requests]
    assert kinds == [
        ("turn", 0),
        ("turn", 1),
        ("exhausted", 2),
        ("count_tokens", None),
        ("other", None),
        ("not_found", None),
    ]
    assert server.requests[0].tool_ids == ids
    assert server.requests[0].body["messages"][0]["content"] == "go"


def openai_stream_text(raw: bytes) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content") or "" for c in sse_data(raw) if c["choices"]
    )


def test_fake_openai_stream_side_requests_errors_and_subscripts() -> None:
    script = [http_error(400, times=1, then=tool("bash", {"command": "echo hi"})), text("Main.")]
    with FakeModelServer(script, subscripts={"SUBAGENT_TASK": [text("Sub.")]}) as server:
        base = {"model": "model", "stream": True, "stream_options": {"include_usage": True}}
        msgs = [
            {"role": "system", "content": "You are opencode"},
            {"role": "user", "content": "go"},
        ]
        req = dict(base, tools=[{"type": "function"}], messages=msgs)
        status, _, raw = post(server, "/v1/chat/completions", req)
        assert status == 400
        assert json.loads(raw)["error"]["code"] == 400

        status, _, raw = post(server, "/v1/chat/completions", req)  # the error was times=1
        assert status == 200
        assert raw.endswith(b"data: [DONE]\n\n")
        chunks = sse_data(raw)
        calls = [
            call
            for c in chunks
            if c["choices"]
            for call in c["choices"][0]["delta"].get("tool_calls", [])
        ]
        assert calls[0]["id"].startswith("call_")
        assert calls[0]["function"]["name"] == "bash"
        args = "".join(c["function"]["arguments"] for c in calls)
        assert json.loads(args) == {"command": "echo hi"}
        assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
        assert chunks[-1]["choices"] == []
        assert chunks[-1]["usage"]["prompt_tokens"] == 100

        title = dict(base, messages=[{"role": "system", "content": "You are a title generator."}])
        summary = dict(base, messages=[*msgs, {"role": "user", "content": "Summarize"}])
        assert openai_stream_text(post(server, "/v1/chat/completions", title)[2]) == DEFAULT_TITLE
        assert openai_stream_text(post(server, "/v1/chat/completions", summary)[2]) == SUMMARY_TEXT

        sub = {"model": "model", "tools": [{"type": "function"}]}
        sub["messages"] = [{"role": "user", "content": "SUBAGENT_TASK: do it"}]
        reply = json.loads(post(server, "/v1/chat/completions", sub)[2])
        assert reply["choices"][0]["message"]["content"] == "Sub."
    assert [(r.kind, r.script, r.status) for r in server.requests] == [
        ("error", "", 400),
        ("turn", "", 200),
        ("title", None, 200),
        ("summary", None, 200),
        ("turn", "SUBAGENT_TASK", 200),
    ]


def test_fake_sequential_mode_and_clean_stop() -> None:
    script = [text("one"), text("two")]
    server = FakeModelServer(script, turn_selection="sequential").start()
    try:
        req = {"model": "m", "tools": TOOLS, "messages": [{"role": "user", "content": "go"}]}
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        answers = []
        for _ in range(3):  # one keep-alive connection, same request body each time
            conn.request("POST", "/v1/messages", json.dumps(req))
            answers.append(json.loads(conn.getresponse().read())["content"][0]["text"])
        assert answers == ["one", "two", EXHAUSTED_TEXT]
        before = threading.active_count()
    finally:
        # The idle keep-alive connection must not block the stop: it would hang here for good
        # (a bound, not a timing: a stop that works takes milliseconds).
        stopping = threading.Thread(target=server.stop, daemon=True)
        stopping.start()
        stopping.join(60)
    assert not stopping.is_alive()
    assert threading.active_count() < before
    conn.close()
    assert not server.running
    with pytest.raises(ValueError):
        FakeModelServer([{"txt": "typo"}])


def test_missing_agents_give_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGENTD_AGENTS_DIR", str(tmp_path))
    with pytest.raises(AgentsNotInstalled, match="scripts/install-agents"):
        claude_bin()


# --------------------------------------------------------------------------- real clients


@realclient
def test_claude_tool_hooks(scratch: Scratch) -> None:
    log = claude_hook_log(
        scratch, ("PreToolUse", "PostToolUse", "PostToolUseFailure", "SessionStart", "Stop")
    )
    script = [
        tool("Bash", {"command": "echo hi", "description": "Say hi"}),
        tool("Bash", {"command": "exit 3", "description": "Fail on purpose"}),
        text("All done."),
    ]
    with FakeModelServer(script) as server:
        proc = run_claude(scratch, server, "run two commands")
    assert proc.returncode == 0, proc.stderr
    assert server.internal_errors == []
    result = parse_claude_json(proc)
    assert result["result"] == "All done."
    session_id = result["session_id"]

    requests = server.model_requests
    assert [(r.kind, r.turn) for r in requests] == [("turn", 0), ("turn", 1), ("turn", 2)]
    first = requests[0]
    assert first.path == "/v1/messages?beta=true"
    assert first.body["stream"] is True
    assert first.header("x-api-key") == FAKE_ANTHROPIC_KEY
    assert first.header("User-Agent").startswith(f"claude-cli/{CLAUDE_VERSION} ")
    assert "echo hi" in json.dumps(requests[1].body["messages"])  # the tool result went back

    hooks = read_jsonl(log)
    assert {h["session_id"] for h in hooks} == {session_id}
    assert hooks[0]["hook_event_name"] == "SessionStart"
    assert hooks[0]["source"] == "startup"
    assert hooks[-1]["hook_event_name"] == "Stop"
    assert hooks[-1]["last_assistant_message"] == "All done."

    (ok,) = [h for h in of_event(hooks, "PostToolUse") if h["tool_name"] == "Bash"]
    assert ok["tool_response"]["stdout"] == "hi"
    assert ok["tool_use_id"] == requests[0].tool_ids[0]
    (failed,) = of_event(hooks, "PostToolUseFailure")
    assert failed["tool_name"] == "Bash"
    assert failed["error"].startswith("Exit code 3")
    assert failed["tool_use_id"] == requests[1].tool_ids[0]
    assert len(of_event(hooks, "PreToolUse")) == 2

    transcript = scratch.claude_transcript(session_id)
    assert transcript.exists()
    assert hooks[0]["transcript_path"] == str(transcript)


@realclient
def test_claude_http_500_fires_stop_failure(scratch: Scratch) -> None:
    log = claude_hook_log(scratch, ("Stop", "StopFailure", "SessionEnd"))
    # Two 500s and only one retry allowed: the turn fails.
    with FakeModelServer([http_error(500, times=2, then=text("unreachable"))]) as server:
        proc = run_claude(scratch, server, "hello", extra_env={"CLAUDE_CODE_MAX_RETRIES": "1"})
    assert proc.returncode == 1
    assert [(r.kind, r.status) for r in server.model_requests] == [("error", 500)] * 2
    hooks = read_jsonl(log)
    (failure,) = of_event(hooks, "StopFailure")
    assert failure["error"] == "server_error"
    assert "500" in failure["last_assistant_message"]
    assert of_event(hooks, "Stop") == []
    assert of_event(hooks, "SessionEnd")


@realclient
def test_claude_retries_through_one_http_500(scratch: Scratch) -> None:
    log = claude_hook_log(scratch, ("Stop", "StopFailure"))
    with FakeModelServer([http_error(500, times=1, then=text("Recovered."))]) as server:
        proc = run_claude(scratch, server, "hello")
    assert proc.returncode == 0, proc.stderr
    assert parse_claude_json(proc)["result"] == "Recovered."
    assert [(r.kind, r.status) for r in server.model_requests] == [("error", 500), ("turn", 200)]
    hooks = read_jsonl(log)
    assert [h["hook_event_name"] for h in hooks] == ["Stop"]


@realclient
def test_claude_manual_compact_fires_precompact(scratch: Scratch) -> None:
    log = claude_hook_log(scratch, ("SessionStart", "PreCompact", "PostCompact"))
    script = [tool("Bash", {"command": "echo hi", "description": "Say hi"}), text("Done.")]
    with FakeModelServer(script) as server:
        first = run_claude(scratch, server, "say hi")
        assert first.returncode == 0, first.stderr
        session_id = parse_claude_json(first)["session_id"]
        second = run_claude(scratch, server, "/compact", resume=session_id)
    assert second.returncode == 0, second.stderr
    kinds = [r.kind for r in server.model_requests]
    assert kinds == ["turn", "turn", "summary"]  # compaction does not consume a turn

    hooks = read_jsonl(log)
    assert {h["session_id"] for h in hooks} == {session_id}
    (pre,) = of_event(hooks, "PreCompact")
    assert pre["trigger"] == "manual"
    (post,) = of_event(hooks, "PostCompact")
    assert post["compact_summary"] == SUMMARY_TEXT
    sources = [h["source"] for h in of_event(hooks, "SessionStart")]
    assert sources[:2] == ["startup", "resume"]
    assert "compact" in sources


@realclient
def test_opencode_plugin_sees_tool_and_idle(scratch: Scratch) -> None:
    log = scratch.root / "oc-events.jsonl"
    write_opencode_plugin(scratch, "capture.js", CAPTURE_JS)
    script = [tool("bash", {"command": "echo hello-oc", "description": "Say hello"}), text("Done.")]
    with FakeModelServer(script) as server:
        proc = run_opencode(scratch, server, "say hello", extra_env={"OC_EVENT_LOG": str(log)})
    assert proc.returncode == 0, proc.stderr
    assert server.internal_errors == []

    turns = server.requests_of("turn")
    assert [r.turn for r in turns] == [0, 1]
    assert [r.kind for r in server.requests_of("title")] == ["title"]  # answered, no turn used
    assert turns[0].path == "/v1/chat/completions"
    assert turns[0].header("User-Agent").startswith(f"opencode/{OPENCODE_VERSION} ")
    assert turns[0].body["stream_options"]["include_usage"] is True

    records = read_jsonl(log)
    (after,) = [
        r for r in records if r["kind"] == "tool.execute.after" and r["input"]["tool"] == "bash"
    ]
    assert after["output"]["metadata"]["exit"] == 0
    assert after["output"]["output"].strip() == "hello-oc"
    assert after["input"]["callID"] == turns[0].tool_ids[0]
    event_types = [r["event"]["type"] for r in records if r["kind"] == "event"]
    assert "session.created" in event_types
    assert "session.idle" in event_types
    session_ids = {
        r["event"]["properties"]["sessionID"]
        for r in records
        if r["kind"] == "event" and r["event"]["type"] == "session.idle"
    }
    assert session_ids == {after["input"]["sessionID"]}

    stdout_events = parse_json_lines(proc)  # --format json
    assert any(e.get("type") == "tool_use" for e in stdout_events)
    assert scratch.opencode_db.exists()
