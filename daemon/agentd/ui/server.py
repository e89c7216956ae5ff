"""Serving the dashboard: bind checks, the token rule, uvicorn, the browser.

The CLI (cli/ui.py) calls `run(**options)`; tests call `check_bind` and `create_app` directly.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
import webbrowser
from pathlib import Path

import uvicorn

from agentd.ui.app import create_app
from agentd.ui.db import UIError, connect
from agentd.ui.security import is_loopback

__all__ = ["run", "check_bind", "url_for"]


def check_bind(host: str, token: str | None) -> None:
    """A dashboard reachable from other machines needs a token; refuse to start without one."""
    if not is_loopback(host) and not token:
        raise UIError(
            f"refusing to serve on {host}: that address is reachable from other machines.\n"
            "Give a token (--token, or AGENTD_UI_TOKEN), e.g. "
            f"--token {secrets.token_urlsafe(16)}, or serve on 127.0.0.1 (the default)."
        )


def url_for(host: str, port: int, token: str | None) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


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


def run(*, db_path: Path, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
        open_browser: bool = False, log_level: str = "warning") -> None:  # fmt: skip
    """Serve until interrupted. Port 0 picks a free port."""
    check_bind(host, token)
    connect(db_path).close()  # a clear error now rather than on the first page
    port = _bindable(host, port)
    url = url_for(host, port, token)
    config = uvicorn.Config(
        create_app(db_path, host=host, token=token),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,  # open event streams would hold shutdown otherwise
    )
    server = uvicorn.Server(config)
    print(f"agentd ui: serving {db_path} (read-only) at {url}", flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    if open_browser:
        # After the server is up: a browser opened first would show a connection error.
        def opener() -> None:
            while not server.started and not server.should_exit:
                threading.Event().wait(0.05)
            if server.started:
                webbrowser.open(url)

        threading.Thread(target=opener, daemon=True).start()
    server.run()
