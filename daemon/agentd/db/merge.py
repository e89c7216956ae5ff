"""The merge rules as SQL: the `SET` clauses of an upsert that merges a row into a stored one per
rows.MERGE_POLICY. One statement of the rules for every writer: the local store (SQLite) and the
push (PostgreSQL). Imports only rows.py: the push process loads no store or normalizer for it.
"""

from __future__ import annotations

from agentd.rows import MERGE_POLICY

__all__ = ["merge_assignments"]


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
