"""Write access to the database: through the daemon if it answers, else directly, holding its lock.

There is one writer per database (db/store.py). When the daemon answers `ping`, a command that
writes is one more client and sends it the write. When none does, the command takes the daemon's
pid-file lock (agentd.pidfile, the lock `agentd start` takes) and opens a Store itself: no daemon
can start while it writes, and it never meets a second writer ("database is locked"). A daemon
that starts meanwhile (the hook's autostart, say) finds the lock held and exits; the hook then
spools, and the next daemon drains the spool.

`acquire()` is the one way in: it returns a Writer that says which mode it got (and, direct, holds
the lock until released). `write()` runs one write method with it, `prune`, `vacuum` or `reprice`:
the RPC of that name, or the Store method of that name, which return the same result.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agentd import pidfile
from agentd.client import NotRunning, RemoteError, call
from agentd.config import Config
from agentd.errors import (
    AccessError,
    DaemonRefused,
    DaemonStopped,
    NoDatabase,
    ShuttingDown,
    WriterBusy,
)

__all__ = [
    "AccessError",
    "WriterBusy",
    "NoDatabase",
    "DaemonRefused",
    "Writer",
    "acquire",
    "write",
    "WRITE_METHODS",
]

Mode = Literal["daemon", "direct"]


@dataclass(slots=True)
class Writer:
    """Who writes: the daemon (`ping` is its answer) or this process (`lock_fd`: the lock, held
    until release(); a Writer is a context manager that releases it)."""

    config: Config
    mode: Mode
    ping: dict[str, Any] | None = None
    lock_fd: int | None = None

    def release(self) -> None:
        """Release the lock; first, the database having changed under them, bring the
        statusline's kept figures up to date (statusfigures.refresh_kept) while no daemon writes."""
        if self.lock_fd is not None:
            try:
                from agentd import statusfigures

                statusfigures.refresh_kept(str(self.config.state_dir), str(self.config.db_path))
            except Exception:  # noqa: BLE001, S110 (a damaged cache must not fail the write)
                pass  # the statusline reads the database itself
            finally:
                pidfile.release(self.config.pid_path, self.lock_fd)
                self.lock_fd = None

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(config: Config, *, wait_s: float = 0.0) -> Writer:
    """The daemon if it answers `ping`, else the writer lock for this process. While the lock is
    held and no daemon answers (a daemon starting, another direct writer), tries again for up to
    `wait_s`, then raises WriterBusy."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            ping = call(config.socket_path, "ping", timeout=2.0)
        except (NotRunning, RemoteError, OSError, TimeoutError):
            ping = None
        if ping is not None:
            return Writer(config, "daemon", ping=ping)
        try:
            return Writer(config, "direct", lock_fd=pidfile.acquire(config.pid_path))
        except pidfile.Locked as e:
            holder = e.pid
        if time.monotonic() >= deadline:
            raise WriterBusy(holder)
        time.sleep(0.1)


# The write methods both ways: the RPC method's params -> the same call on a Store (with the
# caller's progress callback, which only a direct write can report to).
Progress = Callable[..., None] | None
WriteMethod = Callable[[Any, dict[str, Any], Progress], Awaitable[dict[str, Any]]]
WRITE_METHODS: dict[str, WriteMethod] = {
    "prune": lambda store, params, progress: store.prune(params["before"]),
    "vacuum": lambda store, params, progress: store.vacuum(),
    "reprice": lambda store, params, progress: store.reprice(_selection(params), progress),
}


def _selection(params: dict[str, Any]) -> Any:
    from agentd.db.reprice import Selection

    return Selection(**params)


def write(
    config: Config,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    timeout: float = 3600.0,
    progress: Progress = None,
) -> tuple[Mode, dict[str, Any]]:
    """Run a write method (`prune`, `vacuum`, `reprice`) with whichever writer there is; (mode,
    its result). `progress` is passed to the Store method of a direct write.

    Raises WriterBusy, NoDatabase (direct, and no database file), DaemonRefused, DaemonStopped
    (the daemon stopped before answering), and sqlite3.Error from a direct write.
    """
    run = WRITE_METHODS[method]
    for attempt in range(2):
        with acquire(config) as writer:
            if writer.mode == "daemon":
                try:
                    return "daemon", call(config.socket_path, method, params, timeout=timeout)
                except NotRunning:
                    if attempt:
                        raise
                    continue  # it stopped since it answered ping: take the lock instead
                except RemoteError as e:
                    if e.code == ShuttingDown.CODE:  # it stopped mid-way (a reprice's batches)
                        raise DaemonStopped(method) from None
                    raise DaemonRefused(method, e) from None
                except ConnectionError:  # it stopped, or was killed, before answering
                    raise DaemonStopped(method) from None
            if not config.db_path.exists():
                raise NoDatabase(config.db_path)
            return "direct", asyncio.run(_direct(config.db_path, run, params or {}, progress))
    raise AssertionError("unreachable")


async def _direct(
    db_path: Path, run: WriteMethod, params: dict[str, Any], progress: Progress
) -> dict[str, Any]:
    from agentd.db.store import Store

    store = Store(db_path)
    await store.open()
    try:
        return await run(store, params, progress)
    finally:
        await store.close()
