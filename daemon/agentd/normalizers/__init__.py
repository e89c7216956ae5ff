"""Normalizers: the registry (one `normalize(payload, ctx) -> Normalized` per source) and dispatch.

One module per source registers its function in NORMALIZERS. A normalizer is pure apart from reading
files the payload names (a transcript, say); it never touches the database. What it returns, and
how the store merges it, is the contract in rows.py.

An unknown source, an unknown event, or a normalizer that raises: the event is still stored raw in
`events` (with whatever kind and session id the generic path finds) and nothing is rejected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from agentd.rows import Context, Normalized

__all__ = ["NORMALIZERS", "Normalizer", "normalize", "register"]

log = logging.getLogger(__name__)


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


def _load_agents_normalizers() -> None:
    # Imported for their register() side effect: the modules agents.py names for each agent.
    import importlib

    from agentd.agents import AGENTS

    for agent in AGENTS.values():
        for module in agent.normalizers:
            importlib.import_module(module)


_load_agents_normalizers()
