# Over 400 lines: the connection loop, its memory bounds and the listener share one lifecycle.
"""The transport: the Unix socket, its connections, and NDJSON framing (docs/protocol.md).

It binds the socket privately, refuses peers of another uid, reads lines (with a size limit), and
answers each request with what methods.dispatch returns for it. Memory is bounded whatever clients
do (docs/protocol.md, "Limits"): at most MAX_CONNECTIONS connections (beyond, each is closed at
once: a client then spools), one budget for every byte read and not yet answered, across all
connections (a connection waits for its share, unread bytes stay in the kernel), and per
connection at most MAX_UNANSWERED_BYTES unanswered before it is read further (a client that sends
and never reads stops being read). What a request means is the methods' business, reached through a
methods.ServiceAPI; this module never looks further. Nothing a client sends can take the daemon or
another connection down: every line is answered or the connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import struct
import time
from pathlib import Path
from typing import Any

from agentd import paths
from agentd.config import Config
from agentd.errors import (
    AlreadyRunning,
    InternalError,
    LineTooLong,
    StartupError,
    WireError,
)
from agentd.protocol import (
    IngestRequest,
    Invalid,
    Request,
    decode_ingest_batch,
    decode_line,
    encode_error,
    encode_replies,
    encode_response,
    error_response,
    response,
)
from agentd.service.methods import (
    BATCHED,
    ServiceAPI,
    client_gone,
    dispatch,
    dispatch_many,
    ingest_decoded,
)

__all__ = ["Transport", "handle_connection", "Budget"]

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 10.0  # bound on finishing in-flight requests after a stop is asked
MAX_IN_FLIGHT_LINES = 256  # per connection; reading pauses beyond it (backpressure)
MAX_UNANSWERED_BYTES = 4 * 1024 * 1024  # per connection; reading pauses beyond it (one line passes)
MAX_CONNECTIONS = 128  # beyond it a new connection is closed at once (its client spools)
MIN_BUDGET_BYTES = 64 * 1024 * 1024  # read and unanswered, all connections (2 lines if more)
FLOOR_BYTES = 256 * 1024  # a connection may always hold this much, whatever the budget
# A connection waits at most this long for room in the budget, then is closed (its client
# spools): connections each holding part of a long line could otherwise wait on one another for
# ever, and one whose client left is never read again to find out.
BUDGET_WAIT_S = 10.0
READ_CHUNK = 64 * 1024  # read at a time; also the reader's limit: it buffers at most twice this
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes with the terminating NUL


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def _socket_is_live(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:
        return False
    finally:
        probe.close()
    return True


class Budget:
    """Bytes read from clients and not yet answered, all connections together: a connection takes
    its bytes before it keeps them, and waits while they would pass the limit; but a connection
    holding less than FLOOR_BYTES always may (a ping, a usual hook event pass while others hold
    the budget), and so may any when nothing is held (a line as long as the limit passes)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._freed = asyncio.Event()

    async def take(self, n: int, held: int, timeout: float | None = None) -> None:
        """Take `n` bytes for a connection that holds `held` already; TimeoutError (nothing
        taken) after waiting `timeout` seconds in all for room."""
        if self.used and self.used + n > self.limit and held + n > FLOOR_BYTES:
            # Only a connection that must wait sets a deadline: every read of every client
            # passes here.
            async with asyncio.timeout(timeout):
                while self.used and self.used + n > self.limit and held + n > FLOOR_BYTES:
                    self._freed.clear()
                    await self._freed.wait()
        self.used += n

    def give(self, n: int) -> None:
        self.used -= n
        self._freed.set()


def budget_for(max_line_bytes: int) -> Budget:
    return Budget(max(MIN_BUDGET_BYTES, 2 * max_line_bytes))


class _Connection:
    """One client: lines in, answers out, at most MAX_IN_FLIGHT_LINES being handled at once, and
    at most MAX_UNANSWERED_BYTES of them (one line of any size passes)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        service: ServiceAPI,
        max_line_bytes: int,
        budget: Budget,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.service = service
        self.max_line_bytes = max_line_bytes
        self.budget = budget
        self.closing = False
        self.gone = False  # the client closed its end (or the connection broke)
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT_LINES)
        self._unanswered = 0  # bytes of lines read and not yet answered
        self._answered = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._write_lock = asyncio.Lock()
        self.read_task: asyncio.Task[None] | None = None

    async def serve(self) -> None:
        client_gone.set(lambda: self.gone)  # copied into the read task and each line's task
        self.read_task = asyncio.create_task(self._read_loop())
        try:
            await self.read_task
        except asyncio.CancelledError:
            if not self.closing:
                raise
        finally:
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=SHUTDOWN_TIMEOUT_S)
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()

    def close(self) -> None:
        """Stop reading; lines already read are still answered (serve() waits for them)."""
        self.closing = True
        if self.read_task is not None:
            self.read_task.cancel()

    async def _read_loop(self) -> None:
        # Bytes read and not yet a line's own: buf[start:]. Taken from the budget when read; a
        # line's bytes are given back when it is answered (_line_done), a blank line's at once.
        buf = bytearray()
        start = 0
        limit = self.max_line_bytes
        try:
            while True:
                while self._unanswered > MAX_UNANSWERED_BYTES:  # backpressure: answer first
                    self._answered.clear()
                    await self._answered.wait()
                try:
                    chunk = await self.reader.read(READ_CHUNK)
                except (ConnectionError, OSError):
                    self.gone = True
                    return
                if not chunk:
                    self.gone = True
                    if buf.strip():
                        log.warning(
                            "client closed mid-line; %d bytes without a newline dropped", len(buf)
                        )
                    return
                try:
                    await self.budget.take(len(chunk), len(buf) + self._unanswered, BUDGET_WAIT_S)
                except TimeoutError:
                    log.warning(
                        "a connection holding %d bytes waited %.0f s for the shared read budget;"
                        " closing it (its client spools)",
                        len(buf) - start + self._unanswered,
                        BUDGET_WAIT_S,
                    )
                    return
                scanned = len(buf)  # only the new bytes can hold a newline
                buf += chunk
                while (end := buf.find(b"\n", max(start, scanned))) >= 0 and end - start <= limit:
                    line = bytes(memoryview(buf)[start : end + 1])
                    start = end + 1
                    if not line.strip():
                        self.budget.give(len(line))
                        continue
                    self._unanswered += len(line)
                    task = asyncio.create_task(self._handle_line(line))
                    self._tasks.add(task)
                    task.add_done_callback(functools.partial(self._line_done, len(line)))
                    await self._slots.acquire()  # after: the line is the task's (and its bytes)
                # The loop's last search says it (a long line is scanned once, not once per
                # read): no newline after `start`, or one past the limit.
                too_long = (end if end >= 0 else len(buf)) - start > limit
                del buf[:start]
                start = 0
                if too_long:
                    log.warning("line over %d bytes; answering an error and closing", limit)
                    error = LineTooLong(f"Line too long: over {limit} bytes", data={"limit": limit})
                    await self._send(encode_error(None, error))
                    return
        finally:
            self.budget.give(len(buf) - start)

    def _line_done(self, size: int, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()
        self._unanswered -= size
        self.budget.give(size)
        self._answered.set()

    async def _handle_line(self, line: bytes) -> None:
        try:
            # A batch of only ingests, the shape batching clients send, is decoded in one pass
            # and answered in one encoding; any other line item by item.
            ingests = decode_ingest_batch(line)
            if ingests is not None:
                reply = await self._answer_ingests(ingests)
            else:
                reply = await self._answer_line(line)
        except Exception as e:  # a bug here must cost one answer, not the connection
            log.exception("failed to handle a line of %d bytes", len(line))
            await self._send(encode_error(None, InternalError(f"Internal error: {e}")))
            return
        if reply is not None:  # None: only notifications
            await self._send(reply)

    async def _answer_line(self, line: bytes) -> bytes | None:
        is_batch, messages = decode_line(line)
        if len(messages) == 1:
            answers = [await self._answer(messages[0])]
        else:
            answers = await self._answer_batch(messages)
        replies = [a for a in answers if a is not None]
        if not replies:
            return None
        return b"[" + b",".join(replies) + b"]" if is_batch else replies[0]

    async def _answer_ingests(self, requests: list[IngestRequest]) -> bytes | None:
        """The answer to a batch of ingests: what _answer_batch() gives for it, byte for byte."""
        try:
            results = await ingest_decoded(self.service, [r.params for r in requests])
        except Exception as e:  # a bug of the method: every request of it gets the error
            log.exception("method ingest failed")
            results = [e] * len(requests)
        replies = []
        for request, result in zip(requests, results, strict=True):
            if isinstance(result, Exception):
                result = self._error(request, result)
            if request.is_notification:
                continue
            if isinstance(result, WireError):
                replies.append(error_response(request.id, result))
            else:
                replies.append(response(request.id, result))
        return encode_replies(replies) if replies else None

    async def _answer_batch(self, messages: list[Request | Invalid]) -> list[bytes | None]:
        """The answers to a batch's messages, in order. Requests for a method in BATCHED go to it
        together (one call each method); the others are answered one by one, concurrently."""
        grouped: dict[str, list[int]] = {}
        for i, message in enumerate(messages):
            if isinstance(message, Request) and message.method in BATCHED:
                grouped.setdefault(message.method, []).append(i)
        if not grouped:
            return list(await asyncio.gather(*(self._answer(m) for m in messages)))
        answers: list[bytes | None] = [None] * len(messages)
        batched = {i for positions in grouped.values() for i in positions}
        singles = [i for i in range(len(messages)) if i not in batched]

        async def one(i: int) -> None:
            answers[i] = await self._answer(messages[i])

        async def many(name: str, positions: list[int]) -> None:
            requests = [messages[i] for i in positions]
            try:
                results = await dispatch_many(
                    self.service, name, [r.params for r in requests if isinstance(r, Request)]
                )
            except Exception as e:  # a bug of the method: every request of it gets the error
                log.exception("method %s failed", name)
                results = [e] * len(positions)
            for i, request, result in zip(positions, requests, results, strict=True):
                assert isinstance(request, Request)
                answers[i] = self._reply(request, result)

        await asyncio.gather(*(one(i) for i in singles), *(many(n, p) for n, p in grouped.items()))
        return answers

    def _error(self, request: Request | IngestRequest, error: Exception) -> WireError:
        """What answers `request` for `error`: a WireError as it is, any other an internal one."""
        if isinstance(error, WireError):
            return error
        log.error("method %s failed: %r", request.method, error)
        return InternalError(f"Internal error: {type(error).__name__}: {error}")

    def _reply(self, request: Request, result: Any) -> bytes | None:
        """The line answering `request` with `result` (an Exception: its error); None for a
        notification."""
        if isinstance(result, Exception):
            result = self._error(request, result)
        if request.is_notification:
            return None
        if isinstance(result, WireError):
            return encode_error(request.id, result)
        return encode_response(request.id, result)

    async def _answer(self, message: Request | Invalid) -> bytes | None:
        if isinstance(message, Invalid):
            return encode_error(message.id, message.error)
        request_id = None if message.is_notification else message.id
        try:
            result = await dispatch(self.service, message.method, message.params)
        except WireError as e:
            # Answered here: kept in a local, the error's traceback would hold this frame (and
            # the line's bytes) in a reference cycle until the next collection.
            return None if message.is_notification else encode_error(request_id, e)
        except Exception as e:  # a method's bug must not take the connection down
            log.exception("method %s failed", message.method)
            error = InternalError(f"Internal error: {type(e).__name__}: {e}")
            return None if message.is_notification else encode_error(request_id, error)
        return None if message.is_notification else encode_response(request_id, result)

    async def _send(self, data: bytes) -> None:
        async with self._write_lock:
            try:
                self.writer.write(data + b"\n")
                await self.writer.drain()
            except (ConnectionError, OSError):
                pass  # the client left; its events are committed all the same
            except RuntimeError:  # uvloop's "handler is closed": serve() closed it, at its bound
                pass


async def handle_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    service: ServiceAPI,
    max_line_bytes: int,
    budget: Budget | None = None,
) -> None:
    """Serve one client until it closes: framing here, meaning in methods.dispatch.

    `budget` is shared by every connection (a new one of its own when None). Needs no socket:
    tests feed a StreamReader and collect what is written.
    """
    budget = budget or budget_for(max_line_bytes)
    await _Connection(reader, writer, service, max_line_bytes, budget).serve()


class Transport:
    """The listening socket. Lifecycle: Transport(...) -> prepare() -> await start() -> await close()."""

    def __init__(self, config: Config, service: ServiceAPI) -> None:
        """StartupError if the socket path cannot be a Unix socket's."""
        self.socket_path = config.socket_path
        self.state_dir = config.state_dir
        self.max_line_bytes = config.max_line_bytes
        self.service = service
        self.closing = False
        self._listener: asyncio.AbstractServer | None = None
        self._connections: set[_Connection] = set()
        self.budget = budget_for(self.max_line_bytes)
        self._socket_identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the socket made
        self._refused_logged = -60.0  # monotonic time the connection cap was last logged
        size = len(os.fsencode(self.socket_path))
        if size > MAX_SOCKET_PATH:
            raise StartupError(
                f"socket path is {size} bytes, over the {MAX_SOCKET_PATH}-byte"
                f" limit of Unix sockets: {self.socket_path} (set AGENTD_SOCKET to a shorter path)"
            )

    def prepare(self) -> None:
        """Make the socket's directory private and remove a stale socket (a crashed daemon's).

        AlreadyRunning if a daemon answers there, StartupError if the path is not ours to use.
        """
        directory = self.socket_path.parent
        try:
            paths.make_private_dir(directory, chmod=self._owns_socket_dir())
        except OSError as e:
            raise StartupError(f"cannot prepare {e.filename or directory}: {e.strerror}") from e
        path = self.socket_path
        if not os.path.lexists(path):
            return
        if not path.is_socket():
            raise StartupError(f"{path} exists and is not a socket; refusing to replace it")
        if _socket_is_live(path):
            raise AlreadyRunning(None, path)  # another daemon (another state dir) serves it
        log.info("removing stale socket %s left by a daemon that is gone", path)
        path.unlink()

    def _owns_socket_dir(self) -> bool:
        """True when the socket's directory is agentd's own (so making it 0700 is ours to do)."""
        parent = self.socket_path.parent
        return parent == self.state_dir or parent.name == "agentd"

    async def start(self) -> None:
        """Listen: the socket is born 0600, so there is no window where others can connect."""
        old_umask = os.umask(0o177)
        try:
            self._listener = await asyncio.start_unix_server(
                self._on_connect, path=str(self.socket_path), limit=READ_CHUNK
            )
        finally:
            os.umask(old_umask)
        os.chmod(self.socket_path, 0o600)
        st = os.lstat(self.socket_path)
        self._socket_identity = (st.st_dev, st.st_ino)

    async def close(self) -> None:
        """Stop accepting and reading, finish in-flight requests (bounded), remove the socket."""
        self.closing = True
        if self._listener is not None:
            self._listener.close()
        for connection in list(self._connections):
            connection.close()
        if self._connections:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SHUTDOWN_TIMEOUT_S + 1):
                    while self._connections:
                        await asyncio.sleep(0.01)
        if self._listener is not None:
            with contextlib.suppress(FileNotFoundError):
                st = os.lstat(self.socket_path)
                if (st.st_dev, st.st_ino) == self._socket_identity:  # not another daemon's since
                    self.socket_path.unlink()
            self._listener = None

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None and _peer_uid(sock) != os.getuid():
            log.warning(
                "refused a peer with uid %d (only uid %d may connect)", _peer_uid(sock), os.getuid()
            )
            writer.close()
            return
        if self.closing:
            writer.close()
            return
        if len(self._connections) >= MAX_CONNECTIONS:
            if time.monotonic() - self._refused_logged >= 60:  # one line a minute at most
                self._refused_logged = time.monotonic()
                log.warning("%d connections open: closing new ones until some end", MAX_CONNECTIONS)
            writer.close()
            return
        connection = _Connection(reader, writer, self.service, self.max_line_bytes, self.budget)
        self._connections.add(connection)
        self.service.connections += 1
        try:
            await connection.serve()
        finally:
            self._connections.discard(connection)
            self.service.connections -= 1
