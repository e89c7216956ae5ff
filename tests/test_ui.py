"""`agentd ui` in process: the views' numbers, the JSON and CSV endpoints, bad input, the Host
and token guard, the bind rule, and the change watcher. The database is a real SQLite file
built by the real migrations; the browser tests (test_ui_browser.py) fill theirs with the
real agents."""

from __future__ import annotations

import csv
import io
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from agentd.db.store import connect_sync
from agentd.query.reports import nearest_rank
from agentd.ui.app import create_app
from agentd.ui.db import UIError, Watcher, connect
from agentd.ui.server import token_for, urls_for

MIN = 60_000
BASE = "http://127.0.0.1"
TOKEN = "test-ui-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}  # every request needs the token


def _insert(conn: sqlite3.Connection, table: str, **row: object) -> None:
    conn.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                 tuple(row.values()))  # fmt: skip


@pytest.fixture
def now() -> int:
    """The time the rows are relative to (ms), taken when the test runs: taken at collection, a
    suite reaching this file 10 minutes later made the OpenCode session no longer "running"."""
    return int(time.time() * 1000)


@pytest.fixture
def db(tmp_path: Path, now: int) -> Path:
    NOW = now  # the rows below read as offsets from it
    path = tmp_path / "agentd.db"
    conn = connect_sync(path)
    _insert(conn, "sessions", id="s-claude", source="claude", title="fix the login bug",
            project_path="/src/app", project_name="app", model="claude-sonnet", status="ended",
            cost=1.25, prompt_tokens=1000, completion_tokens=200, tool_call_count=12,
            created_at=NOW - 30 * MIN, updated_at=NOW - 10 * MIN, ended_at=NOW - 10 * MIN)  # fmt: skip
    _insert(conn, "sessions", id="s-oc", source="opencode", title="add a cache",
            project_path="/src/lib", project_name="lib", model="gpt", status="busy", cost=0.5,
            tool_call_count=3, created_at=NOW - 5 * MIN, updated_at=NOW - MIN)  # fmt: skip
    # OpenCode's session cost is its step costs' sum: the message the 0.5 comes from.
    _insert(conn, "messages", id="m-oc", session_id="s-oc", source="opencode", role="assistant",
            model="openai/gpt", prompt_tokens=100, completion_tokens=10, cost=0.5,
            cost_source="agent", created_at=NOW - 4 * MIN)  # fmt: skip
    durations = [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560]
    for i, ms in enumerate(durations):
        _insert(conn, "tools", id=f"s-claude:{i}", session_id="s-claude", source="claude",
                tool_name="Bash", success=0 if i in (3, 7) else 1, duration_ms=ms,
                error_message=f"Exit code {i}\nboom" if i in (3, 7) else None,
                tool_input='{"command": "make test"}',
                started_at=NOW - 29 * MIN + i * 1000, ended_at=NOW - 29 * MIN + i * 1000 + ms,
                created_at=NOW - 29 * MIN + i * 1000)  # fmt: skip
    _insert(conn, "tools", id="s-claude:sub", session_id="s-claude", source="claude",
            tool_name="Read", agent_id="agent-7", success=1, duration_ms=3,
            started_at=NOW - 20 * MIN, ended_at=NOW - 20 * MIN + 3, created_at=NOW - 20 * MIN)  # fmt: skip
    _insert(conn, "tools", id="s-claude:edit", session_id="s-claude", source="claude",
            tool_name="Edit", success=0, duration_ms=9, error_message="String to replace not found",
            created_at=NOW - 19 * MIN, started_at=NOW - 19 * MIN)  # fmt: skip
    for i in range(3):
        _insert(conn, "tools", id=f"s-oc:{i}", session_id="s-oc", source="opencode",
                tool_name="read", success=1, duration_ms=7 + i, created_at=NOW - 4 * MIN + i)  # fmt: skip
    _insert(conn, "file_operations", id="f1", session_id="s-claude", source="claude",
            tool_id="s-claude:edit", file_path="/src/app/login.py", operation_type="edited",
            lines_added=4, lines_removed=2, created_at=NOW - 19 * MIN)  # fmt: skip
    _insert(conn, "file_operations", id="f2", session_id="s-oc", source="opencode",
            tool_id="s-oc:0", file_path="/src/app/login.py", operation_type="read",
            created_at=NOW - 4 * MIN)  # fmt: skip
    _insert(conn, "session_errors", id="e1", session_id="s-claude", source="claude",
            error_type="rate_limit", error_message="429 Too Many Requests", status_code=429,
            created_at=NOW - 15 * MIN)  # fmt: skip
    _insert(conn, "compaction_events", id="c1", session_id="s-claude", source="claude",
            trigger="auto", tokens_before=150_000, tokens_after=20_000, created_at=NOW - 12 * MIN)  # fmt: skip
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def client(db: Path) -> Iterator[TestClient]:
    with TestClient(create_app(db, token=TOKEN), base_url=BASE, headers=AUTH) as c:
        yield c


def test_tools_view_counts_failures_and_exact_percentiles(client: TestClient) -> None:
    data = client.get("/api/tools?since=all").json()["data"]
    # A window this small is read row by row: exact nearest-rank (test_rollup.py covers the
    # histogram read of large windows, within 1%).
    assert data["percentiles"] == {"method": "exact", "max_relative_error": 0}
    bash = next(t for t in data["tools"] if t["tool"] == "Bash")
    durations = sorted([5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560])
    assert (bash["calls"], bash["failed"], bash["failure_rate"]) == (10, 2, 0.2)
    assert bash["p50_ms"] == durations[nearest_rank(0.5, 10) - 1] == 80
    assert bash["p95_ms"] == durations[nearest_rank(0.95, 10) - 1] == 2560
    assert bash["max_ms"] == 2560
    errors = {(e["tool"], e["error"]): e["count"] for e in data["errors"]}
    # Exit codes stay apart (they mean different things); each is one group.
    assert errors == {("Bash", "Exit code 3"): 1, ("Bash", "Exit code 7"): 1,
                      ("Edit", "String to replace not found"): 1}  # fmt: skip


def test_sessions_view_outcome_live_and_filters(client: TestClient) -> None:
    rows = {r["id"]: r for r in client.get("/api/sessions").json()["data"]}
    assert rows["s-claude"]["outcome"] == "error"  # a session error was reported
    assert rows["s-claude"]["failed_calls"] == 3 and rows["s-claude"]["errors"] == 1
    assert rows["s-oc"]["outcome"] == "running" and rows["s-oc"]["live"] is True
    assert [r["id"] for r in client.get("/api/sessions").json()["data"]] == ["s-oc", "s-claude"]
    only = lambda q: [r["id"] for r in client.get(f"/api/sessions?{q}").json()["data"]]  # noqa: E731
    assert only("agent=opencode") == ["s-oc"]
    assert only("project=/src/app") == ["s-claude"]
    assert only("outcome=error") == ["s-claude"]
    assert only("q=s-cl") == ["s-claude"]  # id prefix
    assert only("q=login") == ["s-claude"]  # title words
    assert only("q=%25") == []  # a LIKE wildcard is searched for, not expanded


def test_session_view_lanes_files_errors_compactions(client: TestClient) -> None:
    data = client.get("/api/sessions/s-claude").json()["data"]
    lanes = {c["id"]: c["lane"] for c in data["calls"]}
    assert lanes["s-claude:sub"] == "subagent agent-7" and lanes["s-claude:0"] == "main"
    assert data["failed_calls"] == 3
    first = next(c for c in data["calls"] if c["id"] == "s-claude:0")
    assert (first["summary"], first["duration_ms"]) == ("make test", 5)
    assert data["files"][0]["file_path"] == "/src/app/login.py"
    assert (data["files"][0]["lines_added"], data["files"][0]["lines_removed"]) == (4, 2)
    assert data["errors"][0]["status_code"] == 429
    assert (data["compactions"][0]["tokens_before"], data["compactions"][0]["tokens_after"]) == (
        150_000, 20_000)  # fmt: skip
    page = client.get("/sessions/s-claude")
    assert page.status_code == 200 and "String to replace not found" in page.text


def test_overview_cards_and_days(client: TestClient, now: int) -> None:
    data = client.get("/api/overview").json()["data"]
    for window in ("today", "7d", "30d"):
        card = data["cards"][window]
        if window == "today" and time.localtime(now / 1000 - 30 * 60)[:3] != time.localtime()[:3]:
            continue  # the rows go back 30 minutes: after a midnight some fall on yesterday
        assert (card["tool_calls"], card["failed"], card["sessions"]) == (15, 3, 2)
        assert card["cost"] == 1.75 and card["compactions"] == 1
    assert sum(d["tool_calls"] for d in data["days"]) == 15
    assert sum(sum(row) for row in data["hour_of_week"]) == 15
    by_model = client.get("/api/overview?by=model").json()["data"]
    assert set(by_model["groups"]) == {"claude-sonnet", "gpt"}


def test_files_view_lists_the_sessions_that_touched_a_file(client: TestClient) -> None:
    (row,) = client.get("/api/files?since=all").json()["data"]
    assert (row["writes"], row["reads"], row["sessions"]) == (1, 1, 2)
    assert {s["id"] for s in row["touched_by"]} == {"s-claude", "s-oc"}


def test_every_view_has_a_page_json_and_csv(client: TestClient) -> None:
    for path in ("/", "/sessions", "/sessions/s-claude", "/tools", "/files"):
        page = client.get(path)
        assert page.status_code == 200 and '<main id="live">' in page.text, path
        api = "/api/overview" if path == "/" else f"/api{path}"
        assert f'href="{api}"' in page.text  # the page links its JSON
        fragment = client.get(path, headers={"X-Fragment": "1"})
        assert "<html" not in fragment.text and fragment.status_code == 200
        assert client.get(api).json()["view"]
        exported = client.get(api + "?format=csv")
        assert exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert rows, path
    calls = list(csv.DictReader(io.StringIO(client.get("/api/sessions/s-claude?format=csv").text)))
    assert {r["id"]: r["duration_ms"] for r in calls}["s-claude:9"] == "2560"


def test_bad_input_is_a_clear_400_and_a_missing_session_a_404(client: TestClient) -> None:
    for query, word in (("agent=cursor", "agent"), ("since=yesterdayish", "since"),
                        ("limit=0", "limit"), ("outcome=maybe", "outcome")):  # fmt: skip
        r = client.get(f"/api/sessions?{query}")
        assert r.status_code == 400 and word in r.json()["error"], query
    assert client.get("/api/overview?by=colour").status_code == 400
    r = client.get("/api/sessions/nope")
    assert r.status_code == 404 and "nope" in r.json()["error"]
    page = client.get("/sessions?agent=cursor")
    assert page.status_code == 400 and "agent must be one of" in page.text


def test_security_headers_and_host_check(db: Path) -> None:
    with TestClient(create_app(db, token=TOKEN), base_url=BASE, headers=AUTH) as c:
        r = c.get("/")
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and r.headers["x-frame-options"] == "DENY"
        assert '<script src="/static/app.js"' in r.text and "<script>" not in r.text
        assert c.get("/static/app.css").status_code == 200
        assert c.get("/", headers={"Host": "attacker.example"}).status_code == 403
        assert c.get("/", headers={"Host": "localhost:8765"}).status_code == 200
        assert c.get("/", headers={"Host": "[::1]:8765"}).status_code == 200
    with TestClient(
        create_app(db, host="192.168.1.5", token="t"), base_url="http://192.168.1.5"
    ) as c:
        assert c.get("/api/sessions", headers={"Authorization": "Bearer t"}).status_code == 200
        assert c.get("/api/sessions").status_code == 401


def test_token_link_sets_a_cookie(db: Path) -> None:
    with TestClient(create_app(db, token="abc"), base_url=BASE, follow_redirects=False) as c:
        assert c.get("/tools").status_code == 401
        r = c.get("/tools?since=30d&token=abc")
        assert r.status_code == 303 and r.headers["location"] == "/tools?since=30d"
        assert "HttpOnly" in r.headers["set-cookie"]
        assert c.get("/tools?since=30d").status_code == 200  # the cookie now
        c.cookies.clear()
        assert c.get("/tools?token=wrong").status_code == 401


def test_token_rule_and_printed_links(tmp_path: Path) -> None:
    assert token_for("given-token", tmp_path) == ("given-token", None)
    assert not (tmp_path / "ui-token").exists()  # a given token is not stored
    token, where = token_for(None, tmp_path)
    assert where == tmp_path / "ui-token" and where.read_text().strip() == token
    for bad in ("two words", "semi;colon", "é"):
        with pytest.raises(UIError, match="visible ASCII"):
            token_for(bad, tmp_path)
    assert urls_for("127.0.0.1", 8765, "x") == ["http://127.0.0.1:8765/?token=x"]
    assert urls_for("::1", 1, "a+b&c") == ["http://[::1]:1/?token=a%2Bb%26c"]
    local, other = urls_for("0.0.0.0", 8765, "x")
    assert local == "http://127.0.0.1:8765/?token=x"
    assert other == f"http://{__import__('socket').gethostname()}:8765/?token=x"


def test_watcher_sees_another_connections_commit(db: Path) -> None:
    watcher = Watcher(db)
    try:
        assert watcher.poll() is False  # the first look only records the version
        assert watcher.poll() is False
        writer = sqlite3.connect(db)
        writer.execute("UPDATE sessions SET title = 'renamed' WHERE id = 's-oc'")
        writer.commit()
        writer.close()
        assert watcher.poll() is True and watcher.version == 1
        assert watcher.poll() is False
    finally:
        watcher.close()


def test_the_connection_cannot_write(db: Path) -> None:
    conn = connect(db)
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("DELETE FROM sessions")
    conn.close()
    with pytest.raises(UIError, match="nothing has been captured"):
        connect(db.with_name("missing.db"))


def test_the_outcome_column_counts_as_an_error_report(db: Path) -> None:
    with TestClient(create_app(db, token=TOKEN), base_url=BASE, headers=AUTH) as c:
        before = {r["id"]: r for r in c.get("/api/sessions").json()["data"]}
    fine = next(sid for sid, r in before.items() if r["outcome"] != "error")
    writer = sqlite3.connect(db)
    writer.execute("UPDATE sessions SET outcome = 'error' WHERE id = ?", (fine,))
    writer.commit()
    writer.close()
    with TestClient(create_app(db, token=TOKEN), base_url=BASE, headers=AUTH) as c:
        rows = {r["id"]: r for r in c.get("/api/sessions").json()["data"]}
    assert rows[fine]["outcome"] == "error"


def test_the_time_index_replaces_its_prefix(db: Path) -> None:
    conn = connect(db)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    conn.close()
    assert "tools_ui_time" in names and "tools_created_at" not in names


def test_cli_refuses_a_missing_database_and_a_bad_token(db: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {"AGENTD_HOME": str(tmp_path / "empty"), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "agentd", "ui", "--port", "0"], env=env,
                       capture_output=True, text=True, timeout=30)  # fmt: skip
    assert r.returncode == 1 and "no database" in r.stderr and "Traceback" not in r.stderr
    env = {"AGENTD_HOME": str(db.parent), "PATH": "/usr/bin:/bin", "AGENTD_UI_TOKEN": "a;b"}
    r = subprocess.run([sys.executable, "-m", "agentd", "ui", "--port", "0"], env=env,
                       capture_output=True, text=True, timeout=30)  # fmt: skip
    assert r.returncode == 1 and "visible ASCII" in r.stderr and "Traceback" not in r.stderr


def test_every_endpoint_and_filter_is_documented() -> None:
    from agentd.ui import app as ui_app
    from agentd.ui.filters import Filters

    text = (Path(__file__).resolve().parents[1] / "docs" / "ui.md").read_text()
    apis = {"overview": "/api/overview", "sessions": "/api/sessions", "session": "/api/sessions/ID",
            "tools": "/api/tools", "files": "/api/files"}  # fmt: skip
    assert set(apis) == set(ui_app.VIEWS)
    for path in apis.values():
        assert f"`{path}`" in text, path
    for name in Filters.__dataclass_fields__:
        assert f"| `{name}` |" in text, name
    assert "| `by` |" in text and "`/api/live`" in text
