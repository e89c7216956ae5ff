"""A scripted fake LLM server (standard library only) for driving the real agent CLIs offline.

It speaks the two wire protocols the real clients use:

- Anthropic Messages: ``POST /v1/messages[?beta=true]`` (SSE stream or JSON) and
  ``POST /v1/messages/count_tokens``. Claude Code uses this.
- OpenAI chat completions: ``POST /v1/chat/completions`` (SSE stream with ``tool_calls`` deltas
  and a final usage chunk when ``stream_options.include_usage``, or JSON). OpenCode's
  ``@ai-sdk/openai-compatible`` provider uses this.

Any other POST is logged and answered ``200 {}`` (e.g. Claude Code ``type: http`` hooks);
``GET /v1/models`` lists one model; any other GET is a 404.

A script is plain data: a list of turns. A turn is a dict with any of

- ``"text"``: assistant text (str);
- ``"tool_calls"``: a list of ``{"name": str, "input": dict}`` (several = parallel tool calls);
  text and tool calls may be combined (the text comes first);
- ``"usage"``: ``{"input_tokens": int, "output_tokens": int}`` (Anthropic replies also take
  ``cache_read_input_tokens``, ``ephemeral_5m_input_tokens``, ``ephemeral_1h_input_tokens``) (``prompt_tokens`` /
  ``completion_tokens`` are accepted too), e.g. ``{"input_tokens": 195000}`` to make OpenCode
  auto-compact;
- ``"error"``: ``{"status": int, "times": int | None, "message": str}``: the first ``times``
  requests for this turn get that HTTP error (``times: None`` = always), later ones the turn's
  text/tool calls (a turn that is only an error continues with a short text);
- ``"delay"``: seconds to wait before answering;
- ``"malformed"``: true to answer with broken SSE / JSON.

The helpers `text`, `tool`, `tools` and `http_error` build such dicts.

Choosing the turn (``turn_selection="count"``, the default): the number of
``role: "assistant"`` messages already in the request (``role: "system"`` entries, which Claude
sends mid-conversation, are ignored). Compaction rewrites the history, so after one the count no
longer matches the script position (Claude keeps the last assistant message after its summary;
OpenCode keeps the summary as one assistant message). ``turn_selection="sequential"`` instead
serves each script's turns in order, one per answered request (an error answer or a malformed
turn does not advance), which is right across compaction and ``--resume`` runs but not for
several agents sharing one script at once. A request past the end of its script gets
``EXHAUSTED_TEXT`` and is recorded with kind ``"exhausted"``.

Choosing the script: ``subscripts`` maps a substring of the *first user message* to a script
(first match wins, in insertion order); otherwise the main script. That is how a subagent gets its
own script: the main script calls the Agent/task tool with prompt ``"SUBAGENT_TASK: ..."`` and
``subscripts={"SUBAGENT_TASK": [...]}``.

Side requests never consume a turn:

- a title request (system prompt contains ``"You are a title generator"``, OpenCode) gets
  ``title`` (kind ``"title"``);
- a compaction request (Claude: the last user message contains ``"create a detailed summary of
  the conversation"``; OpenCode: any model request without tools) gets ``summary``
  (kind ``"summary"``).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import sys
import threading
import time
import traceback
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

Turn = dict[str, Any]
Script = Sequence[Turn]

TITLE_MARKER = "You are a title generator"
CLAUDE_COMPACT_MARKER = "create a detailed summary of the conversation"
DEFAULT_TITLE = "Fake session title"
SUMMARY_TEXT = "<analysis>fake</analysis><summary>summary</summary>"
EXHAUSTED_TEXT = "(fake model: script exhausted)"
AFTER_ERROR_TEXT = "Recovered after the error."
DEFAULT_USAGE = {"input_tokens": 100, "output_tokens": 20}

_TURN_KEYS = {"text", "tool_calls", "usage", "error", "delay", "malformed"}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_ERROR_MESSAGES = {400: "fake bad request", 500: "fake internal error"}

# Kinds recorded on `RecordedRequest.kind`.
MODEL_KINDS = ("turn", "error", "exhausted", "title", "summary")


# --------------------------------------------------------------------------- script helpers


def text(content: str, *, usage: Mapping[str, int] | None = None) -> Turn:
    """A turn answering with text only (ends the agent's loop)."""
    turn: Turn = {"text": content}
    if usage is not None:
        turn["usage"] = dict(usage)
    return turn


def tool(
    name: str,
    input: Mapping[str, Any] | None = None,
    *,
    text: str | None = None,
    usage: Mapping[str, int] | None = None,
) -> Turn:
    """A turn with one tool call, e.g. ``tool("Bash", {"command": "echo hi"})``."""
    return tools((name, input or {}), text=text, usage=usage)


def tools(
    *calls: tuple[str, Mapping[str, Any]] | Mapping[str, Any],
    text: str | None = None,
    usage: Mapping[str, int] | None = None,
) -> Turn:
    """A turn with several (parallel) tool calls: ``(name, input)`` pairs or call dicts."""
    turn: Turn = {"tool_calls": []}
    for call in calls:
        if isinstance(call, Mapping):
            turn["tool_calls"].append({"name": call["name"], "input": dict(call.get("input", {}))})
        else:
            name, args = call
            turn["tool_calls"].append({"name": name, "input": dict(args)})
    if text is not None:
        turn["text"] = text
    if usage is not None:
        turn["usage"] = dict(usage)
    return turn


def http_error(
    status: int, *, times: int | None = None, message: str | None = None, then: Turn | None = None
) -> Turn:
    """A turn whose first ``times`` requests (None: all) get HTTP ``status``, then ``then``."""
    turn: Turn = dict(then or {})
    turn["error"] = {"status": status, "times": times, "message": message}
    return turn


def validate_script(script: Script) -> list[Turn]:
    """A normalised copy of ``script``; raises ValueError on a malformed turn."""
    out: list[Turn] = []
    for i, turn in enumerate(script):
        if not isinstance(turn, Mapping):
            raise ValueError(f"turn {i}: not a dict: {turn!r}")
        unknown = set(turn) - _TURN_KEYS
        if unknown:
            raise ValueError(f"turn {i}: unknown keys {sorted(unknown)}")
        if not ({"text", "tool_calls", "error"} & set(turn)):
            raise ValueError(f"turn {i}: needs text, tool_calls or error")
        norm: Turn = dict(turn)
        if "text" in norm and not isinstance(norm["text"], str):
            raise ValueError(f"turn {i}: text must be a str")
        calls = []
        for call in norm.get("tool_calls", []):
            if not isinstance(call, Mapping) or not isinstance(call.get("name"), str):
                raise ValueError(f"turn {i}: tool call needs a name: {call!r}")
            args = call.get("input", {})
            if not isinstance(args, Mapping):
                raise ValueError(f"turn {i}: tool input must be a dict: {call!r}")
            calls.append({"name": call["name"], "input": dict(args)})
        if "tool_calls" in norm:
            norm["tool_calls"] = calls
        if "error" in norm:
            err = dict(norm["error"])
            if not isinstance(err.get("status"), int):
                raise ValueError(f"turn {i}: error needs an int status")
            err.setdefault("times", None)
            err.setdefault("message", None)
            norm["error"] = err
        out.append(norm)
    return out


# --------------------------------------------------------------------------- request parsing


def content_text(content: Any) -> str:
    """The text of a message's content (a str, or a list of blocks/parts with ``text``)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping) and isinstance(block.get("text"), str):
                parts.append(block["text"])
        return "\n".join(parts)
    return ""


def _messages(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    msgs = body.get("messages")
    return [m for m in msgs if isinstance(m, Mapping)] if isinstance(msgs, list) else []


def first_user_text(body: Mapping[str, Any]) -> str:
    for m in _messages(body):
        if m.get("role") == "user":
            return content_text(m.get("content"))
    return ""


def last_user_text(body: Mapping[str, Any]) -> str:
    for m in reversed(_messages(body)):
        if m.get("role") == "user":
            return content_text(m.get("content"))
    return ""


def system_text(body: Mapping[str, Any]) -> str:
    """Top-level ``system`` (Anthropic) plus every ``role: system`` message."""
    parts = [content_text(body.get("system"))]
    parts += [content_text(m.get("content")) for m in _messages(body) if m.get("role") == "system"]
    return "\n".join(parts)


def assistant_count(body: Mapping[str, Any]) -> int:
    return sum(1 for m in _messages(body) if m.get("role") == "assistant")


# --------------------------------------------------------------------------- records


@dataclass
class RecordedRequest:
    """One request the server received, and how it was answered."""

    method: str
    path: str  # with the query string, e.g. "/v1/messages?beta=true"
    headers: dict[str, str]
    body: Any  # parsed JSON, or None
    ts: float
    kind: str = ""  # turn | error | exhausted | title | summary | count_tokens | other | not_found
    script: str | None = None  # "" for the main script, else the subscripts key
    turn: int | None = None  # index in that script
    status: int = 0
    stream: bool = False
    tool_ids: list[str] = field(default_factory=list)  # ids of the tool calls answered

    @property
    def route(self) -> str:
        """The path without the query string."""
        return urlsplit(self.path).path

    @property
    def api(self) -> str | None:
        route = self.route
        if route.endswith("/chat/completions"):
            return "openai"
        if route.endswith("/messages") or route.endswith("/messages/count_tokens"):
            return "anthropic"
        return None

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for k, v in self.headers.items():
            if k.lower() == lname:
                return v
        return None


@dataclass
class _Answer:
    kind: str
    script: str | None = None
    turn: int | None = None
    text: str | None = None
    tool_calls: tuple[dict[str, Any], ...] = ()
    usage: dict[str, int] | None = None
    error: dict[str, Any] | None = None
    malformed: bool = False
    delay: float = 0.0
    tool_ids: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- server


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the handler threads
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, fake: FakeModelServer, addr: tuple[str, int]) -> None:
        self.fake = fake
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # the client went away, or stop() closed the connection
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the clients expect; every reply has a length
    timeout = 60  # an idle keep-alive connection ends after this
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        with self.server.sockets_lock:
            self.server.open_sockets.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.sockets_lock:
                self.server.open_sockets.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            raw = b"".join(chunks)
        else:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        if encoding in ("gzip", "deflate"):
            raw = zlib.decompress(raw, 47)  # gzip or zlib header, auto-detected
        return raw

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("request-id", "req_fake_" + secrets.token_hex(6))
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_GET(self) -> None:
        status, ctype, body, extra = self.server.fake._handle("GET", self.path, self.headers, b"")
        self._send(status, body, ctype, extra)

    def do_POST(self) -> None:
        raw = self._read_body()
        try:
            status, ctype, body, extra = self.server.fake._handle(
                "POST", self.path, self.headers, raw
            )
        except Exception:  # a bug in the fake: answer 500 with the traceback, keep serving
            self.server.fake.internal_errors.append(traceback.format_exc())
            status, ctype, extra = 500, "text/plain", {}
            body = self.server.fake.internal_errors[-1].encode()
        self._send(status, body, ctype, extra)


class FakeModelServer:
    """A scripted fake model on ``127.0.0.1:<free port>``; use as a context manager.

    >>> with FakeModelServer([tool("Bash", {"command": "echo hi"}), text("done")]) as server:
    ...     run_claude(scratch, server, "do it")
    """

    def __init__(
        self,
        script: Script = (),
        *,
        subscripts: Mapping[str, Script] | None = None,
        title: str = DEFAULT_TITLE,
        summary: str = SUMMARY_TEXT,
        turn_selection: str = "count",
        host: str = "127.0.0.1",
    ) -> None:
        if turn_selection not in ("count", "sequential"):
            raise ValueError("turn_selection must be 'count' or 'sequential'")
        self.turn_selection = turn_selection
        self.scripts: dict[str, list[Turn]] = {"": validate_script(script)}
        for key, sub in (subscripts or {}).items():
            if not key:
                raise ValueError("a subscript key must be a non-empty substring")
            self.scripts[key] = validate_script(sub)
        self.title = title
        self.summary = summary
        self.host = host
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._error_counts: dict[tuple[str, int], int] = {}
        self._cursors: dict[str, int] = {}  # next turn per script ("sequential")
        self.internal_errors: list[str] = []  # tracebacks of bugs in the fake itself
        self._ids: set[str] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle

    def start(self) -> FakeModelServer:
        if self._httpd is not None:
            raise RuntimeError("already started")
        self._httpd = _HTTPServer(self, (self.host, 0))
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-model-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open keep-alive connections, join every thread. Idempotent."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        httpd.shutdown()
        with httpd.sockets_lock:
            sockets = list(httpd.open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        httpd.server_close()  # joins the handler threads
        if thread is not None:
            thread.join(timeout=10)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (ANTHROPIC_BASE_URL; OpenCode wants ``base_url + "/v1"``)."""
        return f"http://{self.host}:{self.port}"

    # ---- inspection

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def requests_of(self, *kinds: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.kind in kinds]

    @property
    def model_requests(self) -> list[RecordedRequest]:
        """Requests to /v1/messages or /v1/chat/completions (any kind)."""
        return [r for r in self.requests if r.kind in MODEL_KINDS]

    # ---- request handling (called from handler threads)

    def _new_id(self, prefix: str, nbytes: int = 8) -> str:
        with self._lock:
            while True:
                new = prefix + secrets.token_hex(nbytes)
                if new not in self._ids:
                    self._ids.add(new)
                    return new

    def _handle(
        self, method: str, path: str, headers: Any, raw: bytes
    ) -> tuple[int, str, bytes, dict[str, str]]:
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        rec = RecordedRequest(
            method=method,
            path=path,
            headers={k: v for k, v in headers.items()},
            body=body,
            ts=time.time(),
        )
        with self._lock:
            self._requests.append(rec)
        route = rec.route
        if method == "GET":
            if route.endswith("/models"):
                rec.kind, rec.status = "other", 200
                return _json(200, {"object": "list", "data": [{"id": "model", "object": "model"}]})
            rec.kind, rec.status = "not_found", 404
            return _json(404, {"error": {"message": f"not found: {route}"}})
        api = rec.api
        if api is None:
            rec.kind, rec.status = "other", 200
            return _json(200, {})
        if not isinstance(body, dict):
            rec.kind, rec.status = "error", 400
            return self._error_response(api, 400, "fake server: request body is not JSON")
        if route.endswith("/count_tokens"):
            rec.kind, rec.status = "count_tokens", 200
            return _json(200, {"input_tokens": max(1, len(raw) // 4)})

        answer = self._choose(api, body)
        rec.kind, rec.script, rec.turn = answer.kind, answer.script, answer.turn
        rec.stream = bool(body.get("stream"))
        if answer.delay:
            time.sleep(answer.delay)
        if answer.error is not None:
            rec.status = answer.error["status"]
            return self._error_response(api, answer.error["status"], answer.error.get("message"))
        rec.status = 200
        model = str(body.get("model") or "fake-model")
        if answer.malformed:
            if rec.stream:
                bad = b'event: message_start\ndata: {"type": "message_start", "message": {\n\n'
                return 200, "text/event-stream", bad, {"Cache-Control": "no-cache"}
            return 200, "application/json", b'{"id": "broken", ', {}
        if api == "anthropic":
            reply = self._anthropic_reply(body, model, answer)
        else:
            reply = self._openai_reply(body, model, answer)
        rec.tool_ids = list(answer.tool_ids)
        return reply

    def _choose(self, api: str, body: Mapping[str, Any]) -> _Answer:
        if TITLE_MARKER in system_text(body):
            return _Answer("title", text=self.title)
        if CLAUDE_COMPACT_MARKER in last_user_text(body) or not body.get("tools"):
            return _Answer("summary", text=self.summary)
        first = first_user_text(body)
        key = next((k for k in self.scripts if k and k in first), "")
        script = self.scripts[key]
        with self._lock:  # choosing, error counting and advancing the cursor are one step
            if self.turn_selection == "sequential":
                index = self._cursors.get(key, 0)
            else:
                index = assistant_count(body)
            if index >= len(script):
                return _Answer("exhausted", script=key, turn=index, text=EXHAUSTED_TEXT)
            turn = script[index]
            answer = _Answer(
                "turn",
                script=key,
                turn=index,
                text=turn.get("text"),
                tool_calls=tuple(turn.get("tool_calls", ())),
                usage=turn.get("usage"),
                malformed=bool(turn.get("malformed")),
                delay=float(turn.get("delay") or 0),
            )
            err = turn.get("error")
            if err is not None:
                served = self._error_counts.get((key, index), 0)
                if err["times"] is None or served < err["times"]:
                    self._error_counts[(key, index)] = served + 1
                    answer.kind, answer.error = "error", err
                    return answer
                if answer.text is None and not answer.tool_calls:
                    answer.text = AFTER_ERROR_TEXT
            if not answer.malformed:
                self._cursors[key] = index + 1
        return answer

    def _error_response(
        self, api: str, status: int, message: str | None
    ) -> tuple[int, str, bytes, dict[str, str]]:
        message = message or _ERROR_MESSAGES.get(status, f"fake error {status}")
        etype = _ERROR_TYPES.get(status, "api_error")
        if api == "anthropic":
            return _json(status, {"type": "error", "error": {"type": etype, "message": message}})
        return _json(status, {"error": {"message": message, "type": etype, "code": status}})

    # ---- Anthropic Messages

    def _anthropic_reply(
        self, body: Mapping[str, Any], model: str, answer: _Answer
    ) -> tuple[int, str, bytes, dict[str, str]]:
        usage_in, usage_out = _usage(answer.usage)
        usage = {
            "input_tokens": usage_in,
            "output_tokens": usage_out,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        # Prompt-cache figures a turn's "usage" may set (Anthropic's fields, as the API sends
        # them): reads, and writes split by lifetime (the total is their sum).
        extra = answer.usage or {}
        if "cache_read_input_tokens" in extra:
            usage["cache_read_input_tokens"] = int(extra["cache_read_input_tokens"])
        writes = {
            k: int(extra.get(k, 0))
            for k in ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")
        }
        if any(writes.values()):
            usage["cache_creation_input_tokens"] = sum(writes.values())
            usage["cache_creation"] = writes
        blocks: list[dict[str, Any]] = []
        if answer.text is not None:
            blocks.append({"type": "text", "text": answer.text})
        for call in answer.tool_calls:
            tool_id = self._new_id("toolu_fake_")
            answer.tool_ids.append(tool_id)
            blocks.append(
                {"type": "tool_use", "id": tool_id, "name": call["name"], "input": call["input"]}
            )
        stop_reason = "tool_use" if answer.tool_calls else "end_turn"
        msg_id = self._new_id("msg_fake_")
        if not body.get("stream"):
            message = {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": blocks,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": usage,
            }
            return _json(200, message)
        events: list[tuple[str, dict[str, Any]]] = [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": msg_id,
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {**usage, "output_tokens": 1},
                    },
                },
            )
        ]
        for index, block in enumerate(blocks):
            if block["type"] == "text":
                start = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": part} for part in _halves(block["text"])]
            else:
                start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                deltas = [
                    {"type": "input_json_delta", "partial_json": part}
                    for part in _halves(json.dumps(block["input"]))
                ]
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": start},
                )
            )
            for delta in deltas:
                events.append(
                    (
                        "content_block_delta",
                        {"type": "content_block_delta", "index": index, "delta": delta},
                    )
                )
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": usage,
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        sse = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
        return 200, "text/event-stream; charset=utf-8", sse.encode(), {"Cache-Control": "no-cache"}

    # ---- OpenAI chat completions

    def _openai_reply(
        self, body: Mapping[str, Any], model: str, answer: _Answer
    ) -> tuple[int, str, bytes, dict[str, str]]:
        usage_in, usage_out = _usage(answer.usage)
        usage = {
            "prompt_tokens": usage_in,
            "completion_tokens": usage_out,
            "total_tokens": usage_in + usage_out,
        }
        calls = [
            {
                "id": self._new_id("call_", 12),
                "type": "function",
                "function": {"name": c["name"], "arguments": json.dumps(c["input"])},
            }
            for c in answer.tool_calls
        ]
        answer.tool_ids.extend(c["id"] for c in calls)
        finish = "tool_calls" if calls else "stop"
        completion_id = self._new_id("chatcmpl-fake", 8)
        created = int(time.time())
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": answer.text}
            if calls:
                message["tool_calls"] = calls
            reply = {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": usage,
            }
            return _json(200, reply)
        base = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return {
                **base,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }

        chunks = [chunk({"role": "assistant", "content": ""})]
        if answer.text:
            chunks += [chunk({"content": part}) for part in _halves(answer.text)]
        for i, call in enumerate(calls):
            head = {
                "index": i,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            chunks.append(chunk({"tool_calls": [head]}))
            for part in _halves(call["function"]["arguments"]):
                chunks.append(
                    chunk({"tool_calls": [{"index": i, "function": {"arguments": part}}]})
                )
        chunks.append(chunk({}, finish))
        stream_options = body.get("stream_options")
        if isinstance(stream_options, Mapping) and stream_options.get("include_usage"):
            chunks.append({**base, "choices": [], "usage": usage})
        sse = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return 200, "text/event-stream; charset=utf-8", sse.encode(), {"Cache-Control": "no-cache"}


def _json(status: int, obj: Any) -> tuple[int, str, bytes, dict[str, str]]:
    return status, "application/json", json.dumps(obj).encode(), {}


def _usage(override: Mapping[str, int] | None) -> tuple[int, int]:
    o = override or {}
    usage_in = o.get("input_tokens", o.get("prompt_tokens", DEFAULT_USAGE["input_tokens"]))
    usage_out = o.get("output_tokens", o.get("completion_tokens", DEFAULT_USAGE["output_tokens"]))
    return int(usage_in), int(usage_out)


def _halves(s: str) -> list[str]:
    """Split a string into two stream deltas (one when short), as real APIs send pieces."""
    if len(s) < 2:
        return [s]
    mid = len(s) // 2
    return [s[:mid], s[mid:]]
