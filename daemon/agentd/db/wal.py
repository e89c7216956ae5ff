"""Keeping the WAL small: background checkpoints that neither stall commits for long nor fall behind.

The writer runs with `wal_autocheckpoint=0`: an automatic checkpoint would run inside whichever
commit crosses the threshold and stall every client waiting on it. Instead a second connection
copies the WAL back into the database in the background (PASSIVE: never waits for, or blocks, the
writer). Under steady load PASSIVE alone never catches up, and a WAL file never shrinks by itself,
so three more steps bound it:

- once the WAL passes a quarter of `limit_bytes` (at most JOURNAL_SIZE_LIMIT), PASSIVE runs at
  once rather than at the next interval: under a steady load of small commits (each writes a
  dozen pages or more) the WAL would otherwise reach the limit between two intervals, and every
  TRUNCATE stalls the commits waiting behind it. PASSIVE runs again at once until a round finds
  no commit came since the previous one began (at most CATCH_UP_ROUNDS): only a commit that finds
  the WAL all copied back restarts it from its start, and commits land while a PASSIVE copies.
  Caught up so, the writer restarts the WAL at its next commit and the file stays small;

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
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

__all__ = ["Checkpointer", "INTERVAL_S", "LIMIT_BYTES", "JOURNAL_SIZE_LIMIT", "wal_path"]

log = logging.getLogger(__name__)
T = TypeVar("T")

INTERVAL_S = 1.0
LIMIT_BYTES = 16 * 1024 * 1024
JOURNAL_SIZE_LIMIT = 4 * 1024 * 1024  # PRAGMA journal_size_limit of the writer connection
MIN_GAP_S = 0.05  # between two checkpoints started early (the WAL past `passive_bytes`)
BUSY_TIMEOUT_S = 0.2  # how long a TRUNCATE may wait for readers while commits wait for it
CATCH_UP_ROUNDS = 4  # PASSIVE checkpoints in a row at most (more cost CPU and disk for little)


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
        self.passive_bytes = min(JOURNAL_SIZE_LIMIT, limit_bytes // 4)
        self.truncations = 0
        self._wal = wal_path(db_path)
        self._write_lock = write_lock
        self._commits = 0
        self._over_limit = asyncio.Event()
        self._conn: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        # The checkpoint running on a thread: cancelling the task does not stop it, and the
        # connection must outlive it (closing a connection in use crashes the process).
        self._running: asyncio.Future[object] | None = None

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
        """A transaction committed: checkpoint now if the WAL has grown past `passive_bytes`
        (and cut it if past the limit)."""
        self._commits += 1
        if not self._over_limit.is_set() and self.wal_bytes() > self.passive_bytes:
            self._over_limit.set()

    async def close(self) -> None:
        """Stop (the store empties the WAL as it closes its writer)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._running is not None:
            with contextlib.suppress(Exception):
                await self._running
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
                await self._catch_up(conn)
                idle = self._commits == seen
                size = self.wal_bytes()
                if size > self.limit_bytes or (idle and size > 0):
                    async with self._write_lock:
                        await self._in_thread(self._truncate, conn)
            except sqlite3.Error:
                log.warning("background checkpoint failed; will retry", exc_info=True)
            seen = self._commits
            await asyncio.sleep(MIN_GAP_S)

    async def _catch_up(self, conn: sqlite3.Connection) -> None:
        """PASSIVE, again at once while commits keep landing during it, until the WAL is all
        copied back (or CATCH_UP_ROUNDS): the writer restarts the WAL from its start only at a
        commit that finds it so, and under a steady load of small commits one PASSIVE never
        does (commits land while it copies). Each round copies what came during the previous
        one, so rounds shrink fast; without them the WAL grew to `limit_bytes` and every
        TRUNCATE (under the write lock) stalled the commits behind it for ~10 ms."""
        previous = None
        for _ in range(CATCH_UP_ROUNDS):
            # A PASSIVE reports the frames the WAL held when it began: the same count twice in a
            # row means no commit came since the previous one began, which copied them all.
            frames, copied = await self._in_thread(_passive, conn)
            if copied < frames or frames == previous:
                return  # a reader holds older frames (nothing more to gain now), or caught up
            previous = frames

    async def _in_thread(self, fn: Callable[..., T], *args: object) -> T:
        running = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        self._running = running
        return await asyncio.shield(running)

    def _truncate(self, conn: sqlite3.Connection) -> None:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if not busy:
            self.truncations += 1


def _passive(conn: sqlite3.Connection) -> tuple[int, int]:
    """A PASSIVE checkpoint: (frames in the WAL, frames copied back); -1 each if not in WAL mode."""
    _, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return frames, copied
