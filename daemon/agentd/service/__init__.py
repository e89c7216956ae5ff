"""The daemon, in three layers, and `run(config)`, which wires them.

- transport.py: the Unix socket, connections, NDJSON framing, backpressure, the peer check;
- methods.py: the RPC methods, a table over a small methods.ServiceAPI (never the transport);
- service.py: the Service: store, spool drain, counters, status, and their lifecycle.

Imports go transport -> methods -> nothing of the other two; only this module sees all three, and
only when the daemon runs (so `agentd.service.methods` can be imported alone, as the docs test does).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal

from agentd import __version__
from agentd.config import Config
from agentd.errors import AlreadyRunning, StartupError

__all__ = ["run", "serve", "AlreadyRunning", "StartupError"]

log = logging.getLogger(__name__)


def run(config: Config) -> None:
    """Run the daemon in this process until stopped (SIGTERM, SIGINT or the `shutdown` method).

    AlreadyRunning if another daemon has this state dir or socket; StartupError if it cannot start.
    """
    import uvloop

    os.umask(0o077)  # database, log, spool: readable by this user only
    # An event's preparation makes many short-lived containers and next to no cycles: the
    # default collection every 700 allocations cost ~1.5 us an event of a batched ingest
    # (bench/ingest), for nothing to free. The importers run with the same setting.
    gc.set_threshold(50_000, 20, 20)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(config))


async def serve(config: Config) -> None:
    """The daemon's life in the running loop: start up, wait for a stop, shut down (bounded)."""
    from agentd.service.service import Service
    from agentd.service.transport import Transport

    service = Service(config)
    transport = Transport(config, service)  # first: a socket path too long is the first error
    service.lock()
    try:
        transport.prepare()
        await service.open()
        await transport.start()
    except BaseException:
        await service.close()
        raise
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, service.request_stop)
    log.info(
        "agentd %s listening on %s (pid %d, database %s)",
        __version__,
        config.socket_path,
        os.getpid(),
        config.db_path,
    )
    try:
        await service.wait_stopped()
    finally:
        service.request_stop()  # when cancelled rather than asked: new requests are refused
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        await transport.close()  # no new work; in-flight requests finish
        await service.close()  # then the store commits and closes
        log.info("agentd stopped")
