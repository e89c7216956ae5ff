"""The file rollup (migration 0013): per-file aggregates of `file_operations` that `agentd query
hot-files` reads instead of the operations themselves, kept by triggers in the writer's
transaction like db/query_rollup.py's.

Tables (docs/schema.md). Hours and days are as in query_rollup.py (UTC epoch hour and day
numbers, -1 for a row without created_at); a NULL session_id or project_path is stored as ''.
An edit is an operation of type created, edited, deleted or moved, on a known file_path.
- `file_edit_totals` (file_path) -> edits over all time, and `file_source_edits` (source,
  file_path) -> edits: each indexed by edits, so that the most edited files over all time are
  the first entries of an index (`--since all`, with or without `--source`).
- `file_edits_project` (project_path, file_path, source) -> edits over all time, for
  `--project`: the files of one project are a range of its key.
- `file_edits_daily`, `file_edits_hourly` (day | hour, file_path, source, project_path) ->
  edits: a window's most edited files (whole days, then the hours at its edges).
- `file_stats_hourly` (file_path, hour, session_id, source) -> ops, reads, lines_added,
  added_count, lines_removed, removed_count, last_edited_at: every operation on a file (reads
  too), for the other columns of the files shown; `added_count` and `removed_count` count the
  operations that report lines, so that a sum over none stays NULL as in SQL.

Exact under replay, update and delete as query_rollup.py's: a sum takes the old row out and
the new one in, a group that drops to no operation is deleted. `last_edited_at`, a maximum, is
recomputed from the group's operations when the operation holding it changes or goes. The
project-keyed tables follow the session's project.
"""

from __future__ import annotations

from agentd.db.rollup import delta, key_match, session_project_triggers

__all__ = ["MIGRATION_SQL"]

_HOUR = "coalesce(CAST({x}.created_at / 3600000 AS INTEGER), -1)"
_DAY = "coalesce(CAST({x}.created_at / 86400000 AS INTEGER), -1)"
_PROJECT = "coalesce((SELECT s.project_path FROM sessions s WHERE s.id = {x}.session_id), '')"
_SESSION = "coalesce({x}.session_id, '')"
_EDIT = (
    "{x}.file_path IS NOT NULL AND {x}.operation_type IN ('created', 'edited', 'deleted', 'moved')"
)
_OP = "{x}.file_path IS NOT NULL"
_STATS = "file_stats_hourly"
_STATS_KEYS = {"file_path": "{x}.file_path", "hour": _HOUR, "session_id": _SESSION,
               "source": "{x}.source"}  # fmt: skip


def _tables() -> list[tuple[str, dict[str, str], dict[str, str], str, bool]]:
    """(table, key column -> expression, summed column -> expression, row condition, keyed by
    project); `{x}` is the row (NEW, OLD, or t)."""
    path, source = "{x}.file_path", "{x}.source"
    return [
        ("file_edit_totals", {"file_path": path}, {"edits": "1"}, _EDIT, False),
        ("file_source_edits", {"source": source, "file_path": path}, {"edits": "1"}, _EDIT, False),
        ("file_edits_project", {"project_path": _PROJECT, "file_path": path, "source": source},
         {"edits": "1"}, _EDIT, True),
        ("file_edits_daily",
         {"day": _DAY, "file_path": path, "source": source, "project_path": _PROJECT},
         {"edits": "1"}, _EDIT, True),
        ("file_edits_hourly",
         {"hour": _HOUR, "file_path": path, "source": source, "project_path": _PROJECT},
         {"edits": "1"}, _EDIT, True),
        (_STATS, _STATS_KEYS,
         {"ops": "1", "reads": "{x}.operation_type IS 'read'",
          "lines_added": "coalesce({x}.lines_added, 0)",
          "added_count": "{x}.lines_added IS NOT NULL",
          "lines_removed": "coalesce({x}.lines_removed, 0)",
          "removed_count": "{x}.lines_removed IS NOT NULL"}, _OP, False),
    ]  # fmt: skip


def _change(x: str, sign: str) -> list[str]:
    """Statements adding (sign '+') or taking out ('-') the file operation x (NEW or OLD)."""
    out = []
    for table, keys, sums, when, _ in _tables():
        extra = None
        if table == _STATS and sign == "+":  # the latest edit: a maximum that ignores NULLs
            extra = (
                "last_edited_at",
                f"CASE WHEN {_EDIT.format(x=x)} THEN {x}.created_at END",
                "last_edited_at = coalesce(max(last_edited_at, excluded.last_edited_at), "
                "last_edited_at, excluded.last_edited_at)",
            )
        out += delta(table, keys, sums, x, sign, when.format(x=x), extra)
        if table == _STATS and sign == "-":
            out.append(_recompute_last(x, key_match(keys, x)))
    return out


def _recompute_last(x: str, match: str) -> str:
    """The group of x's latest edit, recomputed from its operations when x held it (x is gone
    or changed by now): through file_operations_query_path, the file's edits only."""
    return (
        f"UPDATE {_STATS} SET last_edited_at = (SELECT max(f.created_at) FROM file_operations f "
        f"WHERE f.file_path = {x}.file_path "
        "AND f.operation_type IN ('created', 'edited', 'deleted', 'moved') "
        f"AND coalesce(f.session_id, '') = {_SESSION.format(x=x)} AND f.source = {x}.source "
        f"AND f.created_at IS NOT NULL AND {_HOUR.format(x='f')} = {_HOUR.format(x=x)}) "
        f"WHERE {x}.file_path IS NOT NULL AND last_edited_at = {x}.created_at AND {match};"
    )


def _move(session: str, old: str, new: str) -> list[str]:
    """Move one session's edits from project `old` to `new` in the project-keyed tables."""
    out = []
    for table, keys, sums, when, by_project in _tables():
        if not by_project:
            continue
        other = [k for k in keys if k != "project_path"]
        exprs = [keys[k].format(x="t") for k in other]
        groups = ", ".join(str(i + 1) for i in range(len(other)))
        for project, s in ((new, ""), (old, "-")):
            out.append(
                f"INSERT INTO {table} ({', '.join([*other, 'project_path', *sums])}) "
                f"SELECT {', '.join(exprs)}, {project}, {s}count(*) FROM file_operations t "
                f"WHERE t.session_id = {session} AND {when.format(x='t')} GROUP BY {groups} "
                f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET edits = edits + excluded.edits;"
            )
        out.append(
            f"DELETE FROM {table} WHERE edits = 0 AND ({', '.join(other)}, project_path) IN "
            f"(SELECT {', '.join(exprs)}, {old} FROM file_operations t "
            f"WHERE t.session_id = {session} AND {when.format(x='t')});"
        )
    return out


def _create() -> list[str]:
    out = []
    for table, keys, sums, _, _ in _tables():
        columns = [f"{k} {'INTEGER' if k in ('hour', 'day') else 'TEXT'} NOT NULL" for k in keys]
        columns += [f"{c} INTEGER NOT NULL" for c in sums]
        if table == _STATS:
            columns.append("last_edited_at INTEGER")
        out.append(
            f"CREATE TABLE {table} (\n    "
            + ",\n    ".join([*columns, f"PRIMARY KEY ({', '.join(keys)})"])
            + "\n) WITHOUT ROWID;"
        )
    return out


def _backfill() -> list[str]:
    out = []
    for table, keys, sums, when, by_project in _tables():
        exprs = [
            "coalesce(s.project_path, '')" if k == "project_path" else e.format(x="t")
            for k, e in keys.items()
        ]  # one join instead of a lookup per row
        join = " LEFT JOIN sessions s ON s.id = t.session_id" if by_project else ""
        columns = [*keys, *sums]
        summed = [f"sum({e.format(x='t')})" for e in sums.values()]
        if table == _STATS:
            columns.append("last_edited_at")
            summed.append(f"max(CASE WHEN {_EDIT.format(x='t')} THEN t.created_at END)")
        groups = ", ".join(str(i + 1) for i in range(len(keys)))
        out.append(
            f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(exprs)}, "
            f"{', '.join(summed)} FROM file_operations t{join} WHERE {when.format(x='t')} "
            f"GROUP BY {groups};"
        )
    return out


_COUNTED = ("session_id", "source", "file_path", "operation_type", "lines_added",
            "lines_removed", "created_at")  # fmt: skip
_STEP = "\n    "

MIGRATION_SQL = f"""
-- The file rollup (db/file_rollup.py, docs/schema.md): what `agentd query hot-files` reads
-- instead of the file operations. Triggers keep it in the writer's transaction; the statements
-- after them fill it from the rows already stored.
{chr(10).join(_create())}
-- The most edited files over all time, and of one agent: the first entries of these.
CREATE INDEX file_edit_totals_edits ON file_edit_totals (edits DESC, file_path);
CREATE INDEX file_source_edits_edits ON file_source_edits (source, edits DESC, file_path);

CREATE TRIGGER file_operations_file_rollup_insert AFTER INSERT ON file_operations
WHEN NEW.file_path IS NOT NULL BEGIN
    {_STEP.join(_change("NEW", "+"))}
END;
CREATE TRIGGER file_operations_file_rollup_delete AFTER DELETE ON file_operations
WHEN OLD.file_path IS NOT NULL BEGIN
    {_STEP.join(_change("OLD", "-"))}
END;
-- The store's upsert sets every column: only a change of a counted one does anything, so a
-- replay is free. NEW goes in before OLD comes out, so that a shared group never empties.
CREATE TRIGGER file_operations_file_rollup_update
AFTER UPDATE OF {", ".join(_COUNTED)} ON file_operations
WHEN {" OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in _COUNTED)} BEGIN
    {_STEP.join(_change("NEW", "+") + _change("OLD", "-"))}
END;
{session_project_triggers("sessions_file_rollup", lambda *a: _STEP.join(_move(*a)))}

{chr(10).join(_backfill())}
"""
