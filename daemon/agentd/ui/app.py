"""The dashboard as an ASGI app: one route per view, each as a page, as JSON (`/api/...`) and
as CSV (`/api/...?format=csv`), plus the live event stream the pages listen to.

Views are plain functions over a read-only connection (views.py, session.py); this module only
turns their data into responses. Sync endpoints run in Starlette's thread pool, each with its
own short-lived connection, so a slow read never blocks the event loop or another request.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from agentd import __version__
from agentd.ui import charts, format as fmt, views
from agentd.ui.db import UIError, Watcher, connect
from agentd.ui.filters import AGENTS, OUTCOMES, WINDOWS, FilterError, Filters
from agentd.ui.format import FILTERS
from agentd.ui.security import Guard
from agentd.ui.session import session as session_data

__all__ = ["create_app", "POLL_SECONDS"]

HERE = Path(__file__).resolve().parent
POLL_SECONDS = 0.25  # how often the server looks for new data (PRAGMA data_version)
HEARTBEAT_SECONDS = 15.0
_encoder = msgspec.json.Encoder()
_log = logging.getLogger("agentd.ui")


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=fmt.visible,
    )
    env.filters.update(FILTERS)
    env.globals.update(charts=charts, fmt=fmt, version=__version__, AGENTS=AGENTS, OUTCOMES=OUTCOMES,
                       WINDOWS=WINDOWS)  # fmt: skip
    return env


class _View:
    """One view: where its data comes from, its template, and its rows for CSV."""

    def __init__(self, name: str, template: str, load: Callable[[sqlite3.Connection, Request], Any],
                 rows: Callable[[Any], list[dict[str, Any]]]) -> None:  # fmt: skip
        self.name, self.template, self.load, self.rows = name, template, load, rows


def _filters(request: Request, *, since: str = "all", limit: int = 100) -> Filters:
    return Filters.parse(request.query_params, since=since, limit=limit)


def _load_overview(conn: sqlite3.Connection, request: Request) -> Any:
    by = request.query_params.get("by", "project")
    if by not in ("project", "model", "agent"):
        raise FilterError(f"by must be project, model or agent, not {by!r}")
    return views.overview(conn, _filters(request), by=by)


def _load_sessions(conn: sqlite3.Connection, request: Request) -> Any:
    return views.sessions(conn, _filters(request))


def _load_session(conn: sqlite3.Connection, request: Request) -> Any:
    data = session_data(conn, request.path_params["session_id"])
    if data is None:
        raise LookupError(f"no session {request.path_params['session_id']!r} in the database")
    return data


def _load_tools(conn: sqlite3.Connection, request: Request) -> Any:
    return views.tools(conn, _filters(request, since="7d"))


def _load_files(conn: sqlite3.Connection, request: Request) -> Any:
    return views.files(conn, _filters(request, since="7d", limit=50))


def _overview_rows(data: Any) -> list[dict[str, Any]]:
    rows = []
    for d in data["days"]:
        row = {"day": d["day"], "tool_calls": d["tool_calls"], "failed": d["failed"]}
        for g in data["groups"]:
            row[f"cost {g}"] = d["cost"].get(g, 0)
            row[f"tokens {g}"] = d["tokens"].get(g, 0)
        rows.append(row)
    return rows


_CALL_COLUMNS = ("id", "lane", "tool_name", "outcome", "duration_ms", "started_at", "ended_at",
                 "exit_code", "error_message", "summary", "file_path")  # fmt: skip

VIEWS = {
    "overview": _View("overview", "overview.html", _load_overview, _overview_rows),
    "sessions": _View("sessions", "sessions.html", _load_sessions, lambda d: d),
    "session": _View("session", "session.html", _load_session,
                     lambda d: [{k: c[k] for k in _CALL_COLUMNS} for c in d["calls"]]),
    "tools": _View("tools", "tools.html", _load_tools, lambda d: d["tools"]),
    "files": _View("files", "files.html", _load_files,
                   lambda d: [{**{k: v for k, v in r.items() if k != "touched_by"},
                               "sessions_ids": " ".join(s["id"] for s in r["touched_by"])}
                              for r in d]),
}  # fmt: skip


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (`=HYPERLINK(...)` in a session title),
    made text by a leading `'` (OWASP's CSV injection rule). Numbers stay numbers."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
    return out.getvalue()


def create_app(db_path: Path, *, token: str, host: str = "127.0.0.1",
               token_file: Path | None = None) -> Guard:  # fmt: skip
    """The dashboard over the database at db_path, behind the token/Host guard (token_file: where
    the refusal page says the token is)."""
    env = _env()
    watcher = Watcher(db_path)
    changed = asyncio.Event()  # replaced after each change; stream clients wait on it

    def respond(view: _View, request: Request, kind: str) -> Response:
        try:
            conn = connect(db_path)
        except UIError as e:
            return _error(env, request, kind, 503, str(e))
        try:
            data = view.load(conn, request)
            choices = views.choices(conn) if kind == "page" else None
        except FilterError as e:
            return _error(env, request, kind, 400, str(e))
        except LookupError as e:
            return _error(env, request, kind, 404, str(e.args[0]))
        except sqlite3.DatabaseError as e:  # damaged, replaced, or locked past the timeout
            # One line, no traceback: the dashboard is fine, the file is not (or not now).
            _log.warning("agentd ui: %s %s: cannot read %s: %s", request.method, request.url.path,
                         db_path, e)  # fmt: skip
            return _error(env, request, kind, 503, f"The database cannot be read now ({e}). "
                          "`agentd doctor` checks it.")  # fmt: skip
        finally:
            conn.close()
        if kind == "json" and request.query_params.get("format") == "csv":
            return PlainTextResponse(_csv(view.rows(data)), media_type="text/csv",
                                     headers={"content-disposition":
                                              f'attachment; filename="agentd-{view.name}.csv"'})  # fmt: skip
        if kind == "json":
            return Response(_encoder.encode({"view": view.name, "data": data}),
                            media_type="application/json")  # fmt: skip
        fragment = request.headers.get("x-fragment") == "1"
        template = env.get_template(view.template)
        html = template.render(request=request, data=data, choices=choices, view=view.name,
                               args=request.query_params, fragment=fragment,
                               api=_api_url(request))  # fmt: skip
        return HTMLResponse(html, headers={"cache-control": "no-store"})

    def endpoint(view: _View, kind: str) -> Callable[[Request], Response]:
        def handle(request: Request) -> Response:
            return respond(view, request, kind)

        return handle

    async def live(request: Request) -> StreamingResponse:
        """Server-Sent Events: one `change` message whenever the database changed."""

        async def stream() -> AsyncIterator[str]:
            yield f"retry: 1000\nevent: hello\ndata: {watcher.version}\n\n"
            while not await request.is_disconnected():
                event = app.state.changed
                try:
                    await asyncio.wait_for(event.wait(), HEARTBEAT_SECONDS)
                    yield f"event: change\ndata: {watcher.version}\n\n"
                except TimeoutError:
                    yield ": heartbeat\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"cache-control": "no-store"})  # fmt: skip

    async def poll() -> None:
        while True:
            if await asyncio.to_thread(watcher.poll):
                app.state.changed.set()
                app.state.changed = asyncio.Event()
            await asyncio.sleep(POLL_SECONDS)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(poll())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            watcher.close()

    routes = [
        Route("/", endpoint(VIEWS["overview"], "page")),
        Route("/sessions", endpoint(VIEWS["sessions"], "page")),
        Route("/sessions/{session_id:path}", endpoint(VIEWS["session"], "page")),
        Route("/tools", endpoint(VIEWS["tools"], "page")),
        Route("/files", endpoint(VIEWS["files"], "page")),
        Route("/api/overview", endpoint(VIEWS["overview"], "json")),
        Route("/api/sessions", endpoint(VIEWS["sessions"], "json")),
        Route("/api/sessions/{session_id:path}", endpoint(VIEWS["session"], "json")),
        Route("/api/tools", endpoint(VIEWS["tools"], "json")),
        Route("/api/files", endpoint(VIEWS["files"], "json")),
        Route("/api/live", live),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.changed = changed
    return Guard(app, bound_host=host, token=token,
                 token_file=str(token_file) if token_file else None)  # fmt: skip


def _api_url(request: Request) -> str:
    """This page's JSON endpoint, with the same filters (the page links it, and its CSV)."""
    query = f"?{request.url.query}" if request.url.query else ""
    return f"/api{request.url.path if request.url.path != '/' else '/overview'}{query}"


def _error(env: Environment, request: Request, kind: str, status: int, message: str) -> Response:
    if kind == "json":
        return Response(json.dumps({"error": message}), status_code=status,
                        media_type="application/json")  # fmt: skip
    html = env.get_template("error.html").render(request=request, status=status, message=message,
                                                 view="", args=request.query_params)  # fmt: skip
    return HTMLResponse(html, status_code=status)
