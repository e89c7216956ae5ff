"""The RPC methods: a table of `async def (service, params) -> result` (docs/protocol.md).

A method sees the daemon only through `ServiceAPI`, never the transport: it cannot touch sockets
or connections, and the transport cannot see what a method does. Wire errors are raised here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

import msgspec

from agentd import __version__
from agentd.errors import InvalidParams, MethodNotFound, ShuttingDown
from agentd.ingest import InvalidEvent
from agentd.protocol import IngestParams, NoParams, PruneParams, StatuslineParams, decode_params

__all__ = ["METHODS", "ServiceAPI", "dispatch"]


class ServiceAPI(Protocol):
    """What the methods (and the transport, which counts connections) may use of the daemon.

    service.Service is the one implementation; a test may pass any object with these members.
    """

    connections: int  # open client connections, kept up to date by the transport

    @property
    def stopping(self) -> bool: ...

    async def ingest(self, source: str, payload: bytes, received_at: int | None) -> None: ...

    async def statusline(
        self, source: str, payload: bytes, received_at: int | None, day_start: int
    ) -> dict[str, Any]: ...

    async def status(self) -> dict[str, Any]: ...

    async def prune(self, before: int) -> dict[str, Any]: ...

    async def vacuum(self) -> dict[str, Any]: ...

    def request_stop(self) -> None: ...


Method = Callable[[ServiceAPI, Any], Awaitable[Any]]
METHODS: dict[str, tuple[type[Any], Method]] = {}


def method(name: str, params: type[Any] = NoParams) -> Callable[[Method], Method]:
    def register(fn: Method) -> Method:
        if name in METHODS:
            raise ValueError(f"method {name!r} registered twice")
        METHODS[name] = (params, fn)
        return fn

    return register


async def dispatch(service: ServiceAPI, name: str, raw_params: msgspec.Raw) -> Any:
    """Run method `name`: its result, or a WireError (unknown method, bad params, ...)."""
    try:
        params_type, fn = METHODS[name]
    except KeyError:
        raise MethodNotFound.of(name) from None
    return await fn(service, decode_params(raw_params, params_type))


@method("ping")
async def ping(service: ServiceAPI, params: NoParams) -> dict[str, Any]:
    return {"version": __version__, "pid": os.getpid()}


@method("ingest", IngestParams)
async def ingest(service: ServiceAPI, params: IngestParams) -> dict[str, Any]:
    if service.stopping:
        raise ShuttingDown()
    try:
        await service.ingest(params.source, bytes(params.payload), params.received_at)
    except InvalidEvent as e:
        raise InvalidParams(f"Invalid params: {e} - at `{e.path}`", data={"path": e.path}) from None
    except UnicodeDecodeError as e:  # msgspec.Raw does not check the UTF-8 inside the payload
        raise InvalidParams(
            f"Invalid params: {e} - at `$.payload`", data={"path": "$.payload"}
        ) from None
    return {"stored": True}


@method("statusline", StatuslineParams)
async def statusline(service: ServiceAPI, params: StatuslineParams) -> dict[str, Any]:
    """`ingest` as a notification, answered with what `agentd statusline` prints beside the
    sample: one round trip instead of the command opening the database itself."""
    if service.stopping:
        raise ShuttingDown()
    with _invalid_event():
        figures = await service.statusline(
            params.source, bytes(params.payload), params.received_at, params.day_start
        )
    return {"accepted": True, **figures}


@contextlib.contextmanager
def _invalid_event() -> Iterator[None]:
    """An event the daemon cannot take, as -32602 with the path of what is wrong (as `ingest`
    says it)."""
    try:
        yield
    except InvalidEvent as e:
        raise InvalidParams(f"Invalid params: {e} - at `{e.path}`", data={"path": e.path}) from None
    except UnicodeDecodeError as e:  # msgspec.Raw does not check the UTF-8 inside the payload
        raise InvalidParams(
            f"Invalid params: {e} - at `$.payload`", data={"path": "$.payload"}
        ) from None


@method("status")
async def status(service: ServiceAPI, params: NoParams) -> dict[str, Any]:
    return await service.status()


@method("prune", PruneParams)
async def prune(service: ServiceAPI, params: PruneParams) -> dict[str, Any]:
    return await service.prune(params.before)


@method("vacuum")
async def vacuum(service: ServiceAPI, params: NoParams) -> dict[str, Any]:
    return await service.vacuum()


@method("shutdown")
async def shutdown(service: ServiceAPI, params: NoParams) -> dict[str, Any]:
    service.request_stop()
    return {"stopping": True}
