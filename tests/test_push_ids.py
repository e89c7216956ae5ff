"""Ids and paths of any length and content reach the server, and at `--content-level none` no
path does (push/ids.py): against a real PostgreSQL, from a real daemon fed hostile payloads."""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import time
from typing import Any

import psycopg
import pytest
from pushkit import CLAUDE, Machine, scalar, server_rows

from agentd.push import ids
from agentd.push.local import TABLES

_names = itertools.count()
DAY_MS = 86_400_000
LONG_PATH = "/home/dev/" + "/".join(f"segment{n:04d}" for n in range(279)) + "/x.txt"  # 3074
HUGE_PATH = "/home/dev/huge/" + "y" * (1024 * 1024) + "/z.txt"
LONG_SESSION = "s" * 3000
LONG_TOOL = "toolu_" + "t" * 3000


@pytest.fixture
def url(pg):
    return pg.create_database(f"ids{next(_names)}")


def _write(path: str, session: str, tool: str) -> list[dict[str, Any]]:
    """The Pre- and PostToolUse of a Write to `path`, in session `session`, call `tool`."""
    out = []
    for event in ("PreToolUse", "PostToolUse"):
        p = copy.deepcopy(
            next(c for c in CLAUDE if c["hook_event_name"] == event and c["tool_name"] == "Write")
        )
        p["session_id"], p["tool_use_id"] = session, tool
        p["tool_input"]["file_path"] = path
        if "tool_response" in p:
            p["tool_response"]["filePath"] = path
        out.append(p)
    return out


HOSTILE = [
    *_write(LONG_PATH, "sess-long-path", "toolu_long_path"),
    *_write(HUGE_PATH, "sess-huge-path", "toolu_huge_path"),
    *_write("/home/dev/short.txt", LONG_SESSION, LONG_TOOL),
    *_write("/home/dev/prefix.txt", ids.DIGEST_PREFIX + "looks-like-a-digest", "toolu_p"),
]


def _key(m: Machine) -> bytes:
    return bytes.fromhex((m.config.state_dir / "push-id-key").read_text().strip())


def _wire(m: Machine, value: Any, hidden: bool = False) -> Any:
    """A local id as the server should hold it (the rule docs/team.md states)."""
    if value is None:
        return None
    if hidden or len(value.encode()) > ids.MAX_ID_BYTES or value.startswith(ids.DIGEST_PREFIX):
        return ids.DIGEST_PREFIX + hmac.new(_key(m), value.encode(), hashlib.sha256).hexdigest()
    return value


def _assert_mirrors(url: str, m: Machine) -> None:
    """The server holds every local row, ids in their wire form, every other value as is."""
    for table in TABLES:
        cols = m.columns(table)
        expected = {}
        for row in m.local_rows(table).values():
            wired = tuple(
                _wire(m, v) if ids.is_id_column(c) else v for c, v in zip(cols, row, strict=True)
            )
            expected[wired[0]] = wired
        remote = server_rows(url, m, table)
        assert set(remote) == set(expected), table
        for key, row in expected.items():
            assert remote[key] == row, (table, key[:80])


def _push(m: Machine, url: str, *args: str) -> None:
    result = m.agentd("push", url, *args, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_push_takes_ids_and_paths_of_any_length(url, machine):
    old = int(time.time() * 1000) - 100 * DAY_MS
    machine.feed("claude", CLAUDE)
    machine.feed("claude", HOSTILE, received_at=old)
    paths = {r[0] for r in machine.local_rows("file_operations").values()}
    assert any(len(p) > 1_000_000 for p in paths) and any(3000 < len(p) < 4096 for p in paths)
    assert machine.agentd("push", "--init", url).returncode == 0
    _push(machine, url)
    _assert_mirrors(url, machine)
    # The paths themselves are exact; only the ids over the bound went as digests.
    stored = {r[0] for r in server_rows(url, machine, "file_operations").values()}
    assert {LONG_PATH, HUGE_PATH} <= {
        scalar(url, "SELECT file_path FROM agentd.file_operations WHERE id = %s", (i,))
        for i in stored
    }
    # Rows and the rows that name them still meet: a long session id is one digest everywhere.
    joined = scalar(
        url,
        "SELECT count(*) FROM agentd.tools t JOIN agentd.sessions s"
        " ON s.machine_id = t.machine_id AND s.id = t.session_id WHERE t.machine_id = %s",
        (machine.machine_id,),
    )
    assert joined == len(machine.local_rows("tools"))
    # The ids are stable: the whole copy again (the server forgets its watermarks) lands on
    # the same rows rather than beside them.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM agentd.push_state")
    _push(machine, url)
    _assert_mirrors(url, machine)
    # And prune's deletes find them.
    assert machine.agentd("prune", "--older-than", "30d").returncode == 0
    _push(machine, url)
    _assert_mirrors(url, machine)
    assert (
        scalar(url, "SELECT count(*) FROM agentd.file_operations WHERE length(file_path) > 3000")
        == 0
    )


def test_the_servers_btree_indexes_hold_only_bounded_text(url, machine):
    """Every text column a btree index of the server keys on is an id (bounded by the push) or
    a value of agentd's own (machine_id, table_name): none can exceed a btree row."""
    assert machine.agentd("push", "--init", url).returncode == 0
    with psycopg.connect(url) as conn:
        keys = conn.execute(
            """
            SELECT c.relname, a.attname, am.amname
            FROM pg_index i
            JOIN pg_class c ON c.oid = i.indexrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_am am ON am.oid = c.relam
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
            WHERE n.nspname = 'agentd' AND a.atttypid = 'text'::regtype
            """
        ).fetchall()
        expressions = conn.execute(
            "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'agentd' AND i.indexprs IS NOT NULL"
        ).fetchone()[0]
    assert keys and expressions == 0
    for index, column, method in keys:
        if method == "btree":
            assert ids.is_id_column(column) or column in ("table_name",), (index, column)


def test_push_at_content_level_none_sends_no_path(url, machine):
    machine.feed("claude", CLAUDE)
    machine.feed("claude", _write("/home/dev/secret/plan.txt", "sess-secret", "toolu_secret"))
    assert machine.agentd("push", "--init", url).returncode == 0
    _push(machine, url, "--content-level", "none")
    # No path, nor a file's name, in any text value of any table (ids included).
    names = set()
    for row in machine.local_rows("file_operations").values():
        path = row[machine.columns("file_operations").index("file_path")]
        names |= {path, path.rsplit("/", 1)[-1]}
    names |= {"/home/dev/runs/claude-main/proj", "hello.txt"}
    with psycopg.connect(url) as conn:
        for table in TABLES:
            cols = [
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema ="
                    " 'agentd' AND table_name = %s AND data_type = 'text'",
                    (table,),
                )
            ]
            for row in conn.execute(f"SELECT {', '.join(cols)} FROM agentd.{table}"):  # type: ignore[arg-type]
                for value in row:
                    assert not value or not any(n in value for n in names), (table, value[:80])
    key_file = machine.config.state_dir / "push-id-key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    hidden = (("file_operations", "id"),)
    _assert_mirrors_none(url, machine, hidden)
    # The digest is keyed: not the plain hash of the id a reader could recompute.
    local_ids = list(machine.local_rows("file_operations"))
    remote = set(server_rows(url, machine, "file_operations"))
    plain = {ids.DIGEST_PREFIX + hashlib.sha256(i.encode()).hexdigest() for i in local_ids}
    assert remote and not remote & plain
    # Stable: a whole copy again lands on the same rows.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM agentd.push_state")
    _push(machine, url, "--content-level", "none")
    _assert_mirrors_none(url, machine, hidden)


def test_a_content_level_crossing_none_rekeys_the_file_operations(url, machine):
    """Ids that embed a path go as a digest at `none` only: a push at another level than the last
    one's re-sends that table under its new ids instead of leaving the old rows beside them
    (each operation twice, its lines counted twice, a local delete never undone)."""
    machine.feed("claude", CLAUDE)
    machine.feed("claude", _write("/home/dev/secret/plan.txt", "sess-secret", "toolu_secret"))
    assert machine.agentd("push", "--init", url).returncode == 0
    _push(machine, url)
    _assert_mirrors(url, machine)
    _push(machine, url, "--content-level", "none")
    # (The other tables keep what the full push sent: a stricter level later withholds only
    # what it sends from then on; docs/team.md.)
    local = machine.local_rows("file_operations")
    assert set(server_rows(url, machine, "file_operations")) == {
        _wire(machine, i, hidden=True) for i in local
    }
    _push(machine, url)  # back to full: the ids as stored again, once each
    assert set(server_rows(url, machine, "file_operations")) == set(
        machine.local_rows("file_operations")
    )


def test_an_id_holding_a_nul_is_updated_and_deleted_as_itself(url, tmp_path):
    """Ids are what payloads said: one holding a NUL went through SQLite's json_each, which cuts
    a string there: its update never reached the server, and the push deleted the row of the id
    it was cut to instead."""
    from agentd.config import Config
    from agentd.db.store import connect_sync
    from agentd.push import server
    from agentd.push.runner import PushOptions, push_once

    server.init(url)
    config = Config.load({"AGENTD_HOME": str(tmp_path)})
    db = connect_sync(config.db_path)
    for sid, title in (("victim", "innocent"), ("victim\x00evil", "hostile")):
        db.execute("INSERT INTO sessions (id, source, title, created_at) VALUES (?, 'claude', ?, 1)",
                   (sid, title))  # fmt: skip
    db.commit()
    push_once(config, PushOptions(conninfo=url))
    db.execute("UPDATE sessions SET title = 'hostile, updated' WHERE id = ?", ("victim\x00evil",))
    db.commit()
    db.close()
    push_once(config, PushOptions(conninfo=url))
    with psycopg.connect(url) as conn:
        titles = sorted(r[0] for r in conn.execute("SELECT title FROM agentd.sessions"))
    assert titles == ["hostile, updated", "innocent"]


def _assert_mirrors_none(url: str, m: Machine, hidden: tuple[tuple[str, str], ...]) -> None:
    """As _assert_mirrors, with what `none` withholds compared as NULL."""
    from agentd.push.local import dropped_columns

    for table in TABLES:
        cols = m.columns(table)
        dropped = dropped_columns(table, cols, "none")
        expected = {}
        for row in m.local_rows(table).values():
            wired = tuple(
                None
                if c in dropped
                else _wire(m, v, hidden=(table, c) in hidden)
                if ids.is_id_column(c)
                else v
                for c, v in zip(cols, row, strict=True)
            )
            expected[wired[0]] = wired
        assert server_rows(url, m, table) == expected, table


@pytest.mark.parametrize("bad", ["a directory", "not hex", "too short"])
def test_a_key_file_that_is_no_key_is_one_clear_line(url, machine, bad):
    key = machine.config.state_dir / "push-id-key"
    key.unlink(missing_ok=True)
    if bad == "a directory":
        key.mkdir()
    else:
        key.write_text("zz" * 32 if bad == "not hex" else "ab" * 4)
    try:
        result = machine.agentd("push", url)
        assert result.returncode == 1 and "push id key" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    finally:
        key.rmdir() if key.is_dir() else key.unlink()
