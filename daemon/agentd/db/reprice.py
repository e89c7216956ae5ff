"""Pricing stored messages again (`agentd reprice`): the ingest's pricing rule over `messages`.

A message is priced once, when its event is prepared (pricing.price_rows). Messages stored before
agentd priced them (migration 0011 left them without `cost_source`) and messages priced with an
older price table keep what they got; this prices them again with the table loaded now, by the
same rule and the same code (pricing.message_cost), from the columns as they are stored.

Work goes in batches of at most BATCH selected rows in rowid order, each one short transaction
(select, price, update the rows whose `computed_cost` or `cost_source` changes), so the daemon's
writer serves live ingests between them. A batch also reads at most SPAN rowids: a narrow selection
(`--model` of few messages) would otherwise scan the whole table for its BATCH rows while holding
the writer; so a transaction stays short whatever the selection, and the rowids are still each
visited once, up to the largest there is. Only those two columns are written, by an UPDATE: the triggers that keep
`usage_hourly`, `sessions.computed_cost` / `unpriced_messages` and the push's change log take the
old values out and put the new ones in, as they do when an ingest prices a message again. (Where a
session stored afresh has NULL, never having had an unknown message or a computed cost, those
session triggers leave 0 once a message leaves that state: 0 is kept, not put back to NULL, since
the push never sends a NULL over a value and the team's server would keep the old count.)
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from agentd.pricing.table import TOKEN_COLUMNS, message_cost

__all__ = [
    "BATCH", "SPAN", "PRICED_COLUMNS", "RepriceBusy", "RepriceStopped", "Selection", "Tally",
    "reprice_batch",
]  # fmt: skip

# Rows per transaction: ~10-15 ms of pricing (~18 us a message) and writing on this machine, about
# what a live ingest waits for the writer meanwhile (docs/usage.md has the figures).
BATCH = 500
# Rowids one transaction reads at most: a selection matching none of them scans these in ~1 ms
# (bench/reprice's `narrow` figures), under a full batch's pricing.
SPAN = 8192

PRICED_COLUMNS = (
    "source",
    "model",
    "provider",
    "speed",
    "cost",
    "created_at",
    "completed_at",
    *TOKEN_COLUMNS,
)
_SELECT = (
    f"SELECT rowid, computed_cost, cost_source, {', '.join(PRICED_COLUMNS)} FROM messages"
    " WHERE rowid > :after AND rowid <= :end{where} ORDER BY rowid LIMIT :limit"
)
_UPDATE = "UPDATE messages SET computed_cost = ?, cost_source = ? WHERE rowid = ?"


class RepriceBusy(Exception):
    """Another reprice runs on this store: one at a time."""


class RepriceStopped(Exception):
    """A reprice stopped between batches (the daemon stops, its client left): the batches
    committed stay, with every rollup over them; `tally` counts those."""

    def __init__(self, tally: Tally) -> None:
        super().__init__(f"stopped after {tally.examined} messages priced")
        self.tally = tally


@dataclass(frozen=True, slots=True)
class Selection:
    """Which messages: created at or after `since` (epoch ms), of `source`, of `model`."""

    since: int | None = None
    source: str | None = None
    model: str | None = None

    def sql(self) -> str:
        where = ""
        if self.since is not None:
            where += " AND created_at >= :since"
        if self.source is not None:
            where += " AND source = :source"
        if self.model is not None:
            where += " AND model = :model"
        return _SELECT.format(where=where)


@dataclass(slots=True)
class Tally:
    """What a run found, in total and per model: messages priced (examined), how many got a
    different cost (repriced), how many stay unknown, and how the cost reports use changed."""

    examined: int = 0
    repriced: int = 0
    unknown: int = 0
    cost_change: float = 0.0
    by_model: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, model: str, old: tuple[Any, ...], new: tuple[Any, ...], cost: Any) -> None:
        counts = self.by_model.get(model)
        if counts is None:
            counts = self.by_model[model] = {
                "examined": 0, "repriced": 0, "unknown": 0, "cost_change": 0.0,
            }  # fmt: skip
        changed = old != new
        change = _used_cost(new, cost) - _used_cost(old, cost) if changed else 0.0
        unknown = new[1] == "unknown"
        self.examined += 1
        self.repriced += changed
        self.unknown += unknown
        self.cost_change += change
        counts["examined"] += 1
        counts["repriced"] += changed
        counts["unknown"] += unknown
        counts["cost_change"] += change

    def result(self) -> dict[str, Any]:
        return {
            "examined": self.examined,
            "repriced": self.repriced,
            "unknown": self.unknown,
            "cost_change": self.cost_change,
            "by_model": self.by_model,
        }


def _used_cost(priced: tuple[Any, ...], cost: Any) -> float:
    """The cost the reports use for a message (migrations.py `_COST`): 0 when unknown."""
    computed, source = priced
    if source == "agent":
        return float(cost or 0)
    return float(computed or 0) if source == "computed" else 0.0


def reprice_batch(
    db: sqlite3.Connection,
    after: int,
    selection: Selection,
    tally: Tally,
    limit: int = BATCH,
    span: int = SPAN,
) -> tuple[int, bool]:
    """Price the next `limit` selected messages after rowid `after`, among the next `span`
    rowids, in one transaction, counting them in `tally`: (the rowid read up to, whether that is
    the largest there is)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        end = after + span
        params = {"after": after, "end": end, "limit": limit, **_named(selection)}
        rows = db.execute(selection.sql(), params).fetchall()
        changes = []
        for rowid, computed_cost, cost_source, *stored in rows:
            values = dict(zip(PRICED_COLUMNS, stored, strict=True))
            priced = message_cost(values)
            if priced is None:  # no tokens and no agent cost: the ingest leaves it alone too
                continue
            old = (computed_cost, cost_source)
            tally.add(values["model"] or "", old, priced, values["cost"])
            if priced != old:
                changes.append((*priced, rowid))
        if changes:
            db.executemany(_UPDATE, changes)
        # Read again each batch: messages stored meanwhile are priced too, as before.
        (top,) = db.execute("SELECT coalesce(max(rowid), 0) FROM messages").fetchone()
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    reached = rows[-1][0] if len(rows) == limit else end
    return reached, reached >= top


def _named(selection: Selection) -> dict[str, Any]:
    return {"since": selection.since, "source": selection.source, "model": selection.model}
