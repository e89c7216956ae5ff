"""Normalizers: an agent's raw payload -> partial rows for the typed tables.

One module per source registers a `normalize(payload, ctx) -> Normalized` function in NORMALIZERS.
A normalizer is pure apart from reading files the payload names (a transcript, say); it never
touches the database. The store merges the rows it returns (see db/store.py, MERGE_POLICY):

- every row carries its `id`, derived from the agent's own identifiers, so a replayed event
  lands on the same row;
- a column left out or None never blanks what an earlier event filled;
- `created_at` / `started_at` keep the earliest value, `updated_at` / `ended_at` the latest, every
  other column takes the newest non-null value;
- session counters and token sums are not set by normalizers: the store recomputes them from
  `tools` and `messages` rows after each batch, so replays never double-count.

An unknown source, an unknown event, or a normalizer that raises: the event is still stored raw in
`events` (with whatever kind and session id the generic path finds) and nothing is rejected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Row", "Normalized", "Context", "NORMALIZERS", "normalize", "TYPED_TABLES"]

log = logging.getLogger(__name__)

TYPED_TABLES = (
    "sessions",
    "messages",
    "tools",
    "file_operations",
    "session_errors",
    "compaction_events",
)


@dataclass(slots=True)
class Row:
    table: str  # one of TYPED_TABLES
    values: dict[str, Any]  # column -> value; must include "id"


@dataclass(slots=True)
class Normalized:
    kind: str  # the event's own name: hook_event_name, bus event type, callback name
    session_id: str | None
    rows: list[Row] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Context:
    source: str
    event_id: (
        str  # deterministic id of the raw event (derive row ids from it when the agent gives none)
    )
    received_at: int  # epoch ms when the shim saw the event
    output_limit_bytes: int  # tool output longer than this is truncated before storing


Normalizer = Callable[[Any, Context], Normalized]

# Filled by the source modules at import time (see register()).
NORMALIZERS: dict[str, Normalizer] = {}


def register(source: str) -> Callable[[Normalizer], Normalizer]:
    def decorate(fn: Normalizer) -> Normalizer:
        if source in NORMALIZERS:
            raise ValueError(f"a normalizer for {source!r} is already registered")
        NORMALIZERS[source] = fn
        return fn

    return decorate


def _generic(payload: Any) -> Normalized:
    """Best effort for a source we do not know: a kind and a session id, no typed rows."""
    if not isinstance(payload, dict):
        return Normalized(kind="unknown", session_id=None)
    kind = payload.get("hook_event_name") or payload.get("type") or payload.get("kind")
    session = payload.get("session_id") or payload.get("sessionID") or payload.get("sessionId")
    return Normalized(
        kind=kind if isinstance(kind, str) else "unknown",
        session_id=session if isinstance(session, str) else None,
    )


def normalize(payload: Any, ctx: Context) -> Normalized:
    """Dispatch to the source's normalizer; fall back to the generic path, never raise."""
    normalizer = NORMALIZERS.get(ctx.source)
    if normalizer is None:
        return _generic(payload)
    try:
        return normalizer(payload, ctx)
    except Exception:
        log.exception("normalizer %s failed on event %s; stored raw only", ctx.source, ctx.event_id)
        return _generic(payload)


def _load_builtin_sources() -> None:
    # Imported for their register() side effect. Each is its own module: normalizers/<name>.py.
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


_load_builtin_sources()
