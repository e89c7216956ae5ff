"""`agentd import opencode`: OpenCode's database -> the plugin's own event shapes (source `opencode`).

OpenCode (≥ 1.2) keeps sessions, messages and parts in SQLite (`~/.local/share/opencode/opencode.db`,
or `opencode-<channel>.db` for other release channels; OpenCode's storage, tests/test_import_opencode.py). The
importer opens it read-only and turns each row into the bus event the plugin would have sent for
it, so that the live normalizer (normalizers/opencode.py) makes the same rows under the same ids:

| row | event |
|---|---|
| session | `session.updated` `{sessionID, info: Session}` (columns back into the Session object) |
| message | `message.updated` `{sessionID, info: {id, sessionID, ...data}}` |
| part (tool, compaction) | `message.part.updated` `{sessionID, part: {id, messageID, sessionID, ...data}, time}` |

Other parts (text, reasoning, step-start/finish, patch, ...) are read by no normalizer and are not
sent. `received_at` is the row's time_updated, `time` a part's time_created (when it was first
seen, as for the live event). Rows are read in one read transaction (a consistent snapshot while
OpenCode writes), newest-changed last; a re-run reads only rows changed since the newest
time_updated it saw (less a minute, for writes that were in flight), and nothing at all when the
database and its WAL are unchanged.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentd.db import readonly
from agentd.errors import ImportFailed
from agentd.importers import opencode_legacy as legacy
from agentd.importers._opencode_turns import (
    SOURCE,
    DatabaseTurns,
    EventSender,
    is_typed,
    loads,
    parts_of,
    wanted_part,
)
from agentd.importers.state import ImportState
from agentd.importers.writer import Pipeline

__all__ = ["SOURCE", "WHAT", "default_databases", "default_paths", "run"]

AGENT = "opencode"  # its section of the import state
WHAT = "OpenCode history"
PATH_OPTION = (
    "--db",
    "An opencode.db, or the storage/ directory of OpenCode 1.1 and older (repeatable; default: "
    "$OPENCODE_DB, else opencode.db and opencode-<channel>.db in ~/.local/share/opencode, and "
    "its storage/ if there is one).",
)
IMPORT_HELP = """Import OpenCode's history (sessions, messages with tokens and cost, tool calls, compactions).

    Reads OpenCode's database read-only (OpenCode may keep running), and the JSON files of
    OpenCode 1.1 and older (~/.local/share/opencode/storage/), which later versions no longer
    read. A session in both is imported once. Reads only what changed since the last import.

    \b
    Example:
      agentd import opencode
      agentd import opencode --db ~/.local/share/opencode/opencode-beta.db
      agentd import opencode --db ~/.local/share/opencode/storage
    """

SLACK_MS = 60_000
FETCH = 500
_SESSION_COLUMNS = (
    "id, project_id, workspace_id, parent_id, slug, directory, path, title, version, share_url, "
    "summary_additions, summary_deletions, summary_files, summary_diffs, metadata, cost, "
    "tokens_input, tokens_output, tokens_reasoning, tokens_cache_read, tokens_cache_write, "
    "revert, permission, agent, model, time_created, time_updated, time_compacting, time_archived"
)


def data_dir(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    base = env.get("XDG_DATA_HOME")
    root = (
        Path(base).expanduser() if base else Path(env.get("HOME") or Path.home()) / ".local/share"
    )
    return root / "opencode"


def default_databases(env: dict[str, str] | None = None) -> list[Path]:
    """`$OPENCODE_DB` if it names a file, else opencode.db and opencode-<channel>.db in the data dir."""
    env = dict(os.environ) if env is None else env
    explicit = env.get("OPENCODE_DB")
    if explicit and explicit != ":memory:":
        path = Path(explicit).expanduser()
        return [path if path.is_absolute() else data_dir(env) / path]
    directory = data_dir(env)
    if not directory.is_dir():
        return []
    return sorted(
        p
        for p in directory.iterdir()
        if p.name == "opencode.db" or (p.name.startswith("opencode-") and p.name.endswith(".db"))
    )


def default_paths(env: dict[str, str] | None = None) -> list[Path]:
    """What `agentd import` reads without --db: the legacy storage directory if there is one,
    then the databases."""
    storage = legacy.storage_dir(data_dir(env))
    return ([storage] if legacy.is_storage(storage) else []) + default_databases(env)


def not_found(env: dict[str, str] | None = None) -> str:
    return "No OpenCode database or storage directory found."


def resolve_paths(given: list[Path]) -> list[Path]:
    """The --db values (else the default places), absolute; ImportFailed if there are none or
    one is neither a file nor a storage directory."""
    paths = [p.expanduser() for p in given] or default_paths()
    if not paths:
        raise ImportFailed(
            "no OpenCode database found (looked in ~/.local/share/opencode); give one with --db"
        )
    for path in paths:
        if path.is_dir():
            if not legacy.is_storage(path):
                raise ImportFailed(
                    f"{path} is a directory but not OpenCode's storage (it has no session/ folder)"
                )
        elif not path.exists():
            raise ImportFailed(f"{path} does not exist")
        elif not path.is_file():
            raise ImportFailed(f"{path} is neither a storage directory nor a regular file")
    return [p.absolute() for p in paths]


def _signature(db: Path) -> list[list[int]]:
    out = []
    for path in (db, db.with_name(db.name + "-wal")):
        try:
            st = path.stat()
        except FileNotFoundError:
            out.append([0, 0, 0])
            continue
        out.append([st.st_ino, st.st_size, st.st_mtime_ns])
    return out


def _connect(db: Path) -> sqlite3.Connection:
    """Read-only, never creating or changing anything; immutable when the directory is read-only
    (WAL readers need to create the -shm file)."""
    return readonly.connect(db, immutable_fallback=True)


def session_info(row: sqlite3.Row) -> dict[str, Any]:
    """A session row back into the Session object the bus events carry (as OpenCode 1.18 stores it: tests/test_import_opencode.py)."""
    info: dict[str, Any] = {
        "id": row["id"],
        "slug": row["slug"],
        "projectID": row["project_id"],
        "workspaceID": row["workspace_id"],
        "directory": row["directory"],
        "path": row["path"],
        "parentID": row["parent_id"],
        "title": row["title"],
        "version": row["version"],
        "agent": row["agent"],
        "model": loads(row["model"]),
        "metadata": loads(row["metadata"]),
        "permission": loads(row["permission"]),
        "revert": loads(row["revert"]),
        "share": {"url": row["share_url"]} if row["share_url"] else None,
        "cost": row["cost"],
        "tokens": {
            "input": row["tokens_input"],
            "output": row["tokens_output"],
            "reasoning": row["tokens_reasoning"],
            "cache": {"read": row["tokens_cache_read"], "write": row["tokens_cache_write"]},
        },
        "summary": {
            "additions": row["summary_additions"],
            "deletions": row["summary_deletions"],
            "files": row["summary_files"],
            "diffs": loads(row["summary_diffs"]),
        }
        if row["summary_files"] is not None
        else None,
        "time": {
            k: v
            for k, v in (
                ("created", row["time_created"]),
                ("updated", row["time_updated"]),
                ("compacting", row["time_compacting"]),
                ("archived", row["time_archived"]),
            )
            if v is not None
        },
    }
    return {k: v for k, v in info.items() if v is not None}


class _Text:
    """The connection's text factory: text that is not valid UTF-8 is repaired (U+FFFD for each
    bad byte, as the store does for lone surrogates) and counted once per distinct value, instead
    of sqlite3's OperationalError, which fails the whole fetch (every later row with it) and
    quotes the value."""

    REASON = "invalid UTF-8 (replaced by U+FFFD)"

    def __init__(self, summary: Any) -> None:
        self.summary = summary
        self.seen: set[int] = set()

    def __call__(self, raw: bytes) -> str:
        try:
            return raw.decode()
        except UnicodeDecodeError:
            key = hash(raw)
            if key not in self.seen:  # the turn of a write reads its rows again
                self.seen.add(key)
                self.summary.repair(self.REASON)
            return raw.decode("utf-8", "replace")


def _brief(error: sqlite3.Error) -> str:
    """SQLite's message, one line of at most 200 characters (never a row's contents at length)."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text if len(text) <= 200 else text[:200] + "..."


def _is_time(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _rows(conn: sqlite3.Connection, sql: str, since: int) -> Iterator[sqlite3.Row]:
    cursor = conn.execute(sql, (since,))
    while batch := cursor.fetchmany(FETCH):
        yield from batch


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}


class DatabaseImport(EventSender):
    def __init__(self, pipeline: Pipeline, state: ImportState, summary: Any, progress: Any) -> None:
        self.pipeline = pipeline
        self.state = state
        self.summary = summary
        self.progress = progress

    async def run(self, databases: list[Path]) -> None:
        todo = []
        for db in databases:
            key = str(db.resolve()) if db.exists() else str(db.absolute())
            if not db.is_file():
                self.summary.files_vanished += 1
                self.summary.errors.append(f"{db}: no such database")
                continue
            self.summary.files += 1
            entry = self.state.entries(AGENT).get(key) or {}
            signature = _signature(db)
            if entry.get("signature") == signature:
                self.summary.files_unchanged += 1
                continue
            todo.append((db, key, entry, signature))
        self.progress.start(len(todo), 0)
        for db, key, entry, signature in todo:
            await self.import_database(db, key, entry, signature)
            self.progress.file_done()
        await self.pipeline.finish()

    async def import_database(
        self, db: Path, key: str, entry: dict[str, Any], signature: list[list[int]]
    ) -> None:
        summary = self.summary
        try:
            conn = _connect(db)
        except sqlite3.Error as e:
            summary.files_unreadable += 1
            summary.errors.append(f"{db}: {_brief(e)}")
            return
        conn.row_factory = sqlite3.Row
        conn.text_factory = _Text(summary)
        seen = entry.get("updated") if _is_time(entry.get("updated")) else 0
        since = max(0, seen - SLACK_MS) if seen else 0
        newest = seen
        # A time_updated in the future (a wrong clock, a damaged row) moves the mark no further
        # than now: the next run would otherwise skip every row changed before that time.
        now = int(time.time() * 1000)
        try:
            conn.execute("BEGIN")  # one snapshot for all three tables
            tables = {t: _columns(conn, t) for t in ("session", "message", "part")}
            if not all(tables.values()):
                summary.files_unreadable += 1
                summary.errors.append(f"{db}: not an OpenCode database (no session/message/part)")
                return
            summary.files_read += 1
            turns = DatabaseTurns(conn)
            for row in _rows(
                conn,
                f"SELECT {self._session_columns(tables['session'])} FROM session"
                " WHERE time_updated >= ? ORDER BY time_updated",
                since,
            ):
                if not self._timed(row, "session"):
                    continue
                newest = max(newest, min(row["time_updated"], now))
                await self._emit(
                    "session.updated",
                    {"sessionID": row["id"], "info": session_info(row)},
                    row["time_updated"],
                )
            for row in _rows(
                conn,
                "SELECT id, session_id, time_created, time_updated, data FROM message"
                " WHERE time_updated >= ? ORDER BY time_updated",
                since,
            ):
                if not self._timed(row, "message"):
                    continue
                newest = max(newest, min(row["time_updated"], now))
                data = loads(row["data"])
                if not isinstance(data, dict):
                    summary.skip("message: unreadable data")
                    continue
                info = {"id": row["id"], "sessionID": row["session_id"], **data}
                await self._emit(
                    "message.updated",
                    {"sessionID": row["session_id"], "info": info},
                    row["time_updated"],
                )
                if info.get("role") == "user" and is_typed(parts_of(conn, row["id"])):
                    await self._chat(row["session_id"], info, row["time_updated"])
            for row in _rows(
                conn,
                "SELECT id, message_id, session_id, time_created, time_updated, data,"
                " CASE WHEN json_valid(data)"  # json_extract raises on malformed JSON
                " THEN json_extract(data, '$.type') IN ('tool', 'compaction', 'retry')"
                "  OR (json_extract(data, '$.type') = 'text' AND json_extract(data, '$.synthetic'))"
                " ELSE 1 END AS wanted FROM part WHERE time_updated >= ? ORDER BY time_updated",
                since,
            ):
                if not self._timed(row, "part"):
                    continue
                newest = max(newest, min(row["time_updated"], now))
                data = loads(row["data"]) if row["wanted"] else {}
                if row["wanted"] and not isinstance(data, dict):
                    summary.skip("part: unreadable data")
                    continue
                if not row["wanted"] or not wanted_part(data):
                    summary.records += 1
                    summary.skip("part (not tool, compaction or retry)")
                    continue
                part = {
                    "id": row["id"],
                    "messageID": row["message_id"],
                    "sessionID": row["session_id"],
                    **data,
                }
                props = {"sessionID": row["session_id"], "part": part, "time": row["time_created"]}
                lines = turns.lines(part)
                if lines:
                    props["agentd_snapshot_diff"] = lines
                await self._emit("message.part.updated", props, row["time_updated"])
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            summary.files_unreadable += 1
            summary.errors.append(f"{db}: {_brief(e)}")
            return
        finally:
            conn.close()
        done = {"signature": signature, "updated": newest}
        self.pipeline.mark(lambda: self.state.set(AGENT, key, done))

    def _timed(self, row: sqlite3.Row, table: str) -> bool:
        """Whether the row has a time_updated (an integer: OpenCode's epoch ms); one without is
        skipped and counted (it would be sent again with a new time on every run)."""
        if _is_time(row["time_updated"]):
            return True
        self.summary.records += 1
        self.summary.skip(f"{table}: time_updated not an integer")
        return False

    @staticmethod
    def _session_columns(present: set[str]) -> str:
        """The session columns this database has (older versions lack some): NULL for the others."""
        wanted = [c.strip() for c in _SESSION_COLUMNS.split(",")]
        return ", ".join(c if c in present else f"NULL AS {c}" for c in wanted)


async def run(
    paths: list[Path], pipeline: Pipeline, state: ImportState, summary: Any, progress: Any
) -> None:
    """Legacy JSON storage directories first, then the databases: a session both hold (OpenCode
    1.2 to 1.15 copied the JSON into the database) gets the same rows from either, and the
    database's newer values come last."""
    storages = [p for p in paths if p.is_dir()]
    if storages:
        await legacy.StorageImport(pipeline, state, summary, progress).run(storages)
    databases = [p for p in paths if not p.is_dir()]
    if databases or not storages:
        await DatabaseImport(pipeline, state, summary, progress).run(databases)
