"""`agentd ui` against hostile requests and hostile data: the token (always required, persisted
in the state dir), the Host rule off loopback, the `?token=` redirect, extreme timestamps, a
corrupt database, bad query values, CSV formulas, bidi controls in names. The database is a
real SQLite file built by the real migrations (test_ui.py's fixture); the CLI tests run the
real `agentd ui` process."""

# ruff: noqa: F811 (test_ui's fixtures `db` and `now`, imported, are parameters here)
from __future__ import annotations

import csv
import io
import logging
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from test_ui import BASE, MIN, _insert, db, now  # noqa: F401 (fixtures)

from agentd.db.store import connect_sync
from agentd.ui import format as fmt
from agentd.ui.app import create_app
from conftest import wait_for

TOKEN_FILE = "ui-token"  # in the state dir
TOKEN = "hostile-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(db: Path) -> Iterator[TestClient]:
    with TestClient(create_app(db, token=TOKEN), base_url=BASE, headers=AUTH) as c:
        yield c


def _add(path: Path, **session: object) -> None:
    conn = connect_sync(path)
    _insert(conn, "sessions", **session)
    conn.commit()
    conn.close()


# 1. A token, always ------------------------------------------------------------------------


def test_loopback_needs_the_token_too_and_the_401_says_where_it_is(
    db: Path, tmp_path: Path
) -> None:
    app = create_app(db, token=TOKEN, token_file=tmp_path / TOKEN_FILE)
    with TestClient(app, base_url=BASE) as c:
        r = c.get("/api/sessions")
        assert r.status_code == 401 and "agentd ui" in r.text
        assert str(tmp_path / TOKEN_FILE) in r.text
        assert c.get("/api/sessions", headers=AUTH).status_code == 200
    with pytest.raises(TypeError):
        create_app(db)  # type: ignore[call-arg]  # no way to build one without a token


def test_the_token_file_is_private_persisted_and_replaced_when_bad(tmp_path: Path) -> None:
    from agentd.ui.tokenfile import load_or_create

    state = tmp_path / "state"
    token = load_or_create(state)
    path = state / TOKEN_FILE
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert load_or_create(state) == token  # a bookmark keeps working after a restart
    path.write_text("not a token; \x00\n")
    again = load_or_create(state)
    assert again != token and re.fullmatch(r"[A-Za-z0-9_-]{43}", again)
    path.chmod(0o644)  # loosened by hand: made private again, the token kept
    assert load_or_create(state) == again and stat.S_IMODE(path.stat().st_mode) == 0o600
    path.unlink()
    path.symlink_to(tmp_path / "elsewhere")  # a symlink is not followed: replaced by a file
    third = load_or_create(state)
    assert not path.is_symlink() and path.read_text().strip() == third
    assert not (tmp_path / "elsewhere").exists()
    assert [p.name for p in state.iterdir()] == [TOKEN_FILE]  # no temporary file left


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _serve(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], list[str]]:
    """`agentd ui --port 0 ARGS`, and the URLs it printed (read from its stdout)."""
    proc = subprocess.Popen([sys.executable, "-m", "agentd", "ui", "--port", "0", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("Press Ctrl-C"):
            break
    urls = re.findall(r"http://\S+", "".join(lines))
    assert urls, "".join(lines) + (proc.stderr.read() if proc.poll() is not None else "")  # type: ignore[union-attr]
    port = int(urls[0].split(":")[2].split("/")[0])

    def up() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return proc.poll() is not None

    assert wait_for(up, timeout=60) and proc.poll() is None
    return proc, urls


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def test_the_cli_prints_a_token_link_that_survives_a_restart(db: Path, tmp_path: Path) -> None:
    env = {"AGENTD_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "AGENTD_AUTOSTART": "0"}
    proc, urls = _serve(env)
    try:
        (url,) = urls  # loopback: one address
        token = (tmp_path / TOKEN_FILE).read_text().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith(f"/?token={token}")
        base = url.split("?")[0]
        status, body = _get(base + "api/sessions")
        assert status == 401 and "ui-token" in body  # another local user, without the token
        assert _get(base + "api/sessions", {"Authorization": f"Bearer {token}"})[0] == 200
        assert _get(url)[0] == 303  # the printed link: into a cookie
    finally:
        _stop(proc)
    proc, urls = _serve(env)
    try:
        assert urls == [url.replace(base, urls[0].split("?")[0])]  # same token, maybe new port
    finally:
        _stop(proc)
    # The token from the environment (not argv, which `ps` shows): the file is not used.
    proc, urls = _serve(dict(env, AGENTD_UI_TOKEN="from-the-environment"))
    try:
        assert urls[0].endswith("/?token=from-the-environment")
        bearer = {"Authorization": "Bearer from-the-environment"}
        assert _get(urls[0].split("?")[0] + "api/overview", bearer)[0] == 200
    finally:
        _stop(proc)


def test_open_hands_the_browser_a_private_page_not_the_token(db: Path, tmp_path: Path) -> None:
    """A browser's command line is in `ps` for as long as it runs: --open gives it a file in the
    private state dir that forwards to the token link (as Jupyter does), never the link."""
    (tmp_path / "bin").mkdir()
    args = tmp_path / "bin" / "browser-args"
    browser = tmp_path / "bin" / "browser"
    browser.write_text(f'#!/bin/sh\necho "$@" > {args}\n')
    browser.chmod(0o700)
    env = {"AGENTD_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "AGENTD_AUTOSTART": "0",
           "BROWSER": str(browser)}  # fmt: skip
    proc, urls = _serve(env, "--open")
    try:
        assert wait_for(lambda: args.exists() and args.read_text().strip(), timeout=60)
    finally:
        _stop(proc)
    token = (tmp_path / TOKEN_FILE).read_text().strip()
    opened = args.read_text().strip()
    assert token not in opened and opened.startswith("file://")
    page = Path(urllib.parse.unquote(opened.removeprefix("file://")))
    assert stat.S_IMODE(page.stat().st_mode) == 0o600 and page.parent == tmp_path
    assert f'url={urls[0]}"' in page.read_text()


def test_a_short_token_is_refused_off_loopback(db: Path, tmp_path: Path) -> None:
    """Served to other machines, the token is all that guards the data: a short one anybody on
    the network can try is refused, with how to make a good one."""
    env = {"AGENTD_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "AGENTD_AUTOSTART": "0",
           "AGENTD_UI_TOKEN": "short"}  # fmt: skip
    refused = subprocess.run([sys.executable, "-m", "agentd", "ui", "--host", "0.0.0.0", "--port",
                              "0"], env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert refused.returncode == 1 and "at least 16 characters" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr and refused.stdout == ""


def test_the_cli_off_loopback_prints_a_link_for_other_machines(db: Path, tmp_path: Path) -> None:
    env = {"AGENTD_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "AGENTD_AUTOSTART": "0"}
    proc, urls = _serve(env, "--host", "0.0.0.0")
    try:
        token = (tmp_path / TOKEN_FILE).read_text().strip()
        hostname = socket.gethostname()
        assert any(u.startswith(f"http://{hostname}:") for u in urls), urls
        assert any(u.startswith("http://127.0.0.1:") for u in urls), urls
        assert all(u.endswith(f"/?token={token}") for u in urls)
        local = next(u for u in urls if "127.0.0.1" in u).split("?")[0]
        assert _get(local + "api/overview")[0] == 401
        # Another machine names this one as it knows it: any Host, with the token.
        headers = {"Authorization": f"Bearer {token}", "Host": "192.0.2.2:1234"}
        assert _get(local + "api/overview", headers)[0] == 200
    finally:
        _stop(proc)


def test_no_example_puts_a_secret_in_argv() -> None:
    docs = (Path(__file__).resolve().parents[1] / "docs" / "ui.md").read_text()
    done = subprocess.run([sys.executable, "-m", "agentd", "ui", "--help"], capture_output=True,
                          text=True, timeout=30, env=dict(os.environ))  # fmt: skip
    for text in (docs, done.stdout):
        assert "AGENTD_UI_TOKEN" in text
        # No example command carries one (the option's own line in --help does not run).
        assert not re.findall(r"agentd\b.*--token\b.*", text)
        assert "agentd ui" in text


# 2. Off loopback, any Host -----------------------------------------------------------------


def test_off_loopback_any_host_is_served_with_the_token(db: Path) -> None:
    with TestClient(create_app(db, host="0.0.0.0", token=TOKEN), base_url=BASE) as c:
        for host in ("192.0.2.2", "192.0.2.2:8765", "dashboard.lan", "[2001:db8::1]:80"):
            assert c.get("/api/overview", headers={**AUTH, "Host": host}).status_code == 200
            assert c.get("/api/overview", headers={"Host": host}).status_code == 401
    with TestClient(create_app(db, token=TOKEN), base_url=BASE) as c:  # loopback: strict
        assert c.get("/api/overview", headers={**AUTH, "Host": "192.0.2.2"}).status_code == 403
    # The 401 names the token file's path on loopback only: off it, anyone on the network sees
    # the page, and the path names the user's home.
    hidden = Path("/home/someone/.local/state/agentd/ui-token")
    with TestClient(
        create_app(db, host="0.0.0.0", token=TOKEN, token_file=hidden), base_url=BASE
    ) as c:
        refused = c.get("/api/overview", headers={"Host": "192.0.2.2"})
        assert refused.status_code == 401 and "someone" not in refused.text
        assert "ui-token" in refused.text
    with TestClient(create_app(db, token=TOKEN, token_file=hidden), base_url=BASE) as c:
        assert str(hidden) in c.get("/api/overview").text


# 3. Extreme timestamps ---------------------------------------------------------------------


@pytest.mark.parametrize("at", [253402343999000, -62135640000000])
def test_an_extreme_timestamp_renders_every_page(db: Path, at: int) -> None:
    _add(db, id="s-far", source="claude", title="far away", created_at=at, updated_at=at)
    conn = connect_sync(db)
    _insert(conn, "tools", id="s-far:0", session_id="s-far", source="claude", tool_name="Bash",
            success=1, duration_ms=5, started_at=at, ended_at=at + 5, created_at=at)  # fmt: skip
    _insert(conn, "messages", id="m-far", session_id="s-far", source="claude", role="assistant",
            prompt_tokens=10, completion_tokens=1, created_at=at)  # fmt: skip
    conn.commit()
    conn.close()
    with TestClient(create_app(db, token=TOKEN), base_url=BASE, headers=AUTH) as c:
        for path in ("/", "/sessions", "/sessions/s-far", "/tools?since=all", "/files",
                     "/api/overview", "/api/sessions"):  # fmt: skip
            assert c.get(path).status_code == 200, path
        assert str(at) in c.get("/sessions").text  # shown as the raw value
    assert fmt.when(at) == f"{at} (epoch ms)"


# 4. A corrupt database ---------------------------------------------------------------------


def test_a_corrupt_database_is_a_clear_503(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    with TestClient(create_app(db, token=TOKEN), base_url=BASE, headers=AUTH) as c:
        assert c.get("/api/sessions").status_code == 200
        with open(db, "r+b") as f:  # what the adversary did while the dashboard ran
            f.write(b"garbage!" * 512)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            r = c.get("/api/sessions")
            assert r.status_code == 503
            assert r.headers["content-type"] == "application/json"
            assert "database" in r.json()["error"] and "\n" not in r.json()["error"]
            page = c.get("/sessions")
            assert page.status_code == 503 and "text/html" in page.headers["content-type"]
    ours = [rec for rec in caplog.records if rec.name.startswith("agentd.ui")]
    assert len(ours) == 2 and all(rec.exc_info is None for rec in ours)
    assert all("\n" not in rec.getMessage() for rec in ours)


# 5. Unicode in limit, token and path -------------------------------------------------------


def test_a_unicode_digit_limit_is_a_400(client: TestClient) -> None:
    for value in ("%C2%B2", "%D9%A3", "1%C2%B2"):  # ² and ٣: str.isdigit() says yes
        r = client.get(f"/api/sessions?limit={value}")
        assert r.status_code == 400 and "limit" in r.json()["error"], value
    assert client.get("/api/files?limit=%C2%B2").status_code == 400


def test_a_non_ascii_token_is_a_401(db: Path) -> None:
    with TestClient(create_app(db, token=TOKEN), base_url=BASE) as c:
        assert c.get("/api/overview?token=%C3%A9").status_code == 401
        r = c.get("/api/overview", headers={"Authorization": "Bearer é".encode()})  # type: ignore[dict-item]
        assert r.status_code == 401
        r = c.get("/api/overview", headers={"Cookie": "agentd_ui_token=%C3%A9é".encode()})  # type: ignore[dict-item]
        assert r.status_code == 401


def test_another_apps_cookies_or_a_stale_one_do_not_lock_the_user_out(db: Path) -> None:
    """Cookies ignore ports: every app on 127.0.0.1 sends its own with each request. One that
    http.cookies cannot parse made it drop the whole header, the dashboard's token with it (a
    401 no link could cure); a stale dashboard cookie hid a good Bearer token."""
    with TestClient(create_app(db, token=TOKEN), base_url=BASE) as c:
        for other in ('a={"x":1}', "foo=bar baz", 'sess="abc', "k=v\\x"):
            cookies = f"{other}; agentd_ui_token={TOKEN}"
            assert c.get("/api/overview", headers={"Cookie": cookies}).status_code == 200, other
        stale = {"Cookie": "agentd_ui_token=an-old-token-of-a-restart", **AUTH}
        assert c.get("/api/overview", headers=stale).status_code == 200
        assert (
            c.get("/api/overview?token=" + TOKEN, follow_redirects=False)
            .headers["set-cookie"]
            .endswith("SameSite=Lax")
        )


def test_a_websocket_is_refused(db: Path) -> None:
    from starlette.websockets import WebSocketDisconnect

    with TestClient(create_app(db, token=TOKEN), base_url=BASE) as c:
        with pytest.raises(WebSocketDisconnect) as refused, c.websocket_connect("/api/overview"):
            pass
        assert refused.value.code == 1008


def test_the_token_redirect_stays_on_this_site_and_encodes_the_path(db: Path) -> None:
    with TestClient(create_app(db, token=TOKEN), base_url=BASE, follow_redirects=False) as c:
        where = lambda path: c.get(f"{BASE}{path}?token={TOKEN}").headers["location"]  # noqa: E731
        assert where("//evil.example/x") == "/evil.example/x"
        assert where("///evil.example") == "/evil.example"
        assert where("/\\evil.example/x") == "/%5Cevil.example/x"
        assert where("/%E2%82%AC") == "/%E2%82%AC"
        assert where("/%0d%0aSet-Cookie:%20x=1") == "/%0D%0ASet-Cookie:%20x=1"  # one header
        r = c.get(f"{BASE}/tools?since=30d&token={TOKEN}")
        assert r.status_code == 303 and r.headers["location"] == "/tools?since=30d"


# 7. The files filter keeps its path --------------------------------------------------------


def test_the_files_filter_keeps_its_path(client: TestClient) -> None:
    text = client.get("/files?path=/src/app/login.py").text
    assert '<input type="hidden" name="path" value="/src/app/login.py">' in text
    assert "&lt;input" not in text
    hostile = client.get('/files?path="><b>x').text
    assert '<input type="hidden" name="path" value="&#34;&gt;&lt;b&gt;x">' in hostile


# 8. CSV formulas ---------------------------------------------------------------------------


def test_csv_cells_cannot_start_a_formula(db: Path, client: TestClient, now: int) -> None:
    titles = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)", "\tTAB",
              "\rCR", "plain"]  # fmt: skip
    for i, title in enumerate(titles):
        # ended before it started: a negative duration, a number that must stay one
        _add(db, id=f"s-f{i}", source="claude", title=title, created_at=now - MIN,
             updated_at=now - 2 * MIN, ended_at=now - 2 * MIN)  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(client.get("/api/sessions?format=csv").text)))
    got = {r["id"]: r for r in rows}
    for i, title in enumerate(titles):
        expected = title if title == "plain" else "'" + title
        assert got[f"s-f{i}"]["title"] == expected
        assert got[f"s-f{i}"]["duration_ms"] == str(-MIN)  # a number: left alone
    # JSON keeps the raw value.
    data = {r["id"]: r for r in client.get("/api/sessions").json()["data"]}
    assert data["s-f0"]["title"] == titles[0]
    assert "formula" in (Path(__file__).resolve().parents[1] / "docs" / "ui.md").read_text()


# 9. Bidi controls --------------------------------------------------------------------------


def test_bidi_controls_are_shown_not_obeyed(db: Path, client: TestClient, now: int) -> None:
    _add(db, id="s-rtl", source="claude", title="\u202eRTL gnp.exe\u202c",
         project_path="/p/\u2067x", project_name="pro\u2066ject", model="m\u200fodel",
         created_at=now - MIN, updated_at=now - MIN)  # fmt: skip
    controls = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f]")
    for path in ("/sessions", "/sessions/s-rtl", "/", "/tools", "/files"):
        text = client.get(path).text
        assert not controls.search(text), path
    text = client.get("/sessions").text
    assert "<bdi>[U+202E]RTL gnp.exe[U+202C]</bdi>" in text
    assert "<bdi>pro[U+2066]ject</bdi>" in text and "m[U+200F]odel" in text
    assert client.get("/api/sessions/s-rtl").json()["data"]["session"]["title"].startswith("\u202e")
