"""The daemon: Unix socket lifecycle, connections, NDJSON framing, spool draining, shutdown.

The RPC methods (methods.py) give meaning; the store (db/store.py) writes. Nothing a client sends can
take the daemon or another connection down: every line is answered or the connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import struct
import time
from pathlib import Path
from typing import Any

import msgspec

from agentd import __version__, pidfile, spool
from agentd.config import Config
from agentd.db.store import Store
from agentd.errors import AgentdError, InternalError, LineTooLong
from agentd.ingest import Privacy
from agentd.protocol import (
    IngestParams,
    Invalid,
    Request,
    decode_json,
    decode_line,
    encode_error,
    encode_response,
)
from agentd.redact import Redactor
from agentd.service.methods import dispatch

__all__ = ["Server", "AlreadyRunning", "StartupError", "run"]

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 10.0  # bound on finishing in-flight requests after a stop is asked
SPOOL_POLL_S = 1.0
MAX_IN_FLIGHT_LINES = 256  # per connection; reading pauses beyond it (backpressure)
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes with the terminating NUL

_ingest_params_decoder = msgspec.json.Decoder(IngestParams)


class AlreadyRunning(Exception):
    def __init__(self, pid: int | None, socket_path: Path) -> None:
        super().__init__(f"agentd is already running (pid {pid or '?'}, socket {socket_path})")
        self.pid = pid


class StartupError(Exception):
    """The daemon cannot start (bad path, unwritable directory, ...); the message says why."""


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


class _Connection:
    def __init__(self, server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server = server
        self.reader = reader
        self.writer = writer
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT_LINES)
        self._tasks: set[asyncio.Task[None]] = set()
        self._write_lock = asyncio.Lock()
        self.read_task: asyncio.Task[None] | None = None

    async def serve(self) -> None:
        self.read_task = asyncio.create_task(self._read_loop())
        try:
            await self.read_task
        except asyncio.CancelledError:
            if not self.server.stopping:
                raise
        finally:
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=SHUTDOWN_TIMEOUT_S)
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()

    async def _read_loop(self) -> None:
        while True:
            try:
                line = await self.reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as e:
                if e.partial.strip():
                    log.warning(
                        "client closed mid-line; %d bytes without a newline dropped", len(e.partial)
                    )
                return
            except asyncio.LimitOverrunError:
                limit = self.server.config.max_line_bytes
                log.warning("line over %d bytes; answering an error and closing", limit)
                error = LineTooLong(f"Line too long: over {limit} bytes", data={"limit": limit})
                await self._send(encode_error(None, error))
                return
            except (ConnectionError, OSError):
                return
            if not line.strip():
                continue
            await self._slots.acquire()
            task = asyncio.create_task(self._handle_line(line))
            self._tasks.add(task)
            task.add_done_callback(self._line_done)

    def _line_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _handle_line(self, line: bytes) -> None:
        try:
            is_batch, messages = decode_line(line)
            answers = await asyncio.gather(*(self._answer(m) for m in messages))
        except Exception as e:  # a bug here must cost one answer, not the connection
            log.exception("failed to handle a line of %d bytes", len(line))
            await self._send(encode_error(None, InternalError(f"Internal error: {e}")))
            return
        replies = [a for a in answers if a is not None]
        if not replies:
            return  # only notifications
        await self._send(b"[" + b",".join(replies) + b"]" if is_batch else replies[0])

    async def _answer(self, message: Request | Invalid) -> bytes | None:
        if isinstance(message, Invalid):
            return encode_error(message.id, message.error)
        request_id = None if message.is_notification else message.id
        try:
            result = await dispatch(self.server, message.method, message.params)
        except AgentdError as e:
            error: AgentdError = e
        except Exception as e:  # a handler bug must not take the connection down
            log.exception("method %s failed", message.method)
            error = InternalError(f"Internal error: {type(e).__name__}: {e}")
        else:
            return None if message.is_notification else encode_response(request_id, result)
        return None if message.is_notification else encode_error(request_id, error)

    async def _send(self, data: bytes) -> None:
        async with self._write_lock:
            try:
                self.writer.write(data + b"\n")
                await self.writer.drain()
            except (ConnectionError, OSError):
                pass  # the client left; its events are committed all the same


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        redactor = Redactor(config.redaction_patterns) if config.redaction else None
        self.store = Store(
            config.db_path,
            output_limit_bytes=config.output_limit_bytes,
            privacy=Privacy(redactor, config.content_level),
        )
        self.stopping = False
        self.started_at = 0.0
        self.spool_events_drained = 0
        self.spool_lines_rejected = 0
        self._stop: asyncio.Event | None = None
        self._listener: asyncio.AbstractServer | None = None
        self._connections: set[_Connection] = set()
        self._spool_task: asyncio.Task[None] | None = None
        self._pid_fd: int | None = None
        self._spool_lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self) -> None:
        await self.startup()
        try:
            assert self._stop is not None
            await self._stop.wait()
        finally:
            await self.shutdown()

    async def startup(self) -> None:
        self._stop = asyncio.Event()
        config = self.config
        sock_path = config.socket_path
        if len(os.fsencode(sock_path)) > MAX_SOCKET_PATH:
            raise StartupError(
                f"socket path is {len(os.fsencode(sock_path))} bytes, over the {MAX_SOCKET_PATH}-byte"
                f" limit of Unix sockets: {sock_path} (set AGENTD_SOCKET to a shorter path)"
            )
        try:
            self._make_private_dir(config.state_dir)
            self._make_private_dir(sock_path.parent, chmod=self._owns_socket_dir())
            self._lock_pid_file()
        except OSError as e:
            raise StartupError(
                f"cannot prepare {e.filename or config.state_dir}: {e.strerror}"
            ) from e
        try:
            self._remove_stale_socket(sock_path)
            await self.store.open()
            old_umask = os.umask(
                0o177
            )  # the socket is born 0600: no window where others can connect
            try:
                self._listener = await asyncio.start_unix_server(
                    self._on_connect, path=str(sock_path), limit=config.max_line_bytes
                )
            finally:
                os.umask(old_umask)
            os.chmod(sock_path, 0o600)
        except BaseException:
            await self.store.close()
            self._release_pid_file()
            raise
        self.started_at = time.time()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        self._spool_task = asyncio.create_task(self._drain_spool_forever(), name="agentd-spool")
        log.info(
            "agentd %s listening on %s (pid %d, database %s)",
            __version__,
            sock_path,
            os.getpid(),
            config.db_path,
        )

    def request_stop(self) -> None:
        if self._stop is not None and not self._stop.is_set():
            log.info("stop requested")
            self._stop.set()

    async def shutdown(self) -> None:
        """Stop accepting, finish in-flight requests (bounded), commit, remove socket and pid file."""
        self.stopping = True
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        if self._listener is not None:
            self._listener.close()
        if self._spool_task is not None:
            self._spool_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._spool_task
        for connection in list(self._connections):
            if connection.read_task is not None:
                connection.read_task.cancel()
        if self._connections:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SHUTDOWN_TIMEOUT_S + 1):
                    while self._connections:
                        await asyncio.sleep(0.01)
        await self.store.close()
        with contextlib.suppress(FileNotFoundError):
            self.config.socket_path.unlink()
        self._release_pid_file()
        log.info("agentd stopped")

    # -- startup helpers -------------------------------------------------------------------------

    def _owns_socket_dir(self) -> bool:
        """True when the socket's directory is agentd's own (so making it 0700 is ours to do)."""
        parent = self.config.socket_path.parent
        return parent == self.config.state_dir or parent.name == "agentd"

    @staticmethod
    def _make_private_dir(path: Path, chmod: bool = True) -> None:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if chmod and (path.stat().st_mode & 0o777) != 0o700:
            os.chmod(path, 0o700)

    def _lock_pid_file(self) -> None:
        """Hold the pid-file lock for the daemon's life: one writer per state dir."""
        try:
            self._pid_fd = pidfile.acquire(self.config.pid_path)
        except pidfile.Locked as e:
            raise AlreadyRunning(e.pid, self.config.socket_path) from None

    def _release_pid_file(self) -> None:
        if self._pid_fd is not None:
            pidfile.release(self.config.pid_path, self._pid_fd)
            self._pid_fd = None

    def _remove_stale_socket(self, path: Path) -> None:
        if not os.path.lexists(path):
            return
        if not path.is_socket():
            raise StartupError(f"{path} exists and is not a socket; refusing to replace it")
        if _socket_is_live(path):
            raise AlreadyRunning(None, path)  # another daemon (another state dir) serves it
        log.info("removing stale socket %s left by a daemon that is gone", path)
        path.unlink()

    # -- connections -----------------------------------------------------------------------------

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None and _peer_uid(sock) != os.getuid():
            log.warning(
                "refused a peer with uid %d (only uid %d may connect)", _peer_uid(sock), os.getuid()
            )
            writer.close()
            return
        if self.stopping:
            writer.close()
            return
        connection = _Connection(self, reader, writer)
        self._connections.add(connection)
        try:
            await connection.serve()
        finally:
            self._connections.discard(connection)

    # -- spool -----------------------------------------------------------------------------------

    async def _drain_spool_forever(self) -> None:
        while True:
            try:
                await self.drain_spool()
            except Exception:
                log.exception("draining the spool failed; will retry")
            await asyncio.sleep(SPOOL_POLL_S)

    async def drain_spool(self) -> int:
        """Ingest every drainable spool file; delete each only after its events committed."""
        async with self._spool_lock:
            drained = 0
            files = await asyncio.to_thread(spool.ready_files, self.config.spool_dir)
            for path in files:
                drained += await self._drain_file(Path(path))
            if drained:
                log.info("drained %d events from %d spool files", drained, len(files))
            return drained

    async def _drain_file(self, path: Path) -> int:
        try:
            lines, torn = await asyncio.to_thread(spool.read_lines, path)
        except FileNotFoundError:
            return 0
        events, rejected = [], []
        for line in lines:
            try:
                params = decode_json(line, _ingest_params_decoder)
                events.append(
                    self.store.prepare(params.source, bytes(params.payload), params.received_at)
                )
            except ValueError:  # InvalidEvent, msgspec.DecodeError, UnicodeDecodeError
                salvaged = _salvage_spool_line(line)
                if salvaged is None:
                    rejected.append(line)
                else:
                    events.append(self.store.prepare(*salvaged))
        await asyncio.gather(*(self.store.submit(event) for event in events))
        if rejected or torn:
            self._keep_rejected(path, rejected, torn)
        path.unlink(missing_ok=True)
        self.spool_events_drained += len(events)
        return len(events)

    def _keep_rejected(self, path: Path, lines: list[bytes], torn: int) -> None:
        """Lines the daemon cannot read are kept for inspection, never silently deleted."""
        self.spool_lines_rejected += len(lines) + (1 if torn else 0)
        rejected_dir = self.config.spool_dir / "rejected"
        rejected_dir.mkdir(mode=0o700, exist_ok=True)
        data = b"".join(line + b"\n" for line in lines)
        if torn:
            data += path.read_bytes()[-torn:]
        (rejected_dir / path.name.removesuffix(".open")).write_bytes(data)
        log.warning(
            "spool file %s: %d unreadable lines%s kept in %s",
            path.name,
            len(lines),
            " and a torn last line" if torn else "",
            rejected_dir,
        )

    # -- status ----------------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        files, size = await asyncio.to_thread(spool.backlog, self.config.spool_dir)
        db = self.config.db_path
        db_bytes = self.store.database_bytes()
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started_at, 3),
            "socket": str(self.config.socket_path),
            "database": str(db),
            "database_bytes": db_bytes,
            "events_stored": self.store.events_stored,
            "events_total": await self.store.count_events(),
            "write_queue": self.store.backlog,
            "spool_files": files,
            "spool_bytes": size,
            "spool_events_drained": self.spool_events_drained,
            "spool_lines_rejected": self.spool_lines_rejected,
            "connections": len(self._connections),
        }


# The hook writes its spool lines as exactly this (hook.ingest_params), embedding stdin as it came.
_HOOK_SPOOL_LINE = re.compile(
    rb'^\{"source":"([A-Za-z0-9_]+)","received_at":(\d{1,15}),"payload":(.*)\}$', re.S
)


def _salvage_spool_line(line: bytes) -> tuple[str, bytes, int] | None:
    """A hook's spool line whose payload is not JSON (the hook does not check, to stay fast):
    (source, payload keeping the text as `agentd_unparsed_stdin`, received_at), or None."""
    match = _HOOK_SPOOL_LINE.match(line.strip())
    if match is None:
        return None
    text = match[3].decode("utf-8", "replace")
    payload = msgspec.json.encode({"agentd_unparsed_stdin": text})
    return match[1].decode(), payload, int(match[2])


def run(config: Config) -> None:
    """Run the daemon in this process until stopped (SIGTERM, SIGINT or the `shutdown` method)."""
    import uvloop

    os.umask(0o077)  # database, log, spool: readable by this user only
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(Server(config).run())
