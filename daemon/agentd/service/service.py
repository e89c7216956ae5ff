# Over 400 lines: the spool drain shares the store, counters and stop of the service (a split is due).
"""The service: what the daemon does and keeps, whoever reaches it and however.

It owns the store (the one writer), drains the spool into it, keeps the counters `status` reports,
and runs the lifecycle of both: the state directory and its pid-file lock, the store, the spool
task, and the stop request. It knows nothing of sockets; the RPC methods use it as a
methods.ServiceAPI, and the transport only counts its connections into it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite

from agentd import __version__, paths, pidfile, spool, statusfigures
from agentd.config import Config
from agentd.db import readonly
from agentd.db.reprice import Selection
from agentd.db.store import Store
from agentd.errors import AlreadyRunning, DiskFull, InvalidEvent, StartupError, detached
from agentd.follow import Follower
from agentd.ingest import PreparedEvent, Privacy
from agentd.redact import Redactor

__all__ = ["Service"]

log = logging.getLogger(__name__)

SPOOL_POLL_S = 1.0
MAX_SPOOL_NOTED = 4096  # spool entries whose problem was logged (once each), remembered


class Orphaned(Exception):
    """The daemon's database or pid file is no longer at its path (check_still_ours)."""


def _inode(path: str) -> int:
    try:
        return os.lstat(path).st_ino
    except OSError:
        return 0


class Service:
    """Lifecycle: lock() -> await open() -> ... request_stop() ... -> await close()."""

    def __init__(self, config: Config) -> None:
        self.config = config
        redactor = Redactor(config.redaction_patterns) if config.redaction else None
        self.store = Store(
            config.db_path,
            output_limit_bytes=config.output_limit_bytes,
            privacy=Privacy(redactor, config.content_level),
        )
        self.started_at = 0.0
        self.connections = 0  # kept by the transport
        self.spool_events_drained = 0
        self.spool_lines_rejected = 0
        self._stop = asyncio.Event()
        self._pid_fd: int | None = None
        self._db_identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the database opened
        self.orphaned = False  # its database or pid file was removed or replaced: it stopped
        self._spool_task: asyncio.Task[None] | None = None
        self._spool_lock = asyncio.Lock()
        self._spool_noted: dict[tuple[str, int], None] = {}  # logged once (_note_once)
        # Reads live Claude transcripts into the store (tokens, cost, what no hook reports).
        self.follower = Follower(
            config.state_dir, self.store.prepare, self.store.submit, may_save=self.check_still_ours
        )
        # The statusline's figures: read on one read-only aiosqlite connection, opened on first
        # use (its own thread: never a read on the loop, and never on the writer's thread).
        self._reader: aiosqlite.Connection | None = None
        self._reader_lock = asyncio.Lock()
        self._unwaited: set[asyncio.Future[None]] = set()  # statusline samples being stored
        # The day and the sessions the statusline asked about: their figures are kept in a file
        # when the daemon stops (keep_statusline_figures), for the statusline while it is down.
        self._statusline_day: int | None = None
        self._statusline_sessions: dict[str, None] = {}

    # -- lifecycle -------------------------------------------------------------------------------

    def lock(self) -> None:
        """Make the state dir and hold its pid-file lock for the daemon's life: one writer per
        state dir. AlreadyRunning if another daemon holds it, StartupError if it cannot be made."""
        try:
            paths.make_private_dir(self.config.state_dir)
            self._pid_fd = pidfile.acquire(self.config.pid_path)
        except pidfile.Locked as e:
            raise AlreadyRunning(e.pid, self.config.socket_path) from None
        except OSError as e:
            raise StartupError(
                f"cannot prepare {e.filename or self.config.state_dir}: {e.strerror}"
            ) from e

    async def open(self) -> None:
        """Open the store (migrating it) and start draining the spool."""
        await self.store.open()
        st = os.stat(self.config.db_path)
        self._db_identity = (st.st_dev, st.st_ino)
        await self.follower.start()
        self.started_at = time.time()
        self._spool_task = asyncio.create_task(self._drain_spool_forever(), name="agentd-spool")

    def request_stop(self) -> None:
        if not self._stop.is_set():
            log.info("stop requested")
            self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once a stop is asked: no new work is taken."""
        return self._stop.is_set()

    async def wait_stopped(self) -> None:
        """Return when a stop is asked (signal, `shutdown` method)."""
        await self._stop.wait()

    async def close(self) -> None:
        """Stop draining, commit and close the store, release the pid file. Safe after a failed
        lock() or open(), and more than once."""
        self._stop.set()
        if self._spool_task is not None:
            self._spool_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._spool_task
            self._spool_task = None
        await self.follower.close()
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        await self.store.close()
        if self.orphaned:  # the paths may be another daemon's now: nothing is written or removed
            if self._pid_fd is not None:
                os.close(self._pid_fd)
                self._pid_fd = None
            return
        self.keep_statusline_figures()
        if self._pid_fd is not None:
            pidfile.release(self.config.pid_path, self._pid_fd)
            self._pid_fd = None

    # -- what the methods call -------------------------------------------------------------------

    async def ingest(self, source: str, payload: bytes, received_at: int | None) -> None:
        """Store one event; returns once it is committed (InvalidEvent: not stored)."""
        event = self.store.prepare(source, payload, received_at)
        await self.store.submit(event)
        self._follow(event)

    async def ingest_many(
        self, items: list[tuple[str, bytes, int | None]]
    ) -> list[Exception | None]:
        """Store (source, payload, received_at) events, in one group: each one's outcome, in
        order, once all are committed or have failed: None (stored), else the error (InvalidEvent,
        DiskFull, ...). One event's error is its own."""
        outcomes: list[Exception | None] = [None] * len(items)
        events: list[PreparedEvent] = []
        positions: list[int] = []
        for i, (source, payload, received_at) in enumerate(items):
            try:
                events.append(self.store.prepare(source, payload, received_at))
                positions.append(i)
            except InvalidEvent as e:
                outcomes[i] = detached(e)
            except Exception as e:  # a bug; still only this event's problem
                log.exception("preparing an event of %d bytes failed", len(payload))
                outcomes[i] = detached(e)
        stored = await self.store.submit_many(events)
        for i, event, outcome in zip(positions, events, stored, strict=True):
            outcomes[i] = outcome
            if outcome is None:
                self._follow(event)
        return outcomes

    async def statusline(
        self, source: str, payload: bytes, received_at: int | None, day_start: int
    ) -> dict[str, Any]:
        """What the statusline prints beside the sample (statusfigures.shown) for the event's
        session and the day from `day_start`, read on the reader's thread; the event is stored as an
        `ingest` notification's is, not waited for (its commit can take longer than the read, on
        a session with many messages, and the statusline runs as often as the hook)."""
        event = self.store.prepare(source, payload, received_at)
        # Read first: a small commit may run on the loop's thread (db/store.py), and the
        # figures do not depend on this sample.
        figures = await self._figures(event.session_id, day_start)
        stored = asyncio.ensure_future(self.store.submit(event))
        self._unwaited.add(stored)
        stored.add_done_callback(self._stored_unwaited)
        self._follow(event)
        self._statusline_day = day_start
        if event.session_id:  # the newest last, at most statusfigures.KEPT_SESSIONS
            self._statusline_sessions.pop(event.session_id, None)
            self._statusline_sessions[event.session_id] = None
            if len(self._statusline_sessions) > statusfigures.KEPT_SESSIONS:
                del self._statusline_sessions[next(iter(self._statusline_sessions))]
        return figures

    def keep_statusline_figures(self) -> None:
        """After the last commit: the statusline's figures for the day and sessions it asked about,
        with the database's stamp, in statusfigures.FIGURES_FILE."""
        if self._statusline_day is None:
            return
        state, sessions = str(self.config.state_dir), list(self._statusline_sessions)
        fresh = statusfigures.read_fresh(str(self.config.db_path), sessions, self._statusline_day)
        if fresh is None:
            log.info("statusline figures not kept: the database could not be read")
            return
        kept, stamp = fresh
        if stamp is None:
            return  # another process wrote meanwhile: the statusline reads the database itself
        try:
            statusfigures.sweep_partials(state)
            statusfigures.keep_merged(state, kept, stamp)
        except (OSError, ValueError) as e:  # then the statusline reads the database
            log.info("statusline figures not kept: %s", e)

    def _stored_unwaited(self, stored: asyncio.Future[None]) -> None:
        self._unwaited.discard(stored)
        if not stored.cancelled() and stored.exception() is not None:
            log.warning("a statusline sample was not stored: %s", stored.exception())

    async def _figures(self, session_id: str | None, day_start: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        try:
            async with self._reader_lock:  # one connection, opened once
                if self._reader is None:
                    path = self.config.db_path
                    self._reader = await aiosqlite.Connection(
                        lambda: readonly.connect(path, timeout=0.1, check_same_thread=False), 64
                    )
            cost = await self._reader.execute_fetchall(
                statusfigures.TODAY_COST_SQL, (statusfigures.first_hour(day_start),)
            )
            if (today := statusfigures.today_cost(next(iter(cost), None))) is not None:
                out["today_cost"] = today
            if session_id:
                failed = await self._reader.execute_fetchall(
                    statusfigures.FAILURES_SQL, (session_id,)
                )
                out["failures"] = failed[0][0]
        except sqlite3.Error:
            pass  # no database yet, an older schema, a busy file: the statusline shows the rest
        return out

    def _follow(self, event: PreparedEvent) -> None:
        if event.source == "claude":
            self.follower.observe(event.kind, event.session_id, event.transcript_path)

    async def prune(self, before: int) -> dict[str, Any]:
        """{"deleted": rows per table} (Store.prune, the same for the direct path)."""
        return await self.store.prune(before)

    async def vacuum(self) -> dict[str, Any]:
        """{"bytes_before": ..., "bytes_after": ...} (Store.vacuum)."""
        return await self.store.vacuum()

    async def reprice(self, selection: Selection, stop: Callable[[], bool]) -> dict[str, Any]:
        """What was priced again, in total and per model (Store.reprice: RepriceBusy while
        another runs, RepriceStopped once `stop()` is true between its batches)."""
        return await self.store.reprice(selection, stop=stop)

    async def status(self) -> dict[str, Any]:
        files, size = await asyncio.to_thread(spool.backlog, self.config.spool_dir)
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started_at, 3),
            "socket": str(self.config.socket_path),
            "database": str(self.config.db_path),
            "database_bytes": self.store.database_bytes(),
            "events_stored": self.store.events_stored,
            "events_total": await self.store.count_events(),
            "write_queue": self.store.backlog,
            "spool_files": files,
            "spool_bytes": size,
            "spool_events_drained": self.spool_events_drained,
            "spool_lines_rejected": self.spool_lines_rejected,
            "connections": self.connections,
        }

    # -- spool -----------------------------------------------------------------------------------

    def check_still_ours(self) -> bool:
        """Whether the database and pid-file paths still name the files this daemon holds. If not
        (its state dir was deleted or replaced while it ran), it stops, with one log line: its
        events would go to a deleted file, and another daemon may start there."""
        if self.orphaned:
            return False
        if self._db_identity is None or self._pid_fd is None:
            return True  # not started yet
        gone = None
        try:
            db = os.stat(self.config.db_path)
            if (db.st_dev, db.st_ino) != self._db_identity:
                gone = f"database {self.config.db_path} is not the file it opened"
            else:
                pid, held = os.stat(self.config.pid_path), os.fstat(self._pid_fd)
                if (pid.st_dev, pid.st_ino) != (held.st_dev, held.st_ino):
                    gone = f"pid file {self.config.pid_path} is not the one it holds"
        except FileNotFoundError as e:
            gone = f"{e.filename} was removed"
        except OSError as e:  # a passing EIO or ESTALE (a network home) proves nothing: go on
            log.debug("cannot check %s: %s", e.filename, e.strerror)
            return True
        if gone is None:
            return True
        log.error("stopping: the %s (its state dir was deleted or replaced while it ran)", gone)
        self.orphaned = True
        self.request_stop()
        return False

    async def _drain_spool_forever(self) -> None:
        while True:
            if not self.check_still_ours():
                return
            try:
                await self.drain_spool()
            except DiskFull:
                log.warning("the disk is full: the spool stays until space is freed")
            except Orphaned:
                return
            except Exception:
                log.exception("draining the spool failed; will retry")
            await asyncio.sleep(SPOOL_POLL_S)

    async def drain_spool(self) -> int:
        """Ingest every drainable spool file; delete each only after its events committed.

        One file never holds up the others: a file that fails for any reason but a full disk (which
        stops the pass: no other file could be stored either) is logged, once, and left for the
        next pass; an entry that is not a regular file is never read, and logged once.
        """
        async with self._spool_lock:
            drained = 0
            odd: list[tuple[str, int]] = []
            files = await asyncio.to_thread(spool.ready_files, self.config.spool_dir, odd)
            for path, inode in odd:
                self._note_once(path, inode, "is not a regular file; left alone, never read")
            for path in files:
                try:
                    drained += await self._drain_file(Path(path))
                except (DiskFull, Orphaned):
                    raise
                except Exception as e:
                    self._note_once(path, _inode(path), f"could not be drained ({e!r}); will retry")
            if drained:
                log.info("drained %d events from %d spool files", drained, len(files))
            return drained

    def _note_once(self, path: str, inode: int, what: str) -> None:
        """Log a spool entry's problem once (per name and inode), not at every pass."""
        key = (path, inode)
        if key in self._spool_noted:
            return
        if len(self._spool_noted) >= MAX_SPOOL_NOTED:  # forget the oldest: bounded memory
            del self._spool_noted[next(iter(self._spool_noted))]
        self._spool_noted[key] = None
        log.warning("spool entry %s %s", path, what)

    async def _drain_file(self, path: Path) -> int:
        """Ingest one file's events; keep its bad lines aside; delete it once all committed.

        One bad line never holds up the spool: whatever preparing a line raises, the line goes to
        rejected/ and the rest are drained. A write that fails (a full disk) keeps the whole file
        for the next pass: its events that did commit are deduplicated then. Only a regular file
        is read (spool.open_regular: a symlink, a FIFO, a directory are refused), a piece at a
        time: a big file costs no more memory than a piece.
        """
        try:
            fd = await asyncio.to_thread(spool.open_regular, path)
        except FileNotFoundError:
            return 0
        except spool.NotRegular as e:
            self._note_once(
                str(path), _inode(str(path)), f"is {e.strerror}; left alone, never read"
            )
            return 0
        piece_bytes = max(spool.PIECE_BYTES, 2 * self.config.max_line_bytes)
        count = 0
        first = True
        try:
            pieces = spool.read_pieces(fd, piece_bytes)
            while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
                lines, too_long, torn = piece
                count += await self._drain_lines(path, lines, too_long, torn, first)
                first = False
        finally:
            os.close(fd)
        if not self.check_still_ours():  # committed to a deleted database: the file stays
            raise Orphaned(str(self.config.db_path))
        path.unlink(missing_ok=True)
        return count

    async def _drain_lines(
        self, path: Path, lines: list[bytes], too_long: list[tuple[int, str]], torn: bytes,
        first: bool,
    ) -> int:  # fmt: skip
        """Ingest one piece of a spool file (read_pieces); its events, once committed."""
        events: list[PreparedEvent] = []
        rejected: list[bytes] = []
        for line in lines:
            try:
                source, payload, received_at = spool.decode_line(line)
                events.append(self.store.prepare(source, payload, received_at))
            except ValueError:  # a line that holds no event (spool), or InvalidEvent
                rejected.append(line)
            except Exception:  # a bug; still only this line's problem
                log.exception("spool file %s: a line of %d bytes failed", path.name, len(line))
                rejected.append(line)
        for outcome in await self.store.submit_many(events):
            if outcome is not None:
                raise outcome
        for event in events:
            self._follow(event)
        if rejected or too_long or torn:
            self._keep_rejected(path, rejected, too_long, torn, append=not first)
        self.spool_events_drained += len(events)
        return len(events)

    def _keep_rejected(
        self, path: Path, lines: list[bytes], too_long: list[tuple[int, str]], torn: bytes,
        append: bool,
    ) -> None:  # fmt: skip
        """Lines the daemon cannot read are kept for inspection, never silently deleted; but
        redacted as events are (they may hold secrets too), or, below content level `full`, only
        their size and hash (docs/privacy.md). A line too long to hold: only its size and hash."""
        self.spool_lines_rejected += len(lines) + len(too_long) + (1 if torn else 0)
        rejected_dir = self.config.spool_dir / "rejected"
        rejected_dir.mkdir(mode=0o700, exist_ok=True)
        kept = list(lines) + ([torn] if torn else [])
        data = b"".join(self._scrub(line) + b"\n" for line in kept)
        data += b"".join(
            b'{"rejected_bytes":%d,"blake2b":"%s"}\n' % (size, digest.encode())
            for size, digest in too_long
        )
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        flags |= os.O_APPEND if append else os.O_TRUNC
        fd = os.open(rejected_dir / path.name.removesuffix(".open"), flags, 0o600)
        try:
            with os.fdopen(fd, "wb", closefd=False) as f:
                f.write(data)
        finally:
            os.close(fd)
        log.warning(
            "spool file %s: %d unreadable lines%s%s kept in %s",
            path.name,
            len(lines),
            f" and {len(too_long)} too long to read" if too_long else "",
            " and a torn last line" if torn else "",
            rejected_dir,
        )

    def _scrub(self, line: bytes) -> bytes:
        """A rejected line as it may be kept: redacted, or only its size and hash."""
        privacy = self.store.privacy
        if privacy.content_level != "full":
            digest = hashlib.blake2b(line, digest_size=16).hexdigest()
            return b'{"rejected_bytes":%d,"blake2b":"%s"}' % (len(line), digest.encode())
        if privacy.redactor is None:
            return line
        # surrogateescape: a torn line may end inside a UTF-8 sequence; its bytes are kept as is.
        text, _ = privacy.redactor.redact(line.decode("utf-8", "surrogateescape"))
        return text.encode("utf-8", "surrogateescape")
