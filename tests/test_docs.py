"""The docs keep up with the code: every method, error code, table, column and config key."""

import re
import sqlite3
from pathlib import Path

from agentd import errors
from agentd.db.migrations import migrate
from agentd.service.methods import METHODS

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_every_method_is_documented():
    text = (DOCS / "protocol.md").read_text()
    for name in METHODS:
        assert f"### `{name}`" in text, name


def test_every_error_code_is_documented():
    text = (DOCS / "protocol.md").read_text()
    codes = {
        cls.CODE
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.AgentdError)
    }
    for code in codes:
        assert f"| {code} |" in text, code


def test_every_table_and_column_is_documented(tmp_path):
    text = (DOCS / "schema.md").read_text()
    conn = sqlite3.connect(tmp_path / "a.db")
    migrate(conn)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        section = re.search(rf"## `{table}`\n(.*?)(\n## |\Z)", text, re.S)
        assert section, f"table {table} has no section"
        for (column,) in conn.execute(f"SELECT name FROM pragma_table_info('{table}')"):
            assert f"`{column}`" in section.group(1), f"{table}.{column}"


def test_every_config_key_is_documented():
    text = (DOCS / "configuration.md").read_text()
    package = Path(__file__).resolve().parents[1] / "daemon/agentd"
    config_source = (package / "config.py").read_text()
    keys = set(re.findall(r'_typed\(\s*file, "(\w+)"', config_source))
    keys |= set(re.findall(r'file\.get\("(\w+)"\)', (package / "paths.py").read_text()))
    keys |= set(re.findall(r'_typed\(\s*redaction, "(\w+)"', config_source))
    assert keys >= {
        "max_line_bytes",
        "output_limit_bytes",
        "autostart",
        "socket",
        "db",
        "content_level",
        "enabled",
        "patterns",
    }
    for key in keys:
        assert f"{key} =" in text or f"[{key}]" in text, key
