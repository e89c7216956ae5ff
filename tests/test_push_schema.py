"""`agentd push --init` against a server whose tables lost a column: it adds it back, so the
push's advice ("run agentd push --init URL") is true."""

from __future__ import annotations

import itertools

import psycopg
from pushkit import CLAUDE, assert_same

_names = itertools.count()


def test_init_adds_back_a_dropped_column(pg, machine):
    url = pg.create_database(f"schema{next(_names)}")
    machine.feed("claude", CLAUDE)
    assert machine.agentd("push", "--init", url).returncode == 0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE agentd.tools DROP COLUMN tool_output")
        conn.execute("ALTER TABLE agentd.sessions DROP COLUMN computed_cost")
    failed = machine.agentd("push", url)
    assert failed.returncode == 1 and "lacks computed_cost" in failed.stderr
    assert "agentd push --init URL" in failed.stderr
    init = machine.agentd("push", "--init", url)
    assert init.returncode == 0, init.stderr
    assert "nothing to do" not in init.stdout
    assert "tools.tool_output" in init.stdout and "sessions.computed_cost" in init.stdout
    again = machine.agentd("push", "--init", url, "--json")
    assert '"repaired": []' in again.stdout
    pushed = machine.agentd("push", url)
    assert pushed.returncode == 0, pushed.stderr
    assert_same(url, machine)


def test_expected_columns_are_what_init_makes(pg, machine):
    """The columns --init repairs from are read off the migrations: the same names and types
    as the tables a fresh --init creates."""
    from agentd.push.server import expected_columns

    url = pg.create_database(f"schema{next(_names)}")
    assert machine.agentd("push", "--init", url).returncode == 0
    with psycopg.connect(url) as conn:
        for table, columns in expected_columns().items():
            made = conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
                " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
                " ORDER BY attnum",
                (f"agentd.{table}",),
            ).fetchall()
            assert [tuple(r) for r in made] == columns, table
