"""The normalizer <-> store contract: the rows one hands the other, and how they merge.

A normalizer (normalizers/) turns an agent's raw payload into partial rows for the typed tables; the
store (db/store.py) upserts them. Both sides rely on these rules:

- every row carries its `id`, derived from the agent's own identifiers, so a replayed event
  lands on the same row;
- a column left out or None never blanks what an earlier event filled;
- per column, MERGE_POLICY: `created_at` / `started_at` keep the earliest value, `updated_at` /
  `ended_at` (and `redactions`) the latest, every other column takes the newest non-null value;
- a session's `status`, `outcome` and `last_error` follow the events' own time, not arrival
  order: each is taken only from an event at least as new as the one that set it (its `*_at`
  column, which ingest.py fills with the event's time when a normalizer leaves it out), so a
  spooled `busy` drained after a live `idle` does not win;
- session counters and token sums are not set by normalizers: the store recomputes them from
  `tools` and `messages` rows after each batch, so replays never double-count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["TYPED_TABLES", "MERGE_POLICY", "TIMED_COLUMNS", "Row", "Normalized", "Context"]

TYPED_TABLES = (
    "sessions",
    "messages",
    "tools",
    "file_operations",
    "session_errors",
    "compaction_events",
)

# Columns whose merge is not "newest non-null value wins".
MERGE_POLICY = {
    "created_at": "min",
    "started_at": "min",
    "updated_at": "max",
    "ended_at": "max",
    "redactions": "max",
    # "newest by T": the value of the row whose time column T is newest (ties: the later arrival).
    "status": "newest by status_at",
    "status_at": "max",
    "outcome": "newest by outcome_at",
    "outcome_at": "max",
    "last_error": "newest by last_error_at",
    "last_error_at": "max",
}
# The time column each "newest by" column goes with (ingest.py fills it in).
TIMED_COLUMNS = {"status": "status_at", "outcome": "outcome_at", "last_error": "last_error_at"}


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
