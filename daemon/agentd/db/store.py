# Over 400 lines on purpose: the writer and the SQL it runs (upserts, totals, prune) change together.
"""The store, the one writer: one SQLite connection (WAL) on its own thread, group commit, merging
upserts.

`ingest()` prepares an event on the event loop (agentd.ingest: decode, id, redact, normalize),
queues it, and returns only after the transaction holding it has committed. One writer task takes
everything queued (up to MAX_BATCH events) into a single transaction, so concurrent clients share
commits. A whole transaction (BEGIN, rows, COMMIT) is one call into the writer thread: the event
loop is woken once per batch, not once per statement, and runs on while SQLite works. The SQL is generated here from the row contract (agentd.rows: TYPED_TABLES, MERGE_POLICY);
prune(), vacuum() and reprice() return the results their RPC methods send back.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from agentd.db import preflight, session_totals
from agentd.db.merge import fold_rows, merge_assignments
from agentd.db.migrations import MIGRATIONS, migrate
from agentd.db.reprice import (
    BATCH,
    SPAN,
    RepriceBusy,
    RepriceStopped,
    Selection,
    Tally,
    reprice_batch,
)
from agentd.db.wal import JOURNAL_SIZE_LIMIT, Checkpointer, wal_path
from agentd.errors import DiskFull, StartupError
from agentd.ingest import PreparedEvent, Privacy, prepare_event
from agentd.redact import RULESET_VERSION
from agentd.rows import TYPED_TABLES, Row

__all__ = ["Store", "connect_sync", "is_disk_full", "Binder", "table_columns", "upsert_sql"]

log = logging.getLogger(__name__)

MAX_BATCH = 1000
# A batch this small is committed on the event loop's own thread: a hop to the writer thread and
# back (two wake-ups, the GIL handed over twice) costs more than such a commit. The loop stalls
# for the commit (well under a millisecond); bigger batches go to the writer thread, so the loop
# prepares the next events while SQLite works.
INLINE_MAX = 16
# Rounds of the event loop the writer lets run before it takes a batch: a request whose bytes came
# in the same poll as the first one's reaches the queue three steps later (the read's wake-up,
# the line's task, its prepare), and joins the same commit then. A commit of a few events writes
# a page of every table and index it touches, so fewer, fuller commits cost less per event:
# bench/ingest's closed loop, 8 clients, took ~15% less daemon CPU per event. Microseconds each.
GATHER_ROUNDS = 3
BUSY_TIMEOUT_MS = 5000  # how long the writer waits for another connection's write lock
T = TypeVar("T")


def table_columns(conn: sqlite3.Connection) -> dict[str, list[str]]:
    return {
        table: [r[1] for r in conn.execute(f"PRAGMA table_info({table})")] for table in TYPED_TABLES
    }


class Binder:
    """Turns a Row's values into the parameters of its table's upsert (one per column, None for
    what the row does not know). Only the columns a row has are visited: rows are sparse."""

    def __init__(self, columns: dict[str, list[str]]) -> None:
        self._index = {t: {c: i for i, c in enumerate(cols)} for t, cols in columns.items()}
        self._width = {t: len(cols) for t, cols in columns.items()}

    def __call__(self, row: Row) -> tuple[Any, ...]:
        params: list[Any] = [None] * self._width[row.table]
        index = self._index[row.table]
        for column, value in row.values.items():
            position = index.get(column)
            if position is not None:
                params[position] = _sql_value(value)
        return tuple(params)


def upsert_sql(table: str, columns: list[str]) -> str:
    """One statement per table, every column bound (None = not known), merging per MERGE_POLICY.

    A uniform statement lets a whole batch go through one executemany per table while keeping
    the events' order, which "newest non-null wins" depends on.
    """
    updates = merge_assignments(columns)
    placeholders = ", ".join("?" for _ in columns)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders}) "
        f"ON CONFLICT(id) DO UPDATE SET {', '.join(updates)}"
    )


# Session totals are derived, never accumulated, so replays cannot double-count: from the
# per-session sums the triggers of db/session_totals.py keep (one row read), or, for a session
# those sums cannot stand for exactly, from its messages. Each statement skips the other's sessions.
_REFRESH_SESSIONS = (session_totals.REFRESH_FAST, session_totals.REFRESH_SCAN)

# The NOT NULL columns of `sessions` besides its id (tests/test_session_totals.py checks).
SESSIONS_NOT_NULL = ("source",)

# A commit of a few events spilled its statement journal (an upsert whose triggers touch pages
# the transaction already changed) to a temp file: one file created and unlinked per commit. In
# memory it is a few pages. prune() and vacuum() put temp storage back on disk while they run:
# VACUUM builds its copy of the whole database there, a big prune's journals can be as large.
_TEMP_IN_MEMORY = "PRAGMA temp_store=MEMORY"
_TEMP_ON_DISK = "PRAGMA temp_store=DEFAULT"

_INSERT_EVENT = (
    "INSERT OR IGNORE INTO events (id, source, kind, session_id, received_at, payload,"
    " redactions, redaction_version, content_level) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def connect_sync(db_path: Path) -> sqlite3.Connection:
    """Open (creating if needed) and migrate the database; WAL mode. Used before the writer starts.

    DatabaseUnusable (one line: the file, the reason, what to do) for a file that is damaged,
    truncated, not agentd's, or of a newer schema; such a file is not changed.
    """
    db_path.parent.mkdir(parents=True, exist_ok=True)
    preflight.check_file(db_path)
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        # Checked first: a database refused must be left exactly as it was (not even made WAL).
        preflight.check_schema(conn, db_path, {m.version for m in MIGRATIONS})
        _wal_mode(conn)
        migrate(conn)
    except sqlite3.DatabaseError as e:
        conn.close()
        if is_disk_full(e):
            raise StartupError(f"cannot open {db_path}: the disk is full; free space first") from e
        if getattr(e, "sqlite_errorcode", 0) & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            # A healthy file another process is writing (upgrading it, a long vacuum): not one
            # to move away.
            raise StartupError(
                f"cannot open {db_path}: another process held its write lock too long ({e}); "
                "try again when it is done"
            ) from None
        raise preflight.unusable(db_path, f"cannot be used ({e})") from None
    except BaseException:
        conn.close()
        raise
    return conn


def _wal_mode(conn: sqlite3.Connection, wait_s: float = 5.0) -> None:
    """PRAGMA journal_mode=WAL, waiting as long as a busy timeout would: while another process
    turns a new file to WAL, SQLite answers SQLITE_BUSY at once, without its busy handler."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            busy = getattr(e, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() >= deadline:
                raise
        time.sleep(0.01)


def is_disk_full(error: BaseException) -> bool:
    """SQLITE_FULL, or ENOSPC / EDQUOT from the file system: out of space, not a bad event."""
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)
        return (code is not None and code & 0xFF == sqlite3.SQLITE_FULL) or (
            "database or disk is full" in str(error)
        )
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


# Errors that say the database cannot be written now, not that the event is bad: the lock held
# by another connection past the busy timeout, an I/O error, a read-only file.
_TRANSIENT = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR,
              sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN}  # fmt: skip


def is_transient(error: BaseException) -> bool:
    """A write that failed for the database's sake: nothing is stored and the event is answered
    with the error, to be retried (the hook spools it, the drain keeps its file). Never raw-only:
    that is for events whose own rows fail."""
    if isinstance(error, sqlite3.OperationalError):
        code = getattr(error, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _TRANSIENT
    return isinstance(error, OSError)


class _Busy(Exception):
    """Another connection holds the write lock (and the writer was told not to wait)."""


@dataclass(slots=True)
class _Group:
    """Events submitted together, with the one future that gets their outcomes."""

    events: list[PreparedEvent]
    future: asyncio.Future[list[Exception | None]]

    def resolve(self, outcomes: list[Exception | None]) -> None:
        if not self.future.done():  # its submitter may have been cancelled
            self.future.set_result(outcomes)


class Store:
    def __init__(
        self,
        db_path: Path,
        *,
        output_limit_bytes: int = 10 * 1024,
        privacy: Privacy | None = None,
        checkpoint_interval_s: float | None = None,
        wal_limit_bytes: int | None = None,
    ) -> None:
        """`checkpoint_interval_s` and `wal_limit_bytes` tune the WAL's bounds (db/wal.py)."""
        self.db_path = db_path
        self.output_limit_bytes = output_limit_bytes
        self.privacy = privacy if privacy is not None else Privacy()
        self.events_stored = 0  # new events committed since this Store opened
        self.batches = 0
        self._repricing = False  # one reprice at a time (reprice())
        # The writer connection, used only on the writer thread (one worker: statements of
        # different calls never interleave, and SQLite sees one thread).
        self._db: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._busy_timeout_ms = BUSY_TIMEOUT_MS  # the writer connection's, as last set
        self._queue: asyncio.Queue[_Group] = asyncio.Queue()
        self._queued = 0  # events in the queue's groups
        self._writer: asyncio.Task[None] | None = None
        # Held for every transaction on the writer connection: a batch, a prune, a vacuum. They
        # share one connection, and a statement of one must never land inside another's BEGIN.
        # The checkpointer takes it too, to cut the WAL between commits.
        self._write_lock = asyncio.Lock()
        tuning = {"interval_s": checkpoint_interval_s, "limit_bytes": wal_limit_bytes}
        self.checkpointer = Checkpointer(
            db_path, self._write_lock, **{k: v for k, v in tuning.items() if v is not None}
        )
        self._upserts: dict[str, str] = {}
        self._columns: dict[str, list[str]] = {}
        self._bind = Binder({})

    async def open(self) -> None:
        def migrate_and_read_columns() -> dict[str, list[str]]:
            conn = connect_sync(self.db_path)
            try:
                return table_columns(conn)
            finally:
                conn.close()

        self._columns = await asyncio.to_thread(migrate_and_read_columns)
        self._upserts = {t: upsert_sql(t, cols) for t, cols in self._columns.items()}
        self._bind = Binder(self._columns)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentd-writer")
        self._db = await self._call(self._connect)
        self._writer = asyncio.create_task(self._write_loop(), name="agentd-writer")
        self.checkpointer.start()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
        # WAL + NORMAL: a commit is durable against a process crash (kill -9) without an fsync
        # per transaction; only an OS crash or power loss can take the last commits.
        # Checkpoints run in the background, not inside a commit (db/wal.py).
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",
            f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
            "PRAGMA wal_autocheckpoint=0",
            f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}",
            _TEMP_IN_MEMORY,
        ):
            # Closed at once: an open statement would make a later VACUUM fail.
            conn.execute(pragma).close()
        return conn

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) on the writer thread."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def close(self) -> None:
        """Commit everything already queued, checkpoint, then close the connections."""
        await self.checkpointer.close()  # stops its task; it cuts the WAL again below
        if self._writer is not None:
            await self._queue.join()
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        if self._db is not None:
            self._set_busy_timeout(self._db, BUSY_TIMEOUT_MS)
            await self._call(_close_after_checkpoint, self._db)
            self._db = None
        if self._thread is not None:
            self._thread.shutdown()
            self._thread = None

    async def ingest(self, source: str, payload_json: bytes, received_at: int | None) -> None:
        """Store one event; returns once it is committed. Raises InvalidEvent on a bad payload."""
        await self.submit(self.prepare(source, payload_json, received_at))

    def prepare(self, source: str, payload_json: bytes, received_at: int | None) -> PreparedEvent:
        """prepare_event() with this store's limits and privacy settings."""
        return prepare_event(
            source, payload_json, received_at, self.output_limit_bytes, self.privacy
        )

    async def submit(self, event: PreparedEvent) -> None:
        """Queue one event; return once it is committed (or raise what kept it out)."""
        (outcome,) = await self.submit_many([event])
        if outcome is not None:
            raise outcome

    async def submit_many(self, events: list[PreparedEvent]) -> list[Exception | None]:
        """Queue events as one group (one future, however many): once each is committed or has
        failed, its outcome, in order: None when committed, else the error that kept it out
        (DiskFull, ...). One event's failure is its own; the others are committed all the same."""
        if not events:
            return []
        future: asyncio.Future[list[Exception | None]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Group(events, future))
        self._queued += len(events)
        return await future

    @property
    def backlog(self) -> int:
        """Events waiting for a transaction."""
        return self._queued

    async def count_events(self) -> int:
        """Committed events. Under the write lock: a small batch commits on the loop's thread
        over the same connection, and a count inside its transaction would see its rows."""
        db = self._db
        assert db is not None
        async with self._write_lock:
            return int(
                await self._call(lambda: db.execute("SELECT count(*) FROM events").fetchone()[0])
            )

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            size = len(batch[0].events)
            for _ in range(GATHER_ROUNDS):
                await asyncio.sleep(0)
            while size < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
                size += len(batch[-1].events)
            self._queued -= size
            try:
                await self._commit_batch(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit_batch(self, batch: list[_Group]) -> None:
        """Commit a batch; resolve each group's future only once all of it is stored.

        A full disk fails every event of the batch (DiskFull: retry later), nothing is acked;
        so does a database that cannot be written now (is_transient: its error). Any other failure is retried event by event, so one bad event costs no other; an event
        whose typed rows still fail (a normalizer's bug, a value SQLite refuses) is stored raw
        only and acked: the raw payload keeps everything, a fixed normalizer can re-derive its
        rows (docs/protocol.md, "What an ack means").
        """
        try:
            await self._write([event for group in batch for event in group.events])
        except Exception as e:
            size = sum(len(g.events) for g in batch)
            error: Exception | None = None
            if is_disk_full(e):
                error = self._disk_full(size, e)
            elif is_transient(e):
                log.error("the database cannot be written now: %d events not stored (%s)", size, e)
                error = e
            if error is not None:
                for group in batch:
                    group.resolve([error] * len(group.events))
                return
            log.exception("batch of %d failed; retrying its events one by one", size)
            for group in batch:
                group.resolve([await self._commit_alone(event) for event in group.events])
            return
        for group in batch:
            group.resolve([None] * len(group.events))

    async def _commit_alone(self, event: PreparedEvent) -> Exception | None:
        try:
            await self._write([event])
        except Exception as e:
            if is_disk_full(e):
                return self._disk_full(1, e)
            if is_transient(e):
                return e
            log.exception("event %s: typed rows failed; storing it raw only", event.id)
            try:
                event.rows = []
                await self._write([event])
            except Exception as raw_error:
                return self._disk_full(1, raw_error) if is_disk_full(raw_error) else raw_error
        return None

    def _disk_full(self, events: int, e: Exception) -> DiskFull:
        log.error("disk full: %d events not stored (%s)", events, e)
        return DiskFull(
            f"Disk full: the database's disk is full ({self.db_path}); "
            "the event was not stored: keep it and retry once space is freed"
        )

    async def _write(self, events: list[PreparedEvent]) -> None:
        async with self._write_lock:
            fresh = self._write_inline(events) if len(events) <= INLINE_MAX else None
            if fresh is None:
                fresh = await self._call(self._write_sync, events)
        self.events_stored += fresh
        self.batches += 1
        self.checkpointer.poke()

    def _write_inline(self, events: list[PreparedEvent]) -> int | None:
        """_write_sync() on the calling thread (the event loop's), never waiting for another
        connection: None when another one (the push, say) holds the write lock, and nothing was
        written; the writer thread, which may wait, takes the batch then."""
        try:
            return self._write_sync(events, busy_timeout_ms=0)
        except _Busy:
            return None

    def _set_busy_timeout(self, db: sqlite3.Connection, ms: int) -> None:
        if self._busy_timeout_ms != ms:
            db.execute(f"PRAGMA busy_timeout={ms}").close()
            self._busy_timeout_ms = ms

    def _write_sync(self, events: list[PreparedEvent], busy_timeout_ms: int | None = None) -> int:
        """One transaction with every new event of `events` and its rows (on the writer thread,
        or inline); how many were new. _Busy if the write lock was taken and `busy_timeout_ms`
        is 0."""
        db = self._db
        assert db is not None
        ids = list({e.id: None for e in events})
        self._set_busy_timeout(db, BUSY_TIMEOUT_MS if busy_timeout_ms is None else busy_timeout_ms)
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            if busy_timeout_ms == 0 and (e.sqlite_errorcode & 0xFF) == sqlite3.SQLITE_BUSY:
                raise _Busy() from e
            raise
        try:
            known = self._existing_event_ids(db, ids)
            fresh: list[PreparedEvent] = []
            for event in events:
                if event.id not in known:
                    known.add(event.id)
                    fresh.append(event)
            if fresh:
                version = RULESET_VERSION if self.privacy.redactor else None
                level = self.privacy.content_level
                db.executemany(
                    _INSERT_EVENT,
                    [
                        (
                            e.id,
                            e.source,
                            e.kind,
                            e.session_id,
                            e.received_at,
                            e.payload,
                            e.redactions,
                            version,
                            level,
                        )
                        for e in fresh
                    ],
                )
                self._upsert_rows(db, fresh)
            db.execute("COMMIT")
        except BaseException:
            # SQLite rolls back by itself on some errors (a full disk): then there is none to
            # roll back, and a ROLLBACK's error must not hide the real one.
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise
        return len(fresh)

    async def prune(self, cutoff_ms: int) -> dict[str, Any]:
        """Delete what was last seen before `cutoff_ms`: `{"deleted": {table: rows deleted}}`."""
        async with self._write_lock:
            return {"deleted": await self._call(self._temp_on_disk, self._prune_sync, cutoff_ms)}

    def _temp_on_disk(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) with temp storage on disk, as SQLite has it by default (_TEMP_IN_MEMORY)."""
        db = self._db
        assert db is not None
        db.execute(_TEMP_ON_DISK).close()
        try:
            return fn(*args)
        finally:
            db.execute(_TEMP_IN_MEMORY).close()

    def _prune_sync(self, cutoff_ms: int) -> dict[str, int]:
        db = self._db
        assert db is not None
        self._set_busy_timeout(db, BUSY_TIMEOUT_MS)
        deleted: dict[str, int] = {}
        db.execute("BEGIN IMMEDIATE")
        try:
            for table, sql in _PRUNE_SQL:
                cursor = db.execute(sql, {"cutoff": cutoff_ms})
                if table != "sessions_to_prune":
                    deleted[table] = cursor.rowcount
            db.execute("DROP TABLE prune_sessions")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            db.execute("DROP TABLE IF EXISTS temp.prune_sessions")
            raise
        return deleted

    async def reprice(
        self,
        selection: Selection,
        progress: Callable[[Tally, float], None] | None = None,
        *,
        batch: int = BATCH,
        span: int = SPAN,
        stop: Callable[[], bool] | None = None,
    ) -> dict[str, Any]:
        """Price the selected stored messages again (db/reprice.py), one short transaction per
        batch, so ingests are written between them: the Tally's result(). PriceTableError, before
        any row is read, when the price table cannot be loaded (every cost would be unknown).
        `progress(tally, fraction of the table's rowids done)` after each batch. RepriceBusy if
        another reprice runs on this store; RepriceStopped once `stop()` is true between batches."""
        from agentd.pricing.table import loaded_table

        if self._repricing:
            raise RepriceBusy("a reprice is already running")
        self._repricing = True
        try:
            prices = await asyncio.to_thread(loaded_table)  # importing genai-prices takes a while
            db = self._db
            assert db is not None
            async with self._write_lock:
                (top,) = await self._call(
                    lambda: db.execute("SELECT max(rowid) FROM messages").fetchall()
                )
            tally, after = Tally(), 0
            while True:
                async with self._write_lock:
                    after, done = await self._call(
                        self._reprice_sync, after, selection, tally, batch, span
                    )
                self.checkpointer.poke()
                if progress is not None and top[0]:
                    progress(tally, 1.0 if done else min(after / top[0], 1.0))
                if done:
                    return {"price_table": f"genai-prices {prices.version}", **tally.result()}
                if stop is not None and stop():
                    raise RepriceStopped(tally)
        finally:
            self._repricing = False

    def _reprice_sync(
        self, after: int, selection: Selection, tally: Tally, batch: int, span: int
    ) -> tuple[int, bool]:
        db = self._db
        assert db is not None
        self._set_busy_timeout(db, BUSY_TIMEOUT_MS)
        return reprice_batch(db, after, selection, tally, batch, span)

    async def vacuum(self) -> dict[str, int]:
        """Rewrite the file without its free pages, then empty the WAL:
        `{"bytes_before": ..., "bytes_after": ...}` (database_bytes() around it)."""
        db = self._db
        assert db is not None

        def run() -> None:
            self._set_busy_timeout(db, BUSY_TIMEOUT_MS)
            # Each statement closed at once: the checkpoint returns a row, and a statement left
            # open on this connection makes the next VACUUM fail ("SQL statements in progress").
            db.execute("VACUUM").close()
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").close()

        async with self._write_lock:
            before = self.database_bytes()
            await self._call(self._temp_on_disk, run)
            return {"bytes_before": before, "bytes_after": self.database_bytes()}

    def database_bytes(self) -> int:
        """The database file plus its WAL."""
        return sum(p.stat().st_size for p in (self.db_path, wal_path(self.db_path)) if p.exists())

    @staticmethod
    def _existing_event_ids(db: sqlite3.Connection, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), 500):  # stay under SQLite's bound-variable limit
            chunk = ids[start : start + 500]
            sql = f"SELECT id FROM events WHERE id IN ({', '.join('?' for _ in chunk)})"
            found.update(row[0] for row in db.execute(sql, chunk))
        return found

    def _upsert_rows(self, db: sqlite3.Connection, events: list[PreparedEvent]) -> None:
        by_table: dict[str, list[tuple[Any, ...]]] = {}
        sessions: dict[str, None] = {}
        bind = self._bind
        for event in events:
            for row in event.rows:
                by_table.setdefault(row.table, []).append(bind(row))
                session = (
                    row.values["id"] if row.table == "sessions" else row.values.get("session_id")
                )
                if session:
                    sessions[session] = None
        if "sessions" in by_table:
            # Each event of a group upserts its session's row (ingest.py's, the normalizer's):
            # one upsert per id where that gives the same row.
            by_table["sessions"] = fold_rows(
                self._columns["sessions"], by_table["sessions"], SESSIONS_NOT_NULL
            )
        # sessions first: the refresh below and readers expect the parent row to exist.
        for table in sorted(by_table, key=lambda t: t != "sessions"):
            db.executemany(self._upserts[table], by_table[table])
        if sessions:
            for refresh in _REFRESH_SESSIONS:
                db.executemany(refresh, [(s,) for s in sessions])


def _close_after_checkpoint(db: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
    db.close()


_INT64 = range(-(2**63), 2**63)


# prune(): sessions last seen before the cutoff go with all their rows; rows of no (known) session
# and raw events go by their own time.
_PRUNE_SQL = (
    (
        "sessions_to_prune",
        "CREATE TEMP TABLE prune_sessions AS SELECT id FROM sessions"
        " WHERE coalesce(updated_at, created_at, 0) < :cutoff",
    ),
    *(
        (
            table,
            f"DELETE FROM {table} WHERE session_id IN (SELECT id FROM prune_sessions)"
            f" OR (session_id IS NULL AND coalesce(created_at, 0) < :cutoff)",
        )
        for table in ("tools", "file_operations", "session_errors", "compaction_events", "messages")
    ),
    ("sessions", "DELETE FROM sessions WHERE id IN (SELECT id FROM prune_sessions)"),
    ("events", "DELETE FROM events WHERE received_at < :cutoff"),
)


def _sql_value(value: Any) -> Any:
    """Row values are scalars; a dict or list (a tool's input, say) is stored as JSON text."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value if value in _INT64 else str(value)  # SQLite integers are 64-bit
    if value is None or isinstance(value, str | float):
        return value
    return msgspec.json.encode(value).decode()
