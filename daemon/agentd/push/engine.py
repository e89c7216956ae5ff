"""One push: connect, then cycles that each move a bounded batch of changes to the server in one
PostgreSQL transaction together with the watermarks they advance.

Exactness comes from two rules. The watermark (agentd.push_state.seq) is written in the same
server transaction as the rows it covers, so a crash anywhere leaves either both or neither.
And a changed row is sent as it is *now* (read by id), a row that is gone is deleted: sending
the same change twice is harmless, so a replay after a crash cannot double anything.

A table the server has no watermark for is first copied whole, in rowid order and in batches
(`copy_after` remembers how far); its watermark is the log position read before the copy
started, so every change made during the copy is applied after it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from agentd.db.merge import merge_assignments
from agentd.errors import ConnectFailed, PushBusy, SchemaMissing
from agentd.privacy import path_ids, strip_payload
from agentd.push import server
from agentd.push.local import RAW_TABLE, TABLES, Local

__all__ = ["Pusher", "CycleResult", "target_key"]


def target_key(conninfo: str) -> str:
    """The local name of a server: its connection string without the password."""
    return server.describe(conninfo)


@dataclass
class CycleResult:
    upserted: int = 0
    deleted: int = 0
    caught_up: bool = True


@dataclass
class _State:
    seq: int
    copy_after: int | None
    rows_pushed: int = 0


@dataclass
class Pusher:
    local: Local
    conninfo: str
    machine_id: str
    user_name: str
    hostname: str
    content_level: str = "full"
    raw: bool = False
    batch_rows: int = 10_000
    _conn: psycopg.Connection[Any] | None = field(default=None, init=False)
    _copy_sql: dict[str, str] = field(default_factory=dict, init=False)
    _merge_sql: dict[str, str] = field(default_factory=dict, init=False)
    _select: dict[str, str] = field(default_factory=dict, init=False)
    _acked: int = field(default=-1, init=False)

    @property
    def tables(self) -> tuple[str, ...]:
        return (*TABLES, RAW_TABLE) if self.raw else TABLES

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed

    def connect(self) -> None:
        """Connect, check the server's schema, take this machine's lock, and settle the state.

        Raises ConnectFailed, SchemaMissing or PushBusy.
        """
        conn = server.connect(self.conninfo)
        try:
            server.check_schema(conn, self.conninfo)
            row = conn.execute(
                "SELECT pg_try_advisory_lock(hashtext('agentd push ' || %s))", (self.machine_id,)
            ).fetchone()
            conn.commit()
            if not row or not row[0]:
                raise PushBusy(
                    f"another `agentd push` for this machine ({self.machine_id}) is running"
                )
            self._prepare(conn)
            self._conn = conn
            self._settle_state()
        except BaseException:
            conn.close()
            self._conn = None
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _prepare(self, conn: psycopg.Connection[Any]) -> None:
        for table in self.tables:
            local_cols = self.local.columns(table)
            remote = set(server.server_columns(conn, table))
            missing = [c for c in local_cols if c not in remote]
            if missing:
                raise SchemaMissing(
                    f"the server's agentd.{table} lacks {', '.join(missing)}: "
                    "run `agentd push --init URL` to upgrade it"
                )
            cols = ["machine_id", "user_name", *local_cols]
            conn.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS stage_{table}"  # type: ignore[arg-type]
                f" (LIKE agentd.{table}) ON COMMIT DELETE ROWS"
            )
            self._copy_sql[table] = f"COPY stage_{table} ({', '.join(cols)}) FROM STDIN"
            self._merge_sql[table] = _merge_sql(table, cols)
            self._select[table] = self.local.select_list(table, self.content_level)
        conn.commit()

    def _settle_state(self) -> None:
        """Make the server's watermarks valid for this local database.

        They are trusted only if this database knows the target (push_targets) and its log
        reaches them; otherwise (a new or replaced agentd.db) every table is copied afresh.
        A table not pushed this time (events without --raw) loses its watermark, so that a
        later --raw push copies it whole rather than from a log trimmed meanwhile.
        """
        conn = self._require()
        target = target_key(self.conninfo)
        state = self._read_state()
        last = self.local.last_seq()
        stale = not self.local.is_registered(target) or any(s.seq > last for s in state.values())
        drop = list(state) if stale else [t for t in state if t not in self.tables]
        rekeyed = self._rekeyed_tables()
        drop += [t for t in rekeyed if t in state and t not in drop]
        with conn.transaction():
            for table in rekeyed:
                # Its rows went with ids of the other form: copied afresh below, under the ids
                # this level gives; left, they would stay beside them and their deletes undone.
                conn.execute(
                    f"DELETE FROM agentd.{table} WHERE machine_id = %s",  # noqa: S608 (a TABLES name)
                    (self.machine_id,),
                )
            if drop:
                conn.execute(
                    "DELETE FROM agentd.push_state WHERE machine_id = %s AND table_name = ANY(%s)",
                    (self.machine_id, drop),
                )
            now = _now()
            conn.execute(
                "INSERT INTO agentd.machines AS m (machine_id, user_name, hostname, content_level,"
                " first_push_at, last_push_at) VALUES (%s, %s, %s, %s, %s, NULL)"
                " ON CONFLICT (machine_id) DO UPDATE SET user_name = excluded.user_name,"
                " hostname = excluded.hostname, content_level = excluded.content_level",
                (self.machine_id, self.user_name, self.hostname, self.content_level, now),
            )
        # Only after the server forgot the old marks: a crash in between repeats both steps.
        self.local.register(target)

    def _rekeyed_tables(self) -> list[str]:
        """The tables whose ids take another form at this content level than at the level of
        this machine's last push (privacy.path_ids: at `none`, ids that embed a path go as a
        digest)."""
        row = (
            self._require()
            .execute(
                "SELECT content_level FROM agentd.machines WHERE machine_id = %s",
                (self.machine_id,),
            )
            .fetchone()
        )
        if row is None or row[0] is None:
            return []
        return [t for t in TABLES if path_ids(t, row[0]) != path_ids(t, self.content_level)]

    def _require(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            raise ConnectFailed("not connected")
        return self._conn

    def _read_state(self) -> dict[str, _State]:
        conn = self._require()
        rows = conn.execute(
            "SELECT table_name, seq, copy_after, rows_pushed FROM agentd.push_state"
            " WHERE machine_id = %s",
            (self.machine_id,),
        ).fetchall()
        conn.commit()
        return {r[0]: _State(r[1], r[2], r[3]) for r in rows}

    def cycle(self) -> CycleResult:
        """Push one batch; `caught_up` once nothing committed locally is left to send."""
        conn = self._require()
        result = CycleResult()
        state = self._read_state()
        with self.local.snapshot(), conn.transaction():
            for table in self.tables:
                st = state.get(table)
                if st is None:  # first sight of this table: copy it whole from here on
                    st = state[table] = _State(self.local.last_seq(), 0)
                if st.copy_after is not None:
                    rows = self.local.rows_after(
                        table, self._select[table], st.copy_after, self.batch_rows
                    )
                    self._upsert(table, [r[1:] for r in rows])
                    result.upserted += len(rows)
                    st.rows_pushed += len(rows)
                    st.copy_after = rows[-1][0] if len(rows) == self.batch_rows else None
                    if st.copy_after is not None:
                        result.caught_up = False
            live = {t: s for t, s in state.items() if t in self.tables and s.copy_after is None}
            if live:
                low = min(s.seq for s in live.values())
                changes = self.local.changes(low, self.batch_rows)
                if len(changes) == self.batch_rows:
                    result.caught_up = False
                self._apply(changes, live, result)
            self._write_state(state)
        mark = min((s.seq for t, s in state.items() if t in self.tables), default=0)
        if mark != self._acked:  # a caught-up watch has nothing to record
            self.local.acknowledge(target_key(self.conninfo), mark)
            self._acked = mark
        return result

    def _apply(self, changes: list[Any], live: dict[str, _State], result: CycleResult) -> None:
        """Send the rows the changes name, as they are now; delete those that are gone."""
        conn = self._require()
        touched: dict[str, dict[str, bool]] = {}  # table -> id -> was deleted in the batch
        for seq, table, row_id, deleted in changes:
            st = live.get(table)
            if st is None or seq <= st.seq:
                continue
            seen = touched.setdefault(table, {})
            seen[row_id] = seen.get(row_id, False) or bool(deleted)
        for table, ids in touched.items():
            found = self.local.rows_by_id(table, self._select[table], list(ids))
            present = {r[0] for r in found}
            rows = [r[1:] for r in found]
            # Gone now, or deleted and made again: the server's copy goes first, so a row made
            # again does not inherit the merged columns of the one pruned.
            gone = [i for i, was_deleted in ids.items() if was_deleted or i not in present]
            if gone:
                cur = conn.execute(
                    f"DELETE FROM agentd.{table}"  # type: ignore[arg-type]
                    " WHERE machine_id = %s AND id = ANY(%s)",
                    (self.machine_id, self.local.wire_ids(table, self.content_level, gone)),
                )
                result.deleted += max(cur.rowcount, 0)
            self._upsert(table, rows)
            result.upserted += len(rows)
            live[table].rows_pushed += len(rows)
        if changes:
            for st in live.values():
                st.seq = max(st.seq, changes[-1][0])

    def _upsert(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        conn = self._require()
        head = (self.machine_id, self.user_name)
        strip = table == RAW_TABLE and self.content_level != "full"
        payload_at = self.local.columns(table).index("payload") if strip else -1
        with conn.cursor() as cur:
            with cur.copy(self._copy_sql[table]) as copy:  # type: ignore[arg-type]
                for row in rows:
                    if strip and row[payload_at] is not None:
                        row = _stripped(row, payload_at, self.content_level)
                    copy.write_row(head + row)
            cur.execute(self._merge_sql[table])  # type: ignore[arg-type]

    def _write_state(self, state: dict[str, _State]) -> None:
        conn = self._require()
        now = _now()
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO agentd.push_state AS p (machine_id, table_name, seq, copy_after,"
                " rows_pushed, pushed_at) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (machine_id, table_name) DO UPDATE SET seq = excluded.seq,"
                " copy_after = excluded.copy_after, rows_pushed = excluded.rows_pushed,"
                " pushed_at = excluded.pushed_at",
                [
                    (self.machine_id, t, s.seq, s.copy_after, s.rows_pushed, now)
                    for t, s in state.items()
                    if t in self.tables
                ],
            )
            cur.execute(
                "UPDATE agentd.machines SET last_push_at = %s WHERE machine_id = %s",
                (now, self.machine_id),
            )

    def backlog(self) -> int:
        """Rows left to send, for a progress display: the rows of tables not yet copied whole,
        plus the log entries past the server's watermarks (a row changed twice counts twice)."""
        state = self._read_state()
        total = 0
        for table in self.tables:
            st = state.get(table)
            if st is None or st.copy_after is not None:
                row = self.local.conn.execute(
                    f"SELECT count(*) FROM {table} WHERE rowid > ?",
                    (0 if st is None else st.copy_after,),
                ).fetchone()
                total += int(row[0])
        seqs = [s.seq for t, s in state.items() if t in self.tables]
        if seqs:
            row = self.local.conn.execute(
                "SELECT count(*) FROM push_log WHERE seq > ?", (min(seqs),)
            ).fetchone()
            total += int(row[0])
        return total

    def pending(self) -> int:
        """Log entries past what the server acknowledged (an upper bound: a row changed twice
        counts twice). Local only, so it can be shown while the server is unreachable."""
        row = self.local.conn.execute(
            "SELECT count(*) FROM push_log WHERE seq >"
            " coalesce((SELECT seq FROM push_targets WHERE target = ?), 0)",
            (target_key(self.conninfo),),
        )
        return int(row.fetchone()[0])


def _merge_sql(table: str, cols: list[str]) -> str:
    """Stage -> table, merging with the local store's own rules (db/merge.py)."""
    updates = merge_assignments(
        [c for c in cols if c != "user_name"],
        skip=("machine_id", "id"),
        old="t.",
        least="least",
        greatest="greatest",
    )
    if "user_name" in cols:
        updates.append("user_name = excluded.user_name")  # who pushed it last
    names = ", ".join(cols)
    return (
        f"INSERT INTO agentd.{table} AS t ({names}) SELECT {names} FROM stage_{table}"
        f" ON CONFLICT (machine_id, id) DO UPDATE SET {', '.join(updates)}"
    )


def _stripped(row: tuple[Any, ...], at: int, level: str) -> tuple[Any, ...]:
    try:
        payload = json.dumps(strip_payload(json.loads(row[at]), level))
    except ValueError:
        payload = None  # not JSON: nothing of it may leave at a stricter level
    return (*row[:at], payload, *row[at + 1 :])


def _now() -> int:
    return int(time.time() * 1000)
