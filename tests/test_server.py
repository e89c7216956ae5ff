"""The daemon's wire behaviour against a real daemon subprocess: every bad input of the issue.

At the end, the transport's framing with no socket, over a fake service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import query_db, wait_for


class RawConnection:
    """A plain socket client that can send anything, including bytes no real client would."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(path))
        except OSError:
            self.sock.close()
            raise
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_line(self) -> bytes:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError(f"closed; pending {self.buffer[:200]!r}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def recv_json(self) -> Any:
        return json.loads(self.recv_line())

    def request(self, message: Any) -> Any:
        self.send(json.dumps(message).encode() + b"\n")
        return self.recv_json()

    def is_closed_by_peer(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


PING = {"jsonrpc": "2.0", "id": 99, "method": "ping"}


@pytest.fixture
def conn(daemon):
    c = RawConnection(daemon.config.socket_path)
    yield c
    c.close()


def assert_still_serving(conn: RawConnection) -> None:
    reply = conn.request(PING)
    assert reply["id"] == 99 and reply["result"]["version"]


def test_ping_answers_version_and_pid(conn, daemon):
    reply = conn.request(PING)
    assert reply == {
        "jsonrpc": "2.0",
        "id": 99,
        "result": {"version": reply["result"]["version"], "pid": daemon.process.pid},
    }


def test_invalid_json_is_a_parse_error_and_the_connection_survives(conn):
    conn.send(b'{"jsonrpc": "2.0", "method": \n')
    reply = conn.recv_json()
    assert reply["id"] is None and reply["error"]["code"] == -32700
    assert_still_serving(conn)


def test_invalid_utf8_is_a_parse_error(conn):
    conn.send(b'{"jsonrpc": "2.0", "id": 1, "method": "p\xff\xfeing"}\n')
    assert conn.recv_json()["error"]["code"] == -32700
    assert_still_serving(conn)


@pytest.mark.parametrize("value", [b"42", b'"ping"', b"null", b"true"])
def test_json_neither_object_nor_array_is_an_invalid_request(conn, value):
    conn.send(value + b"\n")
    reply = conn.recv_json()
    assert reply["error"]["code"] == -32600 and reply["id"] is None
    assert_still_serving(conn)


def test_wrong_jsonrpc_version_is_an_invalid_request_with_its_id(conn):
    reply = conn.request({"jsonrpc": "1.0", "id": 7, "method": "ping"})
    assert reply["id"] == 7 and reply["error"]["code"] == -32600
    assert_still_serving(conn)


def test_unknown_envelope_field_is_an_invalid_request(conn):
    reply = conn.request({"jsonrpc": "2.0", "id": 8, "method": "ping", "extra": 1})
    assert reply["id"] == 8 and reply["error"]["code"] == -32600


def test_unknown_method(conn):
    reply = conn.request({"jsonrpc": "2.0", "id": 3, "method": "frobnicate"})
    assert reply["id"] == 3
    assert reply["error"]["code"] == -32601
    assert reply["error"]["data"] == {"method": "frobnicate"}


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"source": 5, "payload": {}}, "$.source"),
        ({"source": "claude", "payload": [1, 2]}, "$.payload"),
        ({"source": "claude", "payload": {}, "received_at": "now"}, "$.received_at"),
        ({"source": "claude"}, "$"),
        ("not-an-object", "$"),
    ],
)
def test_params_of_the_wrong_type_name_the_path(conn, params, path):
    reply = conn.request({"jsonrpc": "2.0", "id": 4, "method": "ingest", "params": params})
    assert reply["error"]["code"] == -32602
    assert reply["error"]["data"]["path"] == path
    assert_still_serving(conn)


def test_empty_batch_is_an_invalid_request(conn):
    conn.send(b"[]\n")
    reply = conn.recv_json()
    assert reply["error"]["code"] == -32600
    assert_still_serving(conn)


def test_batch_mixes_answers_and_skips_notifications(conn, daemon):
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "method": "ingest", "params": {"source": "x", "payload": {"n": 1}}},
        {"jsonrpc": "2.0", "id": 2, "method": "nope"},
        5,
    ]
    replies = conn.request(batch)
    assert [r.get("id") for r in replies] == [1, 2, None]
    assert "result" in replies[0]
    assert replies[1]["error"]["code"] == -32601
    assert replies[2]["error"]["code"] == -32600
    # The notification was stored all the same, before the batch was answered.
    assert query_db(daemon.config.db_path, "SELECT source FROM events") == [{"source": "x"}]


def ingest_request(received_at, payload, source="claude", **extra):
    """An `ingest` request (a notification unless `id` is given in extra)."""
    params = {"source": source, "payload": payload, "received_at": received_at}
    return {"jsonrpc": "2.0", "method": "ingest", "params": params, **extra}


def test_a_batch_of_ingests_answers_each_as_a_single_ingest_would(conn, daemon):
    """A batch's ingests go to the store as one group; each still gets its own answer: stored,
    invalid params (its path), an error for a bad event's bytes, and no answer for a
    notification, with the other methods of the batch answered beside them."""

    ingest = ingest_request
    batch = [
        ingest(1, {"session_id": "grp", "hook_event_name": "Stop"}, id=1),
        ingest(2, {"session_id": "grp", "n": 2}),  # a notification
        {"jsonrpc": "2.0", "id": 3, "method": "ingest", "params": {"source": "claude"}},
        ingest(4, [1, 2], id=4),  # a payload that is not an object
        {"jsonrpc": "2.0", "id": 5, "method": "ping"},
        ingest(6, {"session_id": "grp", "n": 6}, id=6),
        ingest(7, {"session_id": "grp", "n": 6}, id=7),
        ingest(6, {"session_id": "grp", "n": 6}, id=8),  # a replay of id 6 in the same batch
    ]
    replies = {r["id"]: r for r in conn.request(batch)}
    assert sorted(replies) == [1, 3, 4, 5, 6, 7, 8]
    for i in (1, 6, 7, 8):
        assert replies[i]["result"] == {"stored": True}, replies[i]
    assert replies[3]["error"]["code"] == -32602
    assert replies[3]["error"]["data"] == {"path": "$"}
    assert replies[4]["error"]["code"] == -32602
    assert replies[4]["error"]["data"] == {"path": "$.payload"}
    assert replies[5]["result"]["pid"] > 0
    stored = query_db(daemon.config.db_path, "SELECT received_at FROM events ORDER BY received_at")
    assert [r["received_at"] for r in stored] == [1, 2, 6, 7]


def test_a_batch_of_only_ingests_is_answered_as_the_same_requests_among_others(conn, daemon):
    """A batch of nothing but ingests (decoded in one pass) gets, byte for byte, the answers its
    requests get item by item in a batch with another method: in order, a notification skipped,
    a bad payload its own error, string and null ids kept; acked once committed."""

    def ingest(i, payload, **extra):
        return ingest_request(i, payload, source="opencode", **extra)

    batch = [
        ingest(1, {"sessionID": "one", "type": "x"}, id=1),
        ingest(2, {"sessionID": "one", "n": 2}),  # a notification
        ingest(3, [1, 2], id="three"),  # a payload that is not an object
        ingest(4, {"sessionID": "one", "n": 4}, id=None),
        ingest(1, {"sessionID": "one", "type": "x"}, id=5),  # a replay of id 1
    ]
    conn.send(json.dumps(batch).encode() + b"\n")
    alone = conn.recv_line()
    assert [(r["id"], "result" in r) for r in json.loads(alone)] == [
        (1, True),
        ("three", False),
        (None, True),
        (5, True),
    ]
    assert json.loads(alone)[1]["error"]["data"] == {"path": "$.payload"}
    stored = query_db(daemon.config.db_path, "SELECT received_at FROM events ORDER BY received_at")
    assert [r["received_at"] for r in stored] == [1, 2, 4]
    conn.send(
        json.dumps([*batch, {"jsonrpc": "2.0", "id": "p", "method": "ping"}]).encode() + b"\n"
    )
    mixed = conn.recv_line()
    assert mixed.startswith(alone[:-1] + b","), (alone, mixed)
    assert json.loads(mixed)[-1]["id"] == "p"


def test_batch_of_10000_ingests_is_answered_and_stored(conn, daemon):
    batch = [
        {
            "jsonrpc": "2.0",
            "id": i,
            "method": "ingest",
            "params": {"source": "claude", "payload": {"session_id": "big", "n": i}},
        }
        for i in range(10_000)
    ]
    replies = conn.request(batch)
    assert len(replies) == 10_000
    assert sorted(r["id"] for r in replies) == list(range(10_000))
    assert all(r["result"] == {"stored": True} for r in replies)
    count = query_db(daemon.config.db_path, "SELECT count(*) AS n FROM events")
    assert count == [{"n": 10_000}]


def test_line_over_the_limit_gets_an_error_and_a_clean_close(daemon):
    big = RawConnection(daemon.config.socket_path)
    other = RawConnection(daemon.config.socket_path)
    payload = {"source": "claude", "payload": {"blob": "x" * (20 * 1024 * 1024)}}
    line = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ingest", "params": payload})
    sender = threading.Thread(target=lambda: _send_ignoring_reset(big, line.encode() + b"\n"))
    sender.start()
    reply = big.recv_json()
    sender.join(30)
    assert reply["error"]["code"] == -32001
    assert reply["error"]["data"] == {"limit": 16 * 1024 * 1024}
    assert big.is_closed_by_peer()
    big.close()
    assert_still_serving(other)  # another client never noticed
    other.close()
    assert daemon.alive


def _send_ignoring_reset(conn: RawConnection, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        conn.send(data)  # the daemon may close after answering: expected


def test_a_silent_client_does_not_block_others(daemon):
    silent = RawConnection(daemon.config.socket_path)
    try:
        for _ in range(3):
            c = RawConnection(daemon.config.socket_path)
            assert_still_serving(c)
            c.close()
    finally:
        silent.close()


def test_half_a_line_then_disconnect_leaves_the_daemon_serving(daemon):
    half = RawConnection(daemon.config.socket_path)
    half.send(b'{"jsonrpc": "2.0", "id": 1, "method": "ingest", "params": {"sou')
    half.close()
    time.sleep(0.1)
    c = RawConnection(daemon.config.socket_path)
    assert_still_serving(c)
    c.close()
    assert query_db(daemon.config.db_path, "SELECT count(*) AS n FROM events") == [{"n": 0}]


def test_pipelined_requests_on_one_connection_are_all_answered(conn):
    lines = b"".join(
        json.dumps({"jsonrpc": "2.0", "id": i, "method": "ping"}).encode() + b"\n"
        for i in range(200)
    )
    conn.send(lines)
    ids = sorted(conn.recv_json()["id"] for _ in range(200))
    assert ids == list(range(200))


def test_ingest_of_an_unknown_source_is_kept_raw(conn, daemon):
    reply = conn.request(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "ingest",
            "params": {"source": "cursor", "payload": {"type": "weird", "sessionId": "c1"}},
        }
    )
    assert reply["result"] == {"stored": True}
    rows = query_db(daemon.config.db_path, "SELECT source, kind, session_id, payload FROM events")
    assert rows == [
        {
            "source": "cursor",
            "kind": "weird",
            "session_id": "c1",
            "payload": '{"type": "weird", "sessionId": "c1"}',
        }
    ]


def test_status_reports_counters(conn, daemon):
    daemon.ingest("claude", {"session_id": "s", "hook_event_name": "Stop"})
    status = conn.request({"jsonrpc": "2.0", "id": 1, "method": "status"})["result"]
    assert status["events_total"] == 1
    assert status["events_stored"] == 1
    assert status["database"] == str(daemon.config.db_path)
    assert status["database_bytes"] > 0
    assert status["spool_files"] == 0
    assert status["uptime_s"] >= 0


def test_shutdown_method_stops_the_daemon_cleanly(conn, daemon):
    reply = conn.request({"jsonrpc": "2.0", "id": 1, "method": "shutdown"})
    assert reply["result"] == {"stopping": True}
    assert daemon.process.wait(15) == 0
    assert not daemon.config.socket_path.exists()
    assert not daemon.config.pid_path.exists()


@pytest.mark.parametrize(
    "params, path",
    [
        (b'{"source": "claude", "payload": {"prompt": "caf\xe9"}}', "$.payload"),
        (b'{"source": "cl\xe9", "payload": {}}', None),  # outside the payload: msgspec's own path
    ],
)
def test_invalid_utf8_in_the_params_is_invalid_params(conn, daemon, params, path):
    # msgspec raises UnicodeDecodeError for it before 0.23, DecodeError from 0.23 on.
    conn.send(b'{"jsonrpc": "2.0", "id": 5, "method": "ingest", "params": ' + params + b"}\n")
    reply = conn.recv_json()
    assert reply["id"] == 5 and reply["error"]["code"] == -32602
    if path is not None:
        assert reply["error"]["data"] == {"path": path}
    assert_still_serving(conn)


def test_lone_surrogate_escapes_from_javascript_are_stored_not_refused(conn, daemon):
    # JSON.stringify("\ud83d") is '"\\ud83d"': valid JSON text that msgspec alone would refuse.
    line = (
        b'{"jsonrpc": "2.0", "id": 6, "method": "ingest", "params": {"source": "claude", '
        b'"payload": {"session_id": "sur", "cut": "emoji \\ud83d", "pair": "\\ud83d\\ude00", '
        b'"literal": "\\\\ud800"}}}\n'
    )
    conn.send(line)
    assert conn.recv_json() == {"jsonrpc": "2.0", "id": 6, "result": {"stored": True}}
    (row,) = query_db(daemon.config.db_path, "SELECT payload FROM events")
    payload = json.loads(row["payload"])
    assert payload["cut"] == "emoji \ufffd"
    assert payload["pair"] == "\U0001f600"
    assert payload["literal"] == "\\ud800"  # an escaped backslash, not a surrogate: untouched


# -- the layers, with no socket -------------------------------------------------------------------


class FakeService:
    """Just what methods.ServiceAPI asks for; records the events it is given."""

    def __init__(self) -> None:
        self.connections = 0
        self.stopping = False
        self.ingested: list[tuple[str, bytes, int | None]] = []

    async def ingest(self, source: str, payload: bytes, received_at: int | None) -> None:
        self.ingested.append((source, payload, received_at))

    async def ingest_many(
        self, items: list[tuple[str, bytes, int | None]]
    ) -> list[Exception | None]:
        self.ingested.extend(items)
        return [None] * len(items)

    async def status(self) -> dict[str, Any]:
        return {"connections": self.connections}

    async def prune(self, before: int) -> dict[str, Any]:
        return {"deleted": {"events": 0}}

    async def vacuum(self) -> dict[str, Any]:
        return {"bytes_before": 2, "bytes_after": 1}

    def request_stop(self) -> None:
        self.stopping = True


class CollectingWriter:
    """The part of asyncio.StreamWriter the transport uses, keeping what it writes."""

    def __init__(self) -> None:
        self.data = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        pass


async def serve_bytes(data: bytes, limit: int = 1 << 16) -> tuple[list[Any], FakeService]:
    from agentd.service.transport import budget_for, handle_connection

    reader = asyncio.StreamReader(limit=limit)
    reader.feed_data(data)
    reader.feed_eof()
    writer = CollectingWriter()
    service = FakeService()
    budget = budget_for(limit)
    await handle_connection(reader, writer, service, max_line_bytes=limit, budget=budget)  # type: ignore[arg-type]
    assert writer.closed
    assert budget.used == 0  # every byte taken was given back
    return [json.loads(line) for line in writer.data.splitlines()], service


async def test_framing_answers_each_line_and_batch_with_no_socket():
    ingest = {"source": "claude", "payload": {"a": 1}, "received_at": 5}
    data = (
        b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n'
        b"\n"  # blank lines are skipped
        + json.dumps({"jsonrpc": "2.0", "id": 2, "method": "ingest", "params": ingest}).encode()
        + b"\n"
        + b'[{"jsonrpc":"2.0","id":3,"method":"vacuum"},{"jsonrpc":"2.0","method":"shutdown"}]\n'
        + b"not json\n"
        + b'{"jsonrpc":"2.0","id":4,"method":"ping"}'  # no newline: dropped, not answered
    )
    answers, service = await serve_bytes(data)
    by_id = {json.dumps(a["id"]) if not isinstance(a, list) else "batch": a for a in answers}
    assert len(answers) == 4
    assert by_id["1"]["result"]["pid"] > 0
    assert by_id["2"]["result"] == {"stored": True}
    assert by_id["batch"] == [
        {"jsonrpc": "2.0", "id": 3, "result": {"bytes_before": 2, "bytes_after": 1}}
    ]
    assert by_id["null"]["error"]["code"] == -32700
    assert service.ingested == [("claude", b'{"a": 1}', 5)]
    assert service.stopping  # the notification ran


async def test_framing_splits_lines_across_reads_and_gives_back_every_byte():
    # Lines longer than a read, lines split across reads, blank lines, many lines in one read.
    lines = [
        json.dumps({"jsonrpc": "2.0", "id": i, "method": "ping", "params": "x" * (i * 9000)})
        for i in range(40)
    ]
    data = b"\n\n".join(line.encode() for line in lines) + b"\n"
    answers, _ = await serve_bytes(data, limit=1 << 20)
    assert sorted(a["id"] for a in answers) == list(range(40))


async def test_framing_answers_a_line_over_the_limit_and_stops_reading():
    long_line = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":"' + b"x" * 200 + b'"}\n'
    answers, _ = await serve_bytes(long_line + b'{"jsonrpc":"2.0","id":2,"method":"ping"}\n', 128)
    assert [a["error"]["code"] for a in answers] == [-32001]
    assert answers[0]["error"]["data"] == {"limit": 128}


def test_methods_do_not_import_the_transport_or_the_service():
    # methods.py sees the daemon only through ServiceAPI (agentd/service/__init__.py).
    code = (
        "import json, sys, agentd.service.methods; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('agentd.service'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == ["agentd.service", "agentd.service.methods"]


def test_a_time_past_int64_is_invalid_params_not_an_internal_error(conn, daemon):
    # SQLite stores an INTEGER in 64 bits: such a value used to fail the commit (-32603, and the
    # batch retried one event at a time).
    for field, value in (("received_at", 2**64 - 1), ("received_at", -(2**63) - 1)):
        params = {"source": "claude", "payload": {"session_id": "t64"}, field: value}
        reply = conn.request({"jsonrpc": "2.0", "id": 1, "method": "ingest", "params": params})
        assert reply["error"]["code"] == -32602 and reply["error"]["data"] == {"path": f"$.{field}"}
        batch = [
            {"jsonrpc": "2.0", "id": 2, "method": "ingest", "params": params},
            {"jsonrpc": "2.0", "id": 3, "method": "ingest",
             "params": {"source": "claude", "payload": {"session_id": "ok"}, "received_at": 2**63 - 1}},
        ]  # fmt: skip
        first, second = conn.request(batch)
        assert first["error"]["code"] == -32602 and second["result"] == {"stored": True}
    assert query_db(daemon.config.db_path, "SELECT session_id FROM events") == [
        {"session_id": "ok"}
    ]
    assert_still_serving(conn)


def _holds_big(obj: Any, size: int) -> bool:
    """Whether `obj` refers to a string or bytes of at least `size` (a frame: through its locals)."""
    import gc

    return any(
        isinstance(r, str | bytes | bytearray) and len(r) >= size for r in gc.get_referents(obj)
    )


async def test_answering_an_error_leaves_no_reference_cycle(config):
    """An error kept as an answer, with its traceback and chained errors, held the frames that
    raised it and the list keeping it in a cycle: each refused line's bytes stayed until the next
    collection, which the daemon's high gc threshold makes rare (a review made 150 refused lines of
    4 MB grow the daemon to 2.4 GB). The real service; each kind of answer, with gc off."""
    import gc

    from agentd.service.service import Service
    from agentd.service.transport import handle_connection

    big = "x" * 100_000

    def line(message: Any) -> bytes:
        return json.dumps(message).encode() + b"\n"

    def ingest(i: int, params: Any) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": i, "method": "ingest", "params": params}

    good = {"source": "claude", "payload": {"session_id": "s", "text": big}}
    not_object = {"source": "claude", "payload": [big]}
    bad_params = {"source": 1, "payload": {"text": big}}
    lines = {
        "ping": line({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
        "stored": line(ingest(1, good)),
        "payload not an object": line(ingest(1, not_object)),
        "params of the wrong type": line(ingest(1, bad_params)),
        "unknown method": line({"jsonrpc": "2.0", "id": 1, "method": "nope"}),
        "batch of ingests, one refused": line([ingest(1, good), ingest(2, not_object)]),
        "batch with bad params": line([ingest(1, bad_params), {"jsonrpc": "2.0", "id": 2, "method": "ping"}]),
    }  # fmt: skip
    service = Service(config)
    service.lock()
    await service.open()
    try:
        for name, data in lines.items():
            reader = asyncio.StreamReader(limit=1 << 24)
            reader.feed_data(data)
            reader.feed_eof()
            writer = CollectingWriter()
            gc.collect()
            gc.disable()
            try:
                await handle_connection(reader, writer, service, max_line_bytes=1 << 24)  # type: ignore[arg-type]
                assert writer.data.count(b"\n") == 1, name
                # What only a collection frees, kept to look at: none of it may hold the line's
                # bytes or payload (the daemon's own background tasks may leave other garbage
                # meanwhile, on a loaded machine: that is not this answer's).
                gc.set_debug(gc.DEBUG_SAVEALL)
                gc.collect()
                assert not [o for o in gc.garbage if _holds_big(o, len(big))], name
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
                gc.enable()
    finally:
        await service.close()


def _send_until_stalled(sock: socket.socket, data: bytes, cap: int, stall_s: float = 2.0) -> int:
    """Send `data` over and over until `cap` bytes, or until nothing is taken for `stall_s`;
    the bytes the daemon (its socket) took."""
    sock.settimeout(stall_s)
    sent = 0
    view = memoryview(data)
    offset = 0
    try:
        while sent < cap:
            n = sock.send(view[offset:])
            sent += n
            offset = (offset + n) % len(data)
    except TimeoutError:
        pass
    return sent


def test_a_client_that_never_reads_its_answers_stops_being_read(daemon):
    """A client pipelining batches and reading nothing used to have up to 256 lines and their
    answers held (370 MB each connection with 440 KB batches): now reading it pauses once 4 MiB of
    its lines are unanswered. Other clients are served meanwhile, and every line it sent is
    answered once it reads."""
    line = (
        "[" + ",".join(json.dumps({"jsonrpc": "2.0", "id": i, "method": "ping"}) for i in range(10_000)) + "]\n"
    ).encode()  # fmt: skip
    hog = RawConnection(daemon.config.socket_path)
    sent = _send_until_stalled(hog.sock, line, cap=256 * 1024 * 1024)
    assert sent < 32 * 1024 * 1024, sent  # 4 MiB unanswered + a line + socket buffers
    other = RawConnection(daemon.config.socket_path)
    assert_still_serving(other)
    other.close()
    hog.sock.settimeout(60)
    for _ in range(sent // len(line)):  # each whole line it sent: answered, all 10 000 requests
        answers = hog.recv_json()
        assert len(answers) == 10_000 and all("result" in a for a in answers)
    hog.close()
    assert daemon.alive


def test_partial_lines_of_many_clients_share_one_memory_budget(daemon):
    """12 clients each sending 15 MiB of one line without its newline were all read (180 MB
    held): now the bytes read and unanswered of all connections share one budget (64 MiB), and a
    client beyond it is not read until bytes are freed. A small request still passes."""
    start = (
        b'{"jsonrpc":"2.0","id":1,"method":"ingest","params":{"source":"claude","payload":{"x":"'
    )
    holders = [RawConnection(daemon.config.socket_path) for _ in range(12)]
    total = 0
    for holder in holders:
        holder.send(start)
        total += _send_until_stalled(holder.sock, b"a" * (1 << 20), cap=15 * (1 << 20))
    assert total < 100 * 1024 * 1024, total
    other = RawConnection(daemon.config.socket_path)
    assert_still_serving(other)  # a connection holding little always may read
    for holder in holders:
        holder.close()
    assert_still_serving(other)
    other.close()
    assert daemon.alive


async def test_connections_waiting_on_the_budget_give_up_and_free_it(config, monkeypatch):
    """Connections each holding part of a long line could wait on one another for room in the
    budget for ever (and one whose client left is never read again to find out): a review made
    five 15 MB lines, and then the connection cap, lock every client out. A connection waits a
    bounded time, then is closed (its client spools) and its bytes are given back."""
    from agentd.service import transport
    from agentd.service.service import Service

    monkeypatch.setattr(transport, "BUDGET_WAIT_S", 0.2)
    budget = transport.Budget(1 << 20)
    service = Service(config)
    service.lock()
    await service.open()
    try:
        part = b'{"jsonrpc":"2.0","id":1,"method":"ping","x":"' + b"a" * (700 * 1024)
        readers = [asyncio.StreamReader(limit=1 << 24) for _ in range(2)]
        for reader in readers:
            reader.feed_data(part)  # and never its newline: both want more than the budget
        serving = [
            asyncio.ensure_future(
                transport.handle_connection(
                    reader,
                    CollectingWriter(),
                    service,
                    max_line_bytes=1 << 24,
                    budget=budget,  # type: ignore[arg-type]
                )
            )
            for reader in readers
        ]
        done, _ = await asyncio.wait(serving, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        assert done  # one at least gave up waiting
        for reader in readers:
            reader.feed_eof()
        await asyncio.wait_for(asyncio.gather(*serving), 30)
        assert budget.used == 0
    finally:
        await service.close()


def test_connections_beyond_the_cap_are_closed_at_once(daemon):
    from agentd.service.transport import MAX_CONNECTIONS

    conns = []
    answered = closed = 0
    for _ in range(MAX_CONNECTIONS + 5):  # one by one: each accepted before the next connects
        c = RawConnection(daemon.config.socket_path)
        conns.append(c)
        try:
            c.request(PING)
            answered += 1
        except (ConnectionError, OSError):
            closed += 1
    assert (answered, closed) == (MAX_CONNECTIONS, 5)
    for c in conns:
        c.close()
    assert wait_for(lambda: _pings(daemon.config.socket_path))  # the slots are freed


def _pings(path: Path) -> bool:
    c = RawConnection(path)
    try:
        return c.request(PING)["id"] == 99
    except (ConnectionError, OSError):
        return False
    finally:
        c.close()
