"""What keeps the dashboard private to its user: a token on every request (another local user
can reach a loopback port too), a Host header check on loopback binds (DNS rebinding), and
response headers that forbid any request to another origin. Pure ASGI middleware, in front of
every route, static files included."""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from starlette.requests import cookie_parser

__all__ = ["Guard", "LOOPBACK", "COOKIE", "CSP", "is_loopback", "same_origin_path", "usable_token"]

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


# What a cookie value carries as is (RFC 6265's cookie-octet): visible ASCII but for `"`, `,`,
# `;` and `\`. A token outside it could not be kept in the cookie the `?token=` link sets.
_COOKIE_SAFE = re.compile(r"[!#-+\--:<-\[\]-~]{1,512}")


def usable_token(token: str) -> bool:
    return _COOKIE_SAFE.fullmatch(token) is not None


def is_loopback(host: str) -> bool:
    return host.strip("[]") in LOOPBACK or host.startswith("127.")


def _host_name(value: str) -> str:
    """The host of a Host header, without its port: `[::1]:8080` -> `::1`."""
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def same_origin_path(path: str) -> str:
    """`path` as a Location that stays on this server: one leading slash (`//host/x` would be
    another site), and percent-encoded (a `\\`, a CR LF or a non-ASCII character would make
    another site, a split header, or no header at all)."""
    return "/" + quote(path.lstrip("/"), safe="/:@!$&'()*+,;=-._~")


def _same(given: str, token: bytes) -> bool:
    # Bytes: compare_digest refuses str with non-ASCII characters (a TypeError, then a 500).
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token)


class Guard:
    """Refuses a request that lacks the token (401) or, on a loopback bind, whose Host is not
    this server (403); adds the security headers to every response.

    Off loopback any Host is served: other machines name this one as they know it (an address,
    a hostname), and the token is the defence there. A DNS-rebinding page cannot present it: it
    does not know it, and the cookie (SameSite=Lax) belongs to the dashboard's own address.
    """

    def __init__(
        self, app: ASGIApp, *, bound_host: str, token: str, token_file: str | None = None
    ) -> None:
        if not usable_token(token):
            raise ValueError("the dashboard needs a token of visible ASCII characters")
        self.app = app
        self.token = token.encode()
        self.allowed: set[str] | None = (
            set(LOOPBACK) | {bound_host.strip("[]").lower()} if is_loopback(bound_host) else None
        )
        # Off loopback anyone on the network sees this page: the file's name, not its path
        # (which names the user's home).
        if token_file and self.allowed is not None:
            where = f"; the token is in {token_file}"
        else:
            where = "; the token is in agentd's state dir, file ui-token" if token_file else ""
        self.refusal = ("This dashboard needs its token: open the link `agentd ui` printed (it "
                        f"ends in ?token=...){where}.")  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # no route takes one; a future one must not skip this
            await receive()
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = _host_name(headers.get("host", "")).lower()
        if self.allowed is not None and host not in self.allowed:
            await _plain(send, 403, f"Host {host or '(none)'!r} is not allowed: open the "
                         "dashboard at the address `agentd ui` printed.")  # fmt: skip
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        given = query.get("token")
        if given is not None and _same(given, self.token):
            # A `?token=` link: keep it as a cookie, then drop it from the address bar.
            query.pop("token")
            location = same_origin_path(scope["path"]) + (f"?{urlencode(query)}" if query else "")
            await _redirect(send, location, self.token)
            return
        # Starlette's parser, as browsers read cookies: http.cookies drops the whole header for
        # one cookie it cannot parse, and every app on this host shares it (cookies ignore ports).
        cookie = cookie_parser(headers.get("cookie", "")).get(COOKIE, "")
        bearer = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not any(p and _same(p, self.token) for p in (cookie, bearer)):
            await _plain(send, 401, self.refusal)
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


async def _redirect(send: Send, location: str, token: bytes) -> None:
    # Lax, not Strict: a link opened from elsewhere (the page --open hands the browser, a chat)
    # is a navigation from another site, and a Strict cookie would not come with the request the
    # redirect makes. Every route only reads (GET), so Lax gives another site nothing to forge.
    cookie = f"{COOKIE}={token.decode()}; Path=/; HttpOnly; SameSite=Lax"
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode("ascii")),
                            (b"set-cookie", cookie.encode("latin-1")),
                            (b"content-length", b"0"), *HEADERS]})  # fmt: skip
    await send({"type": "http.response.body", "body": b""})
