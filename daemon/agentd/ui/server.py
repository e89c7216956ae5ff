"""Serving the dashboard: the token, bind checks, uvicorn, the browser.

The CLI (cli/ui.py) calls `run(**options)`; tests call `token_for`, `urls_for` and `create_app`
directly.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import webbrowser
from pathlib import Path
from urllib.parse import quote

import uvicorn

from agentd.ui.app import create_app
from agentd.ui.db import UIError, connect
from agentd.ui.security import is_loopback, usable_token
from agentd.ui.tokenfile import TOKEN_FILE, load_or_create

__all__ = ["run", "token_for", "urls_for", "open_page"]

_WILDCARD = ("0.0.0.0", "::", "")


def token_for(given: str | None, state_dir: Path) -> tuple[str, Path | None]:
    """The token every request must carry, loopback included (another user of this machine can
    reach a loopback port too), and the file it is kept in (None for a given one). Without one
    given, the state dir's own (tokenfile.py), so links and cookies survive a restart."""
    if given:
        if not usable_token(given):
            raise UIError("the token must be 1 to 512 visible ASCII characters, without "
                          'spaces, `"`, `,`, `;` or `\\` (it is kept in a cookie)')  # fmt: skip
        return given, None
    try:
        return load_or_create(state_dir), state_dir / TOKEN_FILE
    except OSError as e:
        raise UIError(f"cannot keep the dashboard's token in {state_dir / TOKEN_FILE}: {e}. "
                      "Give one in AGENTD_UI_TOKEN instead.") from None  # fmt: skip


OPEN_PAGE = "ui-open.html"
MIN_NETWORK_TOKEN = (
    16  # characters of a token given for a bind off loopback (the state dir's has 43)
)


def open_page(state_dir: Path, url: str) -> str:
    """A `file://` page (0600, in the private state dir) that forwards the browser to `url`: what
    --open hands the browser, so the token stays out of its command line, which `ps` shows to
    every user for as long as that browser runs (the way Jupyter opens its link)."""
    import html

    from agentd import trust

    link = html.escape(url, quote=True)
    page = (
        f'<!doctype html>\n<meta charset="utf-8">\n<meta http-equiv="refresh" content="0;url={link}">'
        f'\n<title>agentd</title>\n<p><a href="{link}">Open the agentd dashboard</a></p>\n'
    )
    dir_fd = trust.open_private_dir(str(state_dir))
    try:
        fd = trust.open_private(OPEN_PAGE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, dir_fd=dir_fd)
        try:
            os.write(fd, page.encode())
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)
    return (state_dir / OPEN_PAGE).absolute().as_uri()


def urls_for(host: str, port: int, token: str) -> list[str]:
    """The links to print: this machine's own first (what --open opens), then, on a wildcard
    bind, one naming the machine (its hostname) for the others."""

    def url(name: str) -> str:
        name = f"[{name}]" if ":" in name else name
        return f"http://{name}:{port}/?token={quote(token, safe='')}"

    if host in _WILDCARD:
        return [url("127.0.0.1"), url(socket.gethostname())]
    return [url(host)]


def _bindable(host: str, port: int) -> int:
    """The port (a free one for 0), after checking it can be bound: a clear error now, rather
    than uvicorn's log line and exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with contextlib.closing(socket.socket(family, socket.SOCK_STREAM)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise UIError(
                f"cannot serve on {host}:{port}: {e.strerror or e}"
                + (" (try another --port, or --port 0)" if port else "")
            ) from None
        return int(s.getsockname()[1])


def run(*, db_path: Path, state_dir: Path, host: str = "127.0.0.1", port: int = 8765,
        token: str | None = None, open_browser: bool = False, log_level: str = "warning") -> None:  # fmt: skip
    """Serve until interrupted. Port 0 picks a free port."""
    connect(db_path).close()  # a clear error now rather than on the first page
    token, token_file = token_for(token, state_dir)
    if not is_loopback(host) and len(token) < MIN_NETWORK_TOKEN:
        raise UIError(f"a token served to other machines must be at least {MIN_NETWORK_TOKEN}"
                      ' characters (anyone on the network can try short ones): e.g. '
                      'AGENTD_UI_TOKEN="$(openssl rand -hex 16)"')  # fmt: skip
    port = _bindable(host, port)
    urls = urls_for(host, port, token)
    config = uvicorn.Config(
        create_app(db_path, host=host, token=token, token_file=token_file),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,  # open event streams would hold shutdown otherwise
    )
    server = uvicorn.Server(config)
    print(f"agentd ui: serving {db_path} (read-only) at {urls[0]}", flush=True)
    for other in urls[1:]:
        print(f"  from other machines: {other}", flush=True)
    if token_file is not None:
        print(f"The token is kept in {token_file} (delete it for a new one).", flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    if open_browser:
        # After the server is up: a browser opened first would show a connection error.
        def opener() -> None:
            while not server.started and not server.should_exit:
                threading.Event().wait(0.05)
            if server.started:
                try:
                    webbrowser.open(open_page(state_dir, urls[0]))
                except OSError as e:  # no page to hand over: say so, never the token in argv
                    print(f"Cannot open a browser: {e}. Open the link above.", flush=True)

        threading.Thread(target=opener, daemon=True).start()
    server.run()
