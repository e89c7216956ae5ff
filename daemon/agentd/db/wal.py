"""Keeping the WAL small: background checkpoints that neither stall commits for long nor fall behind.

The writer runs with `wal_autocheckpoint=0`: an automatic checkpoint would run inside whichever
commit crosses the threshold and stall every client waiting on it. Instead a second connection
copies the WAL back into the database in the background (PASSIVE: never waits for, or blocks, the
writer). Under steady load PASSIVE alone never catches up, and a WAL file never shrinks by itself,
so two more steps bound it:

- when the WAL passes `limit_bytes` (the writer pokes after each commit), or when the writer has
  been idle for a whole interval, the checkpointer takes the store's write lock (no commit is in
  flight, new ones wait) and runs a TRUNCATE checkpoint: what PASSIVE left is copied and the file
  is cut to zero. The stall is the copy of what came since the last PASSIVE, not the whole WAL;
- `journal_size_limit` makes the writer cut the file too whenever it restarts the WAL.

A reader holding an old snapshot (a long `agentd query`) can keep TRUNCATE from finishing; it then
gives up after BUSY_TIMEOUT_S and is tried again next interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from pathlib import Path
from typing import Any

__all__ = ["Checkpointer", "INTERVAL_S", "LIMIT_BYTES", "JOURNAL_SIZE_LIMIT", "wal_path"]

log = logging.getLogger(__name__)

INTERVAL_S = 1.0
LIMIT_BYTES = 16 * 1024 * 1024
JOURNAL_SIZE_LIMIT = 4 * 1024 * 1024  # PRAGMA journal_size_limit of the writer connection
BUSY_TIMEOUT_S = 0.2  # how long a TRUNCATE may wait for readers while commits wait for it


def wal_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + "-wal")


class Checkpointer:
    """start() after the writer connection is open; poke() after each commit; close() last."""

    def __init__(
        self,
        db_path: Path,
        write_lock: asyncio.Lock,
        *,
        interval_s: float = INTERVAL_S,
        limit_bytes: int = LIMIT_BYTES,
    ) -> None:
        self.db_path = db_path
        self.interval_s = interval_s
        self.limit_bytes = limit_bytes
        self.truncations = 0
        self._wal = wal_path(db_path)
        self._write_lock = write_lock
        self._commits = 0
        self._over_limit = asyncio.Event()
        self._conn: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._running: asyncio.Future[Any] | None = None  # a checkpoint in its thread

    def start(self) -> None:
        self._conn = sqlite3.connect(
            self.db_path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
        )
        self._task = asyncio.create_task(self._loop(), name="agentd-checkpoint")

    def wal_bytes(self) -> int:
        try:
            return self._wal.stat().st_size
        except FileNotFoundError:
            return 0

    def poke(self) -> None:
        """A transaction committed: checkpoint now if the WAL has passed the limit."""
        self._commits += 1
        if not self._over_limit.is_set() and self.wal_bytes() > self.limit_bytes:
            self._over_limit.set()

    async def close(self) -> None:
        """Stop (the store empties the WAL as it closes its writer)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._running is not None:
            # Cancelling the task does not stop its thread: closing the connection under a
            # running checkpoint crashes the process (SIGSEGV).
            await asyncio.wait([self._running])
            if not self._running.cancelled():
                self._running.exception()  # retrieved: reported by the loop, if at all
            self._running = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _loop(self) -> None:
        conn = self._conn
        assert conn is not None
        seen = self._commits
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await self._over_limit.wait()
            self._over_limit.clear()
            try:
                await self._in_thread(conn.execute, "PRAGMA wal_checkpoint(PASSIVE)")
                idle = self._commits == seen
                size = self.wal_bytes()
                if size > self.limit_bytes or (idle and size > 0):
                    async with self._write_lock:
                        await self._in_thread(self._truncate, conn)
            except sqlite3.Error:
                log.warning("background checkpoint failed; will retry", exc_info=True)
            seen = self._commits

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        """fn(*args) in a worker thread; close() waits for it even if this task is cancelled."""
        self._running = asyncio.get_running_loop().run_in_executor(None, fn, *args)
        return await asyncio.shield(self._running)

    def _truncate(self, conn: sqlite3.Connection) -> None:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if not busy:
            self.truncations += 1
