"""The RPC methods: a table of `async def (daemon, params) -> result` (docs/protocol.md)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec

from agentd import __version__
from agentd.errors import InvalidParams, MethodNotFound, ShuttingDown
from agentd.ingest import InvalidEvent
from agentd.protocol import IngestParams, NoParams, PruneParams, decode_params

if TYPE_CHECKING:
    from agentd.service.transport import Server

__all__ = ["METHODS", "dispatch"]

Handler = Callable[["Server", Any], Awaitable[Any]]
METHODS: dict[str, tuple[type[Any], Handler]] = {}


def method(name: str, params: type[Any] = NoParams) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        if name in METHODS:
            raise ValueError(f"method {name!r} registered twice")
        METHODS[name] = (params, fn)
        return fn

    return register


async def dispatch(server: Server, name: str, raw_params: msgspec.Raw) -> Any:
    try:
        params_type, handler = METHODS[name]
    except KeyError:
        raise MethodNotFound.of(name) from None
    return await handler(server, decode_params(raw_params, params_type))


@method("ping")
async def ping(server: Server, params: NoParams) -> dict[str, Any]:
    return {"version": __version__, "pid": os.getpid()}


@method("ingest", IngestParams)
async def ingest(server: Server, params: IngestParams) -> dict[str, Any]:
    if server.stopping:
        raise ShuttingDown()
    try:
        await server.store.ingest(params.source, bytes(params.payload), params.received_at)
    except InvalidEvent as e:
        raise InvalidParams(f"Invalid params: {e} - at `{e.path}`", data={"path": e.path}) from None
    except UnicodeDecodeError as e:  # msgspec.Raw does not check the UTF-8 inside the payload
        raise InvalidParams(
            f"Invalid params: {e} - at `$.payload`", data={"path": "$.payload"}
        ) from None
    return {"stored": True}


@method("status")
async def status(server: Server, params: NoParams) -> dict[str, Any]:
    return await server.status()


@method("prune", PruneParams)
async def prune(server: Server, params: PruneParams) -> dict[str, Any]:
    return await server.store.prune(params.before)


@method("vacuum")
async def vacuum(server: Server, params: NoParams) -> dict[str, Any]:
    return await server.store.vacuum()


@method("shutdown")
async def shutdown(server: Server, params: NoParams) -> dict[str, Any]:
    server.request_stop()
    return {"stopping": True}
