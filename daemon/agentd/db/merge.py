"""The merge rules as SQL: the `SET` clauses of an upsert that merges a row into a stored one per
rows.MERGE_POLICY. One statement of the rules for every writer: the local store (SQLite) and the
push (PostgreSQL). fold_rows() is the same rules in Python, to merge a batch's rows of one id
before the upsert. Imports only rows.py: the push process loads no store or normalizer for it.
"""

from __future__ import annotations

from functools import cache
from typing import Any, NamedTuple

from agentd.rows import MERGE_POLICY

__all__ = ["merge_assignments", "fold_rows"]


def merge_assignments(
    columns: list[str],
    *,
    skip: tuple[str, ...] = ("id",),
    old: str = "",
    least: str = "min",
    greatest: str = "max",
) -> list[str]:
    """The `SET` clauses of an upsert that merges per MERGE_POLICY: the one statement of the merge
    rules, for SQLite here and for PostgreSQL in the push (`old="t."`, least/greatest).

    `excluded.<col>` is the incoming row, `<old><col>` the stored one. All right-hand sides see the
    stored row, so a time column is compared before it moves.
    """
    updates = []
    for col in columns:
        if col in skip:
            continue
        stored = f"{old}{col}"
        policy = MERGE_POLICY.get(col)
        if policy is not None and policy.startswith("newest by ") and policy[10:] in columns:
            # Taken only from a row at least as new; a row without the time (none of ours) wins
            # as before.
            at = policy[10:]
            newer = f"(excluded.{at} IS NULL OR {old}{at} IS NULL OR excluded.{at} >= {old}{at})"
            updates.append(
                f"{col} = CASE WHEN excluded.{col} IS NOT NULL AND {newer}"
                f" THEN excluded.{col} ELSE {stored} END"
            )
        elif policy in ("min", "max"):
            # SQLite's scalar min()/max() return NULL if any argument is NULL: coalesce both ways.
            fn = least if policy == "min" else greatest
            updates.append(
                f"{col} = {fn}(coalesce(excluded.{col}, {stored}), coalesce({stored}, excluded.{col}))"
            )
        else:
            updates.append(f"{col} = coalesce(excluded.{col}, {stored})")
    return updates


class _Plan(NamedTuple):
    rules: tuple[
        tuple[int, str, int], ...
    ]  # (column index, "by" | "min" | "max" | "new", time index)
    compared: tuple[int, ...]  # columns whose values are ordered
    timed: tuple[tuple[int, int], ...]  # ("newest by" column, its time column)


@cache
def _fold_plan(columns: tuple[str, ...]) -> _Plan:
    index = {c: i for i, c in enumerate(columns)}
    rules, compared, timed = [], [], []
    for i, col in enumerate(columns):
        if col == "id":
            continue
        policy = MERGE_POLICY.get(col)
        if policy is not None and policy.startswith("newest by ") and policy[10:] in index:
            at = index[policy[10:]]
            rules.append((i, "by", at))
            timed.append((i, at))
            compared.append(at)
        elif policy in ("min", "max"):
            rules.append((i, policy, -1))
            compared.append(i)
        else:
            rules.append((i, "new", -1))
    return _Plan(tuple(rules), tuple(sorted(set(compared))), tuple(timed))


def _foldable(plan: _Plan, rows: list[tuple[Any, ...]], required: tuple[int, ...]) -> bool:
    return all(
        all(row[i] is not None for i in required)
        and all(row[i] is None or type(row[i]) is int for i in plan.compared)
        and all((row[v] is None) == (row[t] is None) for v, t in plan.timed)
        for row in rows
    )


def fold_rows(
    columns: list[str], rows: list[tuple[Any, ...]], not_null: tuple[str, ...] = ()
) -> list[tuple[Any, ...]]:
    """Rows of one table (bound parameters in `columns` order, `id` first) with each id's rows
    merged into one, where upserting the one gives exactly what upserting them in turn gives.

    The merge of two rows is merge_assignments' in Python: in turn, from an id's first row, it
    is the upserts' own result. Applied to a stored row at once it is the same (each rule is
    associative) given, for that id's rows: the compared columns (min, max, the "newest by"
    times) are integers or NULL, as SQLite and Python then order alike; and a "newest by" column
    and its time are both NULL or both set (ingest.py sets the time of every value it carries),
    without which a row with only a newer time would let an older value win against the stored
    row. And every row has the `not_null` columns (the table's NOT NULL ones): one without
    would fail its upsert (and the batch) alone, not once merged. An id whose rows break any of
    these keeps them all, in order. First-seen order of the ids.
    """
    assert columns[0] == "id"
    by_id: dict[Any, list[tuple[Any, ...]]] = {}
    for row in rows:
        by_id.setdefault(row[0], []).append(row)
    if len(by_id) == len(rows):
        return rows
    plan = _fold_plan(tuple(columns))
    required = tuple(columns.index(c) for c in not_null)
    out: list[tuple[Any, ...]] = []
    for same in by_id.values():
        if len(same) == 1 or not _foldable(plan, same, required):
            out.extend(same)
            continue
        merged = list(same[0])
        for row in same[1:]:
            stored = tuple(merged)  # every rule reads the stored row, as the SQL's do
            for i, rule, at in plan.rules:
                new, old = row[i], stored[i]
                if rule == "by":
                    newer = row[at] is None or stored[at] is None or row[at] >= stored[at]
                    merged[i] = new if new is not None and newer else old
                elif new is None or old is None:
                    merged[i] = old if new is None else new
                elif rule == "min":
                    merged[i] = min(old, new)
                elif rule == "max":
                    merged[i] = max(old, new)
                else:
                    merged[i] = new
        out.append(tuple(merged))
    return out
