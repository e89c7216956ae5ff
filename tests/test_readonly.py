"""The one read-only connect (db/readonly.py), and the readers that use it, on awkward paths."""

from __future__ import annotations

import dataclasses
import sqlite3

import pytest

from agentd.db import readonly
from agentd.db.store import connect_sync
from agentd.doctor import check_database
from agentd.importers import table_counts
from agentd.query.engine import connect_readonly

# Characters that mean something in a SQLite URI: `?` starts the query, `#` the fragment, and
# `%` an escape. A database path may hold any of them.
AWKWARD = "we?ird #1 100%"


@pytest.fixture
def awkward_db(tmp_path):
    db = tmp_path / AWKWARD / "agentd.db"
    conn = connect_sync(db)
    conn.execute(
        "INSERT INTO events (id, source, kind, received_at, payload) VALUES ('e1', 'claude', 'k', 1, '{}')"
    )
    conn.execute("INSERT INTO sessions (id, source) VALUES ('s1', 'claude')")
    conn.close()
    return db


def test_doctor_checks_a_database_whose_path_has_uri_characters(config, awkward_db):
    check = check_database(dataclasses.replace(config, db_path=awkward_db))
    assert check.status == "ok", check.detail
    assert "1 events" in check.detail


def test_import_counts_rows_of_a_database_whose_path_has_uri_characters(awkward_db):
    counts = table_counts(awkward_db)
    assert counts["events"] == 1 and counts["sessions"] == 1


def test_connect_never_writes_or_creates(tmp_path, awkward_db):
    missing = tmp_path / AWKWARD / "missing.db"
    with pytest.raises(sqlite3.OperationalError):
        readonly.connect(missing)
    assert not missing.exists()
    conn = readonly.connect(awkward_db)
    try:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (1,)
        with pytest.raises(sqlite3.OperationalError):
            conn.execute("DELETE FROM events")
    finally:
        conn.close()


def test_query_reads_a_database_whose_path_has_uri_characters(awkward_db):
    conn = connect_readonly(awkward_db)
    try:
        assert conn.execute("SELECT id FROM sessions").fetchall() == [("s1",)]
    finally:
        conn.close()
