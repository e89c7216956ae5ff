"""Session totals from `messages`, kept per session by triggers instead of summed per commit.

The store refreshes a session's totals (message_count, prompt_count, the token columns, cost,
tool_call_count) at each commit that touches it. Summing the session's messages each time cost
a pass over all of them: thousands for a long session, followed turn by turn. Instead,
`session_message_totals` holds, per session, what that sum needs, moved by triggers in the same
transaction as the message rows (insert, upsert, delete: NEW in, OLD out, so a replay moves
nothing), and the refresh reads one row. tool_call_count reads `tool_session_totals`
(db/query_rollup.py), which counts a session's tools the same way.

Exactly what the sum gave, or the sum itself: the triggers add only integers, and count the
messages whose values integer addition cannot reproduce bit for bit (a non-null `cost`: a float
sum depends on its order; a token value stored as a float or text). For a session with such a
message, or a sum that left int64 (SQLite's sum() fails there), the store runs REFRESH_SCAN,
the original sum over the messages. tests/test_session_totals.py compares both against that
sum after random writes, replays, moves and prunes.
"""

from __future__ import annotations

__all__ = ["TOKENS", "MIGRATION_SQL", "REFRESH_FAST", "REFRESH_SCAN"]

TOKENS = (
    "prompt_tokens",
    "completion_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)

# A message the integer sums cannot stand for: then the session is summed from its messages.
_INEXACT = " OR ".join(
    [f"({{x}}.{c} IS NOT NULL AND typeof({{x}}.{c}) != 'integer')" for c in TOKENS]
    + ["{x}.cost IS NOT NULL"]
)


def _add(x: str, source: str = "") -> str:
    """Put message row x (NEW / OLD, or each row of `source`) into its session's totals."""
    values = ", ".join(
        f"CASE WHEN typeof({x}.{c}) = 'integer' THEN {x}.{c} ELSE 0 END, {x}.{c} IS NOT NULL"
        for c in TOKENS
    )
    sets = ", ".join(f"{c} = {c} + excluded.{c}, {c}_n = {c}_n + excluded.{c}_n" for c in TOKENS)
    return (
        f"INSERT INTO session_message_totals SELECT {x}.session_id, 1, {x}.role IS 'user', "
        f"{values}, {_INEXACT.format(x=x)}{source}\n"
        f"    WHERE {x}.session_id IS NOT NULL\n"
        f"    ON CONFLICT (session_id) DO UPDATE SET messages = messages + 1,"
        f" prompts = prompts + excluded.prompts, {sets}, inexact = inexact + excluded.inexact;\n"
    )


def _remove(x: str) -> str:
    """Take message row x out of its session's totals; a session left with none loses its row."""
    sets = ", ".join(
        f"{c} = {c} - CASE WHEN typeof({x}.{c}) = 'integer' THEN {x}.{c} ELSE 0 END,"
        f" {c}_n = {c}_n - ({x}.{c} IS NOT NULL)"
        for c in TOKENS
    )
    return (
        f"UPDATE session_message_totals SET messages = messages - 1,"
        f" prompts = prompts - ({x}.role IS 'user'), {sets},"
        f" inexact = inexact - ({_INEXACT.format(x=x)})\n"
        f"    WHERE session_id = {x}.session_id;\n"
        f"DELETE FROM session_message_totals WHERE session_id = {x}.session_id AND messages = 0;\n"
    )


_COUNTED = ("session_id", "role", *TOKENS, "cost")
_CHANGED = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in _COUNTED)

MIGRATION_SQL = (
    """
-- Per session, what its totals are summed from (db/session_totals.py): messages, prompts (role
-- user), per token column the sum of its integer values and how many are non-null, and how many
-- messages the integer sums cannot stand for (a cost, a non-integer token value).
CREATE TABLE session_message_totals (
    session_id TEXT PRIMARY KEY,
    messages INTEGER NOT NULL,
    prompts INTEGER NOT NULL,
    """
    # A sum has no declared type: one that left int64 became a REAL (integer addition does that
    # where sum() fails), and must stay one, so that its session is summed from its messages until
    # the row empties. An INTEGER column would turn a REAL brought back into range into an integer
    # that is off by the rounding (2^62 + 1 read as 2^62).
    + ",\n    ".join(f"{c} NOT NULL, {c}_n INTEGER NOT NULL" for c in TOKENS)
    + """,
    inexact INTEGER NOT NULL
) WITHOUT ROWID;
-- Filled a message at a time by the triggers' own statement: the same arithmetic, so a sum that
-- leaves int64 becomes a REAL here as it would there (a sum() would fail the migration).
"""
    + _add("m", "\n    FROM messages m")
    + f"CREATE TRIGGER session_totals_insert AFTER INSERT ON messages BEGIN\n    {_add('NEW')}END;\n"
    f"CREATE TRIGGER session_totals_update AFTER UPDATE OF {', '.join(_COUNTED)} ON messages\n"
    f"WHEN {_CHANGED} BEGIN\n    {_add('NEW')}    {_remove('OLD')}END;\n"
    f"CREATE TRIGGER session_totals_delete AFTER DELETE ON messages BEGIN\n    {_remove('OLD')}END;\n"
)

# The sums a session's totals are taken from cannot stand for its messages: sum them instead.
_NEEDS_SCAN = (
    "EXISTS (SELECT 1 FROM session_message_totals t WHERE t.session_id = sessions.id AND (t.inexact"
    + "".join(f" OR typeof(t.{c}) != 'integer'" for c in TOKENS)
    + "))"
)

# A count or sum with nothing to count keeps what the column had (an import may have filled it).
# tool_session_totals has no row for a session without tools, session_message_totals none for
# one without messages: the LEFT JOINs give NULL then, as count/sum over no rows would.
REFRESH_FAST = (
    """
UPDATE sessions SET
    tool_call_count = coalesce(
        (SELECT nullif(calls, 0) FROM tool_session_totals WHERE session_id = sessions.id),
        tool_call_count, 0),
    (message_count, prompt_count, """
    + ", ".join(TOKENS)
    + """) = (
        SELECT coalesce(nullif(t.messages, 0), sessions.message_count),
            coalesce(nullif(t.prompts, 0), sessions.prompt_count),
            """
    + ",\n            ".join(
        f"coalesce(CASE WHEN t.{c}_n > 0 THEN t.{c} END, sessions.{c})" for c in TOKENS
    )
    + f"""
        FROM (SELECT 1) LEFT JOIN session_message_totals t ON t.session_id = sessions.id)
WHERE id = ? AND NOT {_NEEDS_SCAN}
"""
)

# The original refresh: one pass over the session's messages (the covering index of migration
# 0014). Run only where REFRESH_FAST is not.
REFRESH_SCAN = f"""
UPDATE sessions SET
    tool_call_count = coalesce(
        (SELECT nullif(count(*), 0) FROM tools WHERE tools.session_id = sessions.id), tool_call_count, 0),
    (message_count, prompt_count, prompt_tokens, completion_tokens, cache_read_tokens,
     cache_write_tokens, reasoning_tokens, cost) = (
        SELECT coalesce(nullif(count(*), 0), sessions.message_count),
            coalesce(nullif(sum(m.role = 'user'), 0), sessions.prompt_count),
            coalesce(sum(m.prompt_tokens), sessions.prompt_tokens),
            coalesce(sum(m.completion_tokens), sessions.completion_tokens),
            coalesce(sum(m.cache_read_tokens), sessions.cache_read_tokens),
            coalesce(sum(m.cache_write_tokens), sessions.cache_write_tokens),
            coalesce(sum(m.reasoning_tokens), sessions.reasoning_tokens),
            coalesce(sum(m.cost), sessions.cost)
        FROM messages m WHERE m.session_id = sessions.id)
WHERE id = ? AND {_NEEDS_SCAN}
"""
