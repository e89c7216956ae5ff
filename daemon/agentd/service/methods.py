"""The RPC methods: a table of `async def (service, params) -> result` (docs/protocol.md).

A method sees the daemon only through `ServiceAPI`, never the transport: it cannot touch sockets
or connections, and the transport cannot see what a method does. Wire errors are raised here.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Protocol

import msgspec

from agentd import __version__
from agentd.db.reprice import RepriceBusy, RepriceStopped, Selection
from agentd.errors import (
    InvalidParams,
    MethodNotFound,
    PricesUnavailable,
    RepriceRunning,
    ShuttingDown,
    detached,
)
from agentd.ingest import InvalidEvent
from agentd.pricing.table import PriceTableError
from agentd.protocol import (
    IngestParams,
    NoParams,
    PruneParams,
    RepriceParams,
    StatuslineParams,
    decode_params,
)

__all__ = [
    "METHODS", "BATCHED", "ServiceAPI", "client_gone", "dispatch", "dispatch_many",
    "ingest_decoded",
]  # fmt: skip

# Whether the client that sent the request being handled has gone (closed its end): the transport
# sets it for each connection's requests. A long method (`reprice`) stops then, having no one to
# answer; the others finish, their work being the client's events.
client_gone: ContextVar[Callable[[], bool]] = ContextVar("client_gone", default=lambda: False)


class ServiceAPI(Protocol):
    """What the methods (and the transport, which counts connections) may use of the daemon.

    service.Service is the one implementation; a test may pass any object with these members.
    """

    connections: int  # open client connections, kept up to date by the transport

    @property
    def stopping(self) -> bool: ...

    async def ingest(self, source: str, payload: bytes, received_at: int | None) -> None: ...

    async def ingest_many(
        self, items: list[tuple[str, bytes, int | None]]
    ) -> list[Exception | None]: ...

    async def statusline(
        self, source: str, payload: bytes, received_at: int | None, day_start: int
    ) -> dict[str, Any]: ...

    async def status(self) -> dict[str, Any]: ...

    async def prune(self, before: int) -> dict[str, Any]: ...

    async def vacuum(self) -> dict[str, Any]: ...

    async def reprice(self, selection: Selection, stop: Callable[[], bool]) -> dict[str, Any]: ...

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


# Methods with a form that takes all of a batch's requests for it at once: same results, one
# call (for `ingest`: one group commit, one future) instead of one task per request.
BatchedMethod = Callable[[ServiceAPI, list[msgspec.Raw]], Awaitable[list[Any]]]
BATCHED: dict[str, BatchedMethod] = {}


async def dispatch_many(service: ServiceAPI, name: str, raws: list[msgspec.Raw]) -> list[Any]:
    """dispatch() of each params in `raws` for method `name` (which must be in BATCHED): each
    request's result, or the WireError (or other Exception) that request alone raised."""
    return await BATCHED[name](service, raws)


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
        raise _ingest_error(e) from None
    return {"stored": True}


STORED = {"stored": True}


def _ingest_error(e: Exception) -> Exception:
    """What an ingest answers for an event that was not stored."""
    if isinstance(e, InvalidEvent):  # msgspec.Raw left the payload's UTF-8 and depth unchecked
        return InvalidParams(f"Invalid params: {e} - at `{e.path}`", data={"path": e.path})
    return e


async def ingest_batch(service: ServiceAPI, raws: list[msgspec.Raw]) -> list[Any]:
    """`ingest` for every request of a batch: one group commit; each answer as `ingest` gives it."""
    if service.stopping:
        return [ShuttingDown() for _ in raws]
    answers: list[Any] = [None] * len(raws)
    decoded: list[IngestParams] = []
    positions: list[int] = []
    for i, raw in enumerate(raws):
        try:
            decoded.append(decode_params(raw, IngestParams))
        except InvalidParams as e:
            answers[i] = detached(e)
            continue
        positions.append(i)
    for i, answer in zip(positions, await ingest_decoded(service, decoded), strict=True):
        answers[i] = answer
    return answers


async def ingest_decoded(service: ServiceAPI, params: list[IngestParams]) -> list[Any]:
    """ingest_batch() of params already decoded (protocol.decode_ingest_batch): one group
    commit; each answer as `ingest` gives it."""
    if service.stopping:
        return [ShuttingDown() for _ in params]
    outcomes = await service.ingest_many(
        [(p.source, bytes(p.payload), p.received_at) for p in params]
    )
    return [STORED if outcome is None else _ingest_error(outcome) for outcome in outcomes]


BATCHED["ingest"] = ingest_batch


@method("statusline", StatuslineParams)
async def statusline(service: ServiceAPI, params: StatuslineParams) -> dict[str, Any]:
    """`ingest` as a notification, answered with what `agentd statusline` prints beside the
    sample: one round trip instead of the command opening the database itself."""
    if service.stopping:
        raise ShuttingDown()
    try:
        figures = await service.statusline(
            params.source, bytes(params.payload), params.received_at, params.day_start
        )
    except InvalidEvent as e:
        raise _ingest_error(e) from None
    return {"accepted": True, **figures}


@method("status")
async def status(service: ServiceAPI, params: NoParams) -> dict[str, Any]:
    return await service.status()


@method("prune", PruneParams)
async def prune(service: ServiceAPI, params: PruneParams) -> dict[str, Any]:
    return await service.prune(params.before)


@method("vacuum")
async def vacuum(service: ServiceAPI, params: NoParams) -> dict[str, Any]:
    return await service.vacuum()


@method("reprice", RepriceParams)
async def reprice(service: ServiceAPI, params: RepriceParams) -> dict[str, Any]:
    if service.stopping:
        raise ShuttingDown()
    selection = Selection(since=params.since, source=params.source, model=params.model)
    gone = client_gone.get()
    try:
        return await service.reprice(selection, lambda: service.stopping or gone())
    except RepriceBusy:
        raise RepriceRunning(
            "a reprice is already running: wait for it to finish (one at a time)"
        ) from None
    except RepriceStopped as e:  # between batches: those committed stay, rollups with them
        why = "the daemon is stopping" if service.stopping else "its client left"
        raise ShuttingDown(
            f"{why}: the reprice stopped after {e.tally.examined} messages"
            " priced; what was committed stays: run `agentd reprice` again to finish",
            data=e.tally.result(),
        ) from None
    except PriceTableError as e:
        # The daemon loads the table once: a fixed install needs a restart to be seen.
        raise PricesUnavailable(
            f"nothing was re-priced: {e} (the daemon's table: once fixed, restart the daemon:"
            " agentd stop && agentd start)"
        ) from None


@method("shutdown")
async def shutdown(service: ServiceAPI, params: NoParams) -> dict[str, Any]:
    service.request_stop()
    return {"stopping": True}
