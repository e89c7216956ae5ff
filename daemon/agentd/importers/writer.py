# Over 400 lines on purpose: both sinks and the Pipeline feeding them keep one batch/ack/order contract.
"""Where imported events go: a sink for the writer db/access.py gives, the daemon or a Store.

When the daemon answers `ping`, the importer is one more client (DaemonSink): it sends JSON-RPC
batches of `ingest` requests over one connection, a few lines in flight, and an event counts as
stored only once its ack came back. When no daemon runs, the importer holds the daemon's pid-file
lock (taken by db/access.py) and writes with a Store of its own (DirectSink).

Both sinks take batches and return a future per batch that resolves to the list of events the
writer refused (an error text each); a lost daemon raises SinkLost instead, and what was not yet
acknowledged is simply sent again by the next run (events are deduplicated by id).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentd import __version__
from agentd.client import NotRunning, RemoteError, call
from agentd.config import Config
from agentd.db import access
from agentd.errors import DaemonTooOld, DiskFull, SinkLost
from agentd.paths import ENVELOPE_BYTES

__all__ = [
    "Event",
    "Sink",
    "DaemonSink",
    "DirectSink",
    "SinkLost",
    "DaemonTooOld",
    "open_sink",
    "Pipeline",
]

BATCH_EVENTS = 200
BATCH_BYTES = 4 * 1024 * 1024
IN_FLIGHT = 4  # batches sent and not yet acknowledged
SHUTTING_DOWN = -32002
DISK_FULL = DiskFull.CODE  # retryable: the offsets must not pass events the daemon did not store


@dataclass(slots=True)
class Event:
    source: str
    payload: bytes  # one JSON object
    received_at: int


class Sink:
    mode = "?"
    batch_events = BATCH_EVENTS  # events per batch
    max_event_bytes: int | None = None  # an event bigger than this cannot be sent
    max_batch_bytes = BATCH_BYTES  # payload bytes per batch (a bigger event goes alone)

    async def open(self) -> None:
        raise NotImplementedError

    async def submit(self, events: list[Event]) -> asyncio.Future[list[str]]:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def new_events(self) -> int | None:
        """Events stored for the first time (None: the sink cannot tell)."""
        return None


class DaemonSink(Sink):
    mode = "daemon"

    def __init__(self, config: Config) -> None:
        self.config = config
        # A batch is one line: it must stay within the daemon's line limit.
        self.max_event_bytes = config.max_line_bytes - ENVELOPE_BYTES - 2
        self.max_batch_bytes = min(
            BATCH_BYTES, config.max_line_bytes - BATCH_EVENTS * ENVELOPE_BYTES
        )
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._slots = asyncio.Semaphore(IN_FLIGHT)
        self._next_id = 0
        self._pending: dict[int, tuple[asyncio.Future[list[str]], list[str], set[int]]] = {}
        self._read_task: asyncio.Task[None] | None = None
        self._lost: str | None = None

    async def open(self) -> None:
        try:
            self._reader, self._writer = await asyncio.open_unix_connection(
                str(self.config.socket_path), limit=self.config.max_line_bytes
            )
        except OSError as e:
            raise SinkLost(f"cannot connect to the daemon: {e}") from None
        self._read_task = asyncio.create_task(self._read_replies())

    async def submit(self, events: list[Event]) -> asyncio.Future[list[str]]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[str]] = loop.create_future()
        if not events:
            future.set_result([])
            return future
        if self._lost:
            raise SinkLost(self._lost)
        await self._slots.acquire()
        if self._lost:
            self._slots.release()
            raise SinkLost(self._lost)
        first = self._next_id + 1
        parts = []
        for event in events:
            self._next_id += 1
            parts.append(
                b'{"jsonrpc":"2.0","id":%d,"method":"ingest","params":{"source":%s,'
                b'"received_at":%d,"payload":%s}}'
                % (
                    self._next_id,
                    json.dumps(event.source).encode(),
                    event.received_at,
                    event.payload,
                )
            )
        ids = set(range(first, self._next_id + 1))
        errors: list[str] = []
        entry = (future, errors, ids)
        for request_id in ids:
            self._pending[request_id] = entry
        future.add_done_callback(lambda _: self._slots.release())
        assert self._writer is not None
        try:
            self._writer.write(b"[" + b",".join(parts) + b"]\n")
            await self._writer.drain()
        except (ConnectionError, OSError) as e:
            self._fail(f"the daemon closed the connection: {e}")
        return future

    async def _read_replies(self) -> None:
        assert self._reader is not None
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    self._fail("the daemon closed the connection")
                    return
                replies = json.loads(line)
                for reply in replies if isinstance(replies, list) else [replies]:
                    self._answer(reply)
        except (ConnectionError, OSError, ValueError) as e:
            self._fail(f"lost the daemon: {e}")

    def _answer(self, reply: dict[str, Any]) -> None:
        error = reply.get("error")
        entry = self._pending.pop(reply.get("id"), None) if reply.get("id") is not None else None
        if entry is None:
            if error:  # an error about a whole line: not expected for lines built here
                self._fail(f"the daemon refused a batch: {error.get('message')}")
            return
        future, errors, ids = entry
        if error:
            if error.get("code") == SHUTTING_DOWN:
                self._fail("the daemon is shutting down")
                return
            if error.get("code") == DISK_FULL:
                self._fail(str(error.get("message")))
                return
            errors.append(str(error.get("message")))
        ids.discard(reply["id"])
        if not ids and not future.done():
            future.set_result(errors)

    def _fail(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
        for future, _, _ in list(self._pending.values()):
            if not future.done():
                future.set_exception(SinkLost(self._lost))
        self._pending.clear()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._read_task is not None:
            self._read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._read_task


class DirectSink(Sink):
    """Writes with a Store of its own, holding the pid-file lock (a direct access.Writer).

    Preparing an event (decode, hash, redact, normalize) costs about as much as writing it, so
    batches are prepared in worker processes (pure work: no database) while this process reads
    and writes; they reach the store in the order they were submitted, which the merge rules
    ("newest non-null wins") depend on. Nothing is started before there is something to write:
    a run over unchanged data opens neither the database nor a worker.
    """

    mode = "direct"
    batch_events = 500  # fewer, larger hand-overs to the workers

    def __init__(self, config: Config, writer: access.Writer, workers: int | None = None) -> None:
        from agentd.db.store import Store

        self.config = config
        self._access = writer
        self.store = Store(
            config.db_path,
            output_limit_bytes=config.output_limit_bytes,
            privacy=_privacy(_privacy_args(config)),
        )
        self._workers = workers if workers is not None else _default_workers()
        self._pool: Any = None
        self._slots = asyncio.Semaphore(IN_FLIGHT * 2)
        self._previous: asyncio.Event | None = None
        self._opened = False

    async def open(self) -> None:
        """Nothing yet: see _start()."""

    async def _start(self) -> None:
        if self._workers > 0:
            self._pool = _start_pool(self._workers, self.config)
        await self.store.open()
        self._opened = True

    async def submit(self, events: list[Event]) -> asyncio.Future[list[str]]:
        await self._slots.acquire()
        if not self._opened and events:
            try:
                await self._start()
            except BaseException:
                self._slots.release()
                raise
        items = [(e.source, e.payload, e.received_at) for e in events]
        loop = asyncio.get_running_loop()
        if self._pool is not None and len(items) > 1:
            prepared = loop.run_in_executor(self._pool, _prepare_batch, items)
        else:
            prepared = loop.create_future()
            prepared.set_result(_prepare_with(self.store.prepare, items))
        previous, ready = self._previous, asyncio.Event()
        self._previous = ready

        async def commit() -> list[str]:
            try:
                try:
                    outcome: Any = await prepared
                except Exception as e:  # a worker died, say: raised below, in order
                    outcome = e
                if previous is not None:
                    await previous.wait()
                try:
                    if isinstance(outcome, Exception):
                        raise outcome
                    batch, errors = outcome
                    # Tasks start in creation order: this batch enters the store's queue whole
                    # (one group: one future, one commit), before the next batch's.
                    stored = asyncio.ensure_future(self.store.submit_many(batch))
                finally:
                    ready.set()
                for outcome in await stored:
                    if isinstance(outcome, DiskFull):  # not stored: a loss to retry, not a refusal
                        raise SinkLost(outcome.message)
                    if isinstance(outcome, BaseException):
                        raise outcome
                return list(errors)
            finally:
                self._slots.release()

        return asyncio.ensure_future(commit())

    def new_events(self) -> int | None:
        return self.store.events_stored if self._opened else 0

    async def close(self) -> None:
        try:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
            if self._opened:
                await self.store.close()
        finally:
            self._access.release()


def _default_workers() -> int:
    """One worker per CPU beyond the one this process uses, at most 3; none on a single CPU.
    AGENTD_IMPORT_WORKERS overrides (0: prepare in this process)."""
    value = os.environ.get("AGENTD_IMPORT_WORKERS", "")
    if value.isdigit():
        return min(int(value), 16)
    return max(0, min(3, (os.cpu_count() or 1) - 1))


def _start_pool(workers: int, config: Config) -> Any:
    """Worker processes, all forked now, while this process has no thread but its own: the store
    (and its threads) opens after. Fork, not spawn: spawn re-runs the parent's __main__ in each
    worker, and `python -m agentd` would run the command again there."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_init_worker,
        initargs=(config.output_limit_bytes, _privacy_args(config)),
    )
    pool.submit(int).result()  # starts every worker (fork context: all at once)
    return pool


def _privacy_args(config: Config) -> tuple[bool, dict[str, str], str]:
    return (config.redaction, dict(config.redaction_patterns), config.content_level)


def _privacy(args: tuple[bool, dict[str, str], str]) -> Any:
    from agentd.ingest import Privacy
    from agentd.redact import Redactor

    redaction, patterns, level = args
    return Privacy(Redactor(patterns) if redaction else None, level)


_worker: dict[str, Any] = {}


def _init_worker(output_limit: int, privacy_args: tuple[bool, dict[str, str], str]) -> None:
    import gc

    from agentd.ingest import prepare_event

    gc.set_threshold(50_000, 20, 20)  # short-lived objects, few cycles (as in the importer)

    privacy = _privacy(privacy_args)

    def prepare(source: str, payload: bytes, received_at: int | None) -> Any:
        return prepare_event(source, payload, received_at, output_limit, privacy)

    _worker["prepare"] = prepare


def _prepare_batch(items: list[tuple[str, bytes, int]]) -> tuple[list[Any], list[str]]:
    return _prepare_with(_worker["prepare"], items)


def _prepare_with(prepare: Any, items: list[tuple[str, bytes, int]]) -> tuple[list[Any], list[str]]:
    prepared, errors = [], []
    for source, payload, received_at in items:
        try:
            prepared.append(prepare(source, payload, received_at))
        except ValueError as e:  # msgspec.DecodeError, UnicodeDecodeError
            errors.append(f"unreadable payload: {e}")
    return prepared, errors


def _newest_code_mtime() -> float:
    """When the code that turns events into rows last changed (normalizers, ingest, rows, store)."""
    import agentd.normalizers as sources

    root = Path(sources.__file__).parent
    package = root.parent
    files = [
        *root.glob("*.py"),
        package / "ingest.py",
        package / "rows.py",
        package / "db" / "store.py",
    ]
    return max((f.stat().st_mtime for f in files if f.exists()), default=0.0)


def _check_daemon(config: Config, ping: dict[str, Any]) -> None:
    """Refuse a daemon that would store our events raw only: once stored, an event is never
    normalized again (it is deduplicated), so an import through an outdated daemon would stick."""
    if ping.get("version") != __version__:
        raise DaemonTooOld(
            f"the running daemon is agentd {ping.get('version')}, this is {__version__}: "
            "restart it (agentd stop && agentd start), then import"
        )
    try:
        status = call(config.socket_path, "status", timeout=5.0)
    except (NotRunning, RemoteError, OSError, TimeoutError):
        return
    started = time.time() - float(status.get("uptime_s") or 0)
    if started + 1 < _newest_code_mtime():
        raise DaemonTooOld(
            f"the running daemon (pid {ping.get('pid')}) started before agentd's code was last "
            "changed: restart it (agentd stop && agentd start), then import"
        )


def open_sink(config: Config, wait_s: float = 30.0) -> Sink:
    """The daemon if it answers, else a direct writer holding the pid-file lock; waits up to
    `wait_s` for a daemon that is starting, or for another direct writer to finish (then raises
    access.WriterBusy)."""
    writer = access.acquire(config, wait_s=wait_s)
    if writer.mode == "daemon":
        assert writer.ping is not None
        _check_daemon(config, writer.ping)
        return DaemonSink(config)
    return DirectSink(config, writer)


class Pipeline:
    """Feeds a sink in batches and applies progress marks in order.

    `mark(fn)` registers a callback (saving a file's offset, say) that runs once every event added
    before it has been acknowledged; batches may be acknowledged out of order, marks never run
    out of order. A refused event is counted, not retried: it would be refused again.
    """

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.sent = 0
        self.stored = 0
        self.rejected = 0
        self.too_large = 0
        self.reasons: dict[str, int] = {}
        self._events: list[Event] = []
        self._bytes = 0
        self._marks: list[Any] = []
        self._inflight: deque[tuple[asyncio.Future[list[str]], list[Any], int]] = deque()

    async def add(self, event: Event) -> None:
        limit = self.sink.max_event_bytes
        if limit is not None and len(event.payload) > limit:
            self.too_large += 1
            return
        cap = self.sink.max_batch_bytes
        if self._events and self._bytes + len(event.payload) > cap:
            await self.flush()  # a batch stays one line the daemon accepts
        self._events.append(event)
        self._bytes += len(event.payload)
        if len(self._events) >= self.sink.batch_events or self._bytes >= cap:
            await self.flush()

    def mark(self, fn: Any) -> None:
        self._marks.append(fn)

    async def flush(self) -> None:
        if not self._events and not self._marks:
            return
        events, marks = self._events, self._marks
        self._events, self._bytes, self._marks = [], 0, []
        future = await self.sink.submit(events)
        self.sent += len(events)
        self._inflight.append((future, marks, len(events)))
        self._settle()

    def _settle(self) -> None:
        while self._inflight and self._inflight[0][0].done():
            future, marks, count = self._inflight.popleft()
            errors = future.result()  # SinkLost propagates: the marks after it never run
            self.stored += count - len(errors)
            self.rejected += len(errors)
            for reason in errors:
                self.reasons[reason] = self.reasons.get(reason, 0) + 1
            for fn in marks:
                fn()

    async def finish(self) -> None:
        await self.flush()
        while self._inflight:
            await asyncio.wait([self._inflight[0][0]])
            self._settle()

    def abandon(self) -> None:
        """Forget what is in flight (after SinkLost): its marks never run."""
        for future, _, _ in self._inflight:
            if future.done():
                future.exception()  # retrieved: no "never retrieved" warning
            else:
                future.cancel()
        self._inflight.clear()
        self._events, self._bytes, self._marks = [], 0, []
