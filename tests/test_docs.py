"""The docs keep up with the code: every method, error code, table, column and config key."""

import re
import sqlite3
from pathlib import Path

from agentd import errors
from agentd.config import SETTINGS
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
        if isinstance(cls, type) and issubclass(cls, errors.WireError)
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


def test_every_setting_is_documented():
    """Each row of SETTINGS has its row in docs/configuration.md (key, environment variable,
    default), and the docs list no setting that is not in SETTINGS (datasette's
    test_settings_are_documented)."""
    text = (DOCS / "configuration.md").read_text()
    names = {s.name for s in SETTINGS}
    assert names >= {
        "max_line_bytes",
        "output_limit_bytes",
        "autostart",
        "socket",
        "db",
        "content_level",
        "redaction.enabled",
        "redaction.patterns",
    }
    rows = {
        m.group(1): m.group(0)
        for m in re.finditer(r"^\| `([\w.]+)` \|.*\|$", text.split("## Settings", 1)[1], re.M)
    }
    assert set(rows) == names
    for setting in SETTINGS:
        row = [cell.strip() for cell in rows[setting.name].strip("|").split("|")]
        env = f"`{setting.env}`" if setting.env else "—"
        assert row[1:4] == [setting.type_name, env, setting.default_text], setting.name
        assert row[4] == setting.help, setting.name
        # The example config file shows each key too.
        key = setting.name.rpartition(".")[2]
        assert f"{key} =" in text or f"[{key}]" in text, key


def test_readme_layout_names_every_module_and_only_existing_ones():
    """README's package table is how a newcomer finds the room for a change: keep it true."""
    readme = (DOCS.parent / "README.md").read_text()
    section = readme.split("Inside `daemon/agentd/`:", 1)[1].split("Where a change goes:", 1)[0]
    named = set(re.findall(r"`([a-z_]+(?:\.py|/))`", section))
    package = DOCS.parent / "daemon" / "agentd"
    present = {
        p.name + ("/" if p.is_dir() else "")
        for p in package.iterdir()
        if (p.is_dir() and (p / "__init__.py").exists())
        or (p.suffix == ".py" and not p.name.startswith("_"))
    }
    assert named == present, f"missing from README: {present - named}; gone: {named - present}"
    where = readme.split("Where a change goes:", 1)[1]
    for path in re.findall(r"`([a-z_]+/(?:[a-z_]+\.py)?|[a-z_]+\.py)`", where):
        assert (package / path).exists() or (DOCS.parent / path).exists(), path
