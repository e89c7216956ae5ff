"""The push API the CLI calls.

push_once(config, options)   push everything committed so far, then return
watch(config, options, stop) keep pushing until `stop` is set; back off while the server
                             is unreachable, and say so in push-state.json
init_server(conninfo)        create or upgrade the server's tables (numbered migrations)
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from agentd.config import Config
from agentd.errors import ConnectFailed, PushBusy, PushError, SchemaMissing, no_database
from agentd.push import identity, server
from agentd.push.engine import Pusher
from agentd.push.local import Local
from agentd.push.state import write_state

__all__ = ["PushOptions", "PushReport", "push_once", "watch", "init_server", "PushError"]

log = logging.getLogger(__name__)

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
POLL_S = 0.1  # how often a caught-up watch looks for new local changes
STATE_EVERY_S = 1.0


@dataclass(frozen=True, kw_only=True)
class PushOptions:
    conninfo: str
    content_level: str = "full"
    raw: bool = False
    batch_rows: int = 10_000


@dataclass
class PushReport:
    server: str
    machine_id: str
    user_name: str
    upserted: int = 0
    deleted: int = 0
    cycles: int = 0
    seconds: float = 0.0


def init_server(conninfo: str) -> tuple[list[str], int, list[str]]:
    return server.init(conninfo)


def _pusher(config: Config, options: PushOptions) -> Pusher:
    try:
        local = Local(config.db_path, identity.id_key(config.state_dir))
    except FileNotFoundError:
        raise PushError(no_database(config.db_path)) from None
    return Pusher(
        local=local,
        conninfo=options.conninfo,
        machine_id=identity.machine_id(config.state_dir),
        user_name=identity.user_name(),
        hostname=identity.hostname(),
        content_level=options.content_level,
        raw=options.raw,
        batch_rows=options.batch_rows,
    )


def push_once(
    config: Config,
    options: PushOptions,
    progress: Callable[[int, int], None] | None = None,
) -> PushReport:
    """Push every change committed locally so far. Raises PushError (one line for the user).

    `progress(sent, total)` is called after each server transaction (total: an estimate).
    """
    server.parse(options.conninfo)
    pusher = _pusher(config, options)
    report = PushReport(server.describe(options.conninfo), pusher.machine_id, pusher.user_name)
    started = time.monotonic()
    try:
        pusher.connect()
        total = pusher.backlog() if progress else 0
        while True:
            result = pusher.cycle()
            report.upserted += result.upserted
            report.deleted += result.deleted
            report.cycles += 1
            if progress:
                sent = report.upserted + report.deleted
                progress(sent, max(total, sent))
            if result.caught_up:
                break
    except psycopg.Error as e:
        raise PushError(f"push to {report.server} failed: {_line(e)}") from None
    except sqlite3.Error as e:
        raise PushError(f"reading {config.db_path} failed: {_line(e)}") from None
    finally:
        pusher.close()
        pusher.local.close()
    report.seconds = time.monotonic() - started
    return report


def watch(config: Config, options: PushOptions, stop: threading.Event) -> None:
    """Push continuously until `stop` is set.

    Fails at once (PushError) if the first connection is refused for a reason retrying cannot
    fix: a wrong password, a missing schema, another push running. Anything later (the
    server down, slow, restarting) is retried with exponential backoff, and shown by
    `agentd status` through push-state.json. Capture never waits on any of this: the daemon
    commits locally and this process catches up from the change log.
    """
    server.parse(options.conninfo)  # a string libpq cannot read stays unreadable: stop now
    pusher = _pusher(config, options)
    target = server.describe(options.conninfo)
    backoff = BACKOFF_MIN_S
    first = True
    rows_pushed = 0
    behind_since: float | None = None  # when the oldest unpushed change was first seen
    last_push_at: int | None = None
    last_state = 0.0
    seen_seq = -1

    def publish(kind: str, force: bool = False, **extra: Any) -> None:
        nonlocal last_state
        if not force and time.monotonic() - last_state < STATE_EVERY_S:
            return
        last_state = time.monotonic()
        pending = _count_pending(pusher)
        lag = 0 if behind_since is None else int((time.time() - behind_since) * 1000)
        write_state(
            config.state_dir,
            {
                "server": target,
                "machine_id": pusher.machine_id,
                "state": kind,
                "pending": pending,
                "lag_ms": lag,
                "rows_pushed": rows_pushed,
                "last_push_at": last_push_at,
                **extra,
            },
        )

    try:
        while not stop.is_set():
            try:
                if not pusher.connected:
                    pusher.connect()
                    log.info("push: connected to %s", target)
                    first = False
                    backoff = BACKOFF_MIN_S
                seq = pusher.local.last_seq()
                if seq != seen_seq and behind_since is None:
                    behind_since = time.time()
                result = pusher.cycle()
                rows_pushed += result.upserted + result.deleted
                if result.upserted or result.deleted:
                    last_push_at = int(time.time() * 1000)
                if result.caught_up:
                    seen_seq = seq
                    behind_since = None
                    publish("ok")
                    _wait_for_change(pusher, seq, stop)
                else:
                    publish("ok")
            except (ConnectFailed, SchemaMissing, PushBusy) as e:
                if first and (not isinstance(e, ConnectFailed) or e.auth):
                    raise
                first = False
                backoff = _back_off(pusher, stop, backoff, str(e), publish)
            except psycopg.Error as e:
                backoff = _back_off(pusher, stop, backoff, _line(e), publish)
            except sqlite3.Error as e:  # the local database busy or being replaced: retry
                backoff = _back_off(pusher, stop, backoff, f"local database: {_line(e)}", publish)
        publish("stopped", force=True)
    finally:
        pusher.close()
        pusher.local.close()


def _back_off(
    pusher: Pusher, stop: threading.Event, delay: float, error: str, publish: Any
) -> float:
    pusher.close()
    log.warning("push: %s; retrying in %.1f s", error, delay)
    publish("backoff", force=True, error=error, retry_at=int((time.time() + delay) * 1000))
    stop.wait(delay)
    return min(delay * 2, BACKOFF_MAX_S)


def _wait_for_change(pusher: Pusher, seq: int, stop: threading.Event) -> None:
    """Until the local log moves past `seq` (a cheap max() on its primary key), or 5 s pass so
    that the state file and the server connection stay fresh."""
    deadline = time.monotonic() + 5.0
    while not stop.wait(POLL_S) and time.monotonic() < deadline:
        if pusher.local.last_seq() != seq:
            return


def _count_pending(pusher: Pusher) -> int | None:
    try:
        return pusher.pending()
    except sqlite3.Error:
        return None


def _line(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__
