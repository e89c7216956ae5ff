"""What keeps the dashboard private to its user: a Host header check (DNS rebinding), a token
when one is set (always, off loopback), and response headers that forbid any request to
another origin. Pure ASGI middleware, in front of every route, static files included."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

__all__ = ["Guard", "LOOPBACK", "COOKIE", "CSP", "is_loopback"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
COOKIE = "agentd_ui_token"
# Everything the page loads comes from this server: no CDN, no inline script, no framing.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def is_loopback(host: str) -> bool:
    return host.strip("[]") in LOOPBACK or host.startswith("127.")


def _host_name(value: str) -> str:
    """The host of a Host header, without its port: `[::1]:8080` -> `::1`."""
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Guard:
    """Refuses a request whose Host is not this server (403) or that lacks the token (401);
    adds the security headers to every response."""

    def __init__(self, app: ASGIApp, *, bound_host: str, token: str | None) -> None:
        self.app = app
        self.token = token
        self.allowed = set(LOOPBACK) | {bound_host.strip("[]").lower()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = _host_name(headers.get("host", "")).lower()
        if host not in self.allowed:
            await _plain(send, 403, f"Host {host or '(none)'!r} is not allowed: open the "
                         "dashboard at the address `agentd ui` printed.")  # fmt: skip
            return
        if self.token is not None:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            given = query.get("token")
            if given is not None and hmac.compare_digest(given, self.token):
                # A `?token=` link: keep it as a cookie, then drop it from the address bar.
                query.pop("token")
                location = scope["path"] + (f"?{urlencode(query)}" if query else "")
                await _redirect(send, location, self.token)
                return
            cookie = SimpleCookie(headers.get("cookie", "")).get(COOKIE)
            bearer = headers.get("authorization", "").removeprefix("Bearer ").strip()
            presented = (cookie.value if cookie else "") or bearer
            if not presented or not hmac.compare_digest(presented, self.token):
                await _plain(send, 401, "This dashboard needs its token: open the link "
                             "`agentd ui` printed (it ends in ?token=...).")  # fmt: skip
                return

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _plain(send: Send, status: int, text: str) -> None:
    body = (text + "\n").encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), *HEADERS]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Send, location: str, token: str) -> None:
    cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode("latin-1")),
                            (b"set-cookie", cookie.encode("latin-1")),
                            (b"content-length", b"0"), *HEADERS]})  # fmt: skip
    await send({"type": "http.response.body", "body": b""})
