"""The work of `agentd statusline`, the command for Claude Code's `statusLine` setting
(docs/usage.md); statusline.py, the file the installed command runs, only launches this.

Claude Code runs it after each assistant message (debounced) with a JSON object on stdin and
draws the first line it prints. It prints: model, context used, the session's cost (Claude's
own), today's cost (all sessions, from the database), the 5-hour quota used and when it resets,
and the session's failed tool calls. Whatever a field is missing (an older Claude, an API-key
plan without rate limits) is left out; it always exits 0.

It also forwards the sample to the daemon, as an event of source `claude_statusline` (the
database copies rate limits, context and cost into `statusline_samples`), spooled like a hook
event when the daemon is down. With the daemon up, one round trip does both: the `statusline`
method stores the sample and answers with today's cost and the session's failures (on the
daemon's open read-only connection: opening SQLite and reading its schema here would cost more
than the rest of the command). With the daemon down (or an older one without the method), it
shows them as they were last read (statusfigures.py: kept by the daemon when it stopped, or by this
command), if the database has not changed since; else it reads them from the database itself,
once, and keeps them. It runs as often as the hook, so it starts the same way (`python -I -S
.../agentd/statusline.py`) and imports only C modules: `_json`'s scanner instead of `json` and
`_sqlite3` instead of `sqlite3` (bench/statusline).
"""

from __future__ import annotations

import _socket
import os
import select
import sys
import time

from agentd import forward, paths, spool
from agentd.statusfigures import day_start, figures, kept_figures, scan

SOURCE = "claude_statusline"
STDIN_FIRST_BYTE_S = 1.0
BUDGET_S = 0.5  # from start to the daemon's answer; then the sample is spooled
SEPARATOR = " | "


def read_stdin(deadline: float, limit: int) -> bytes | None:
    """Stdin to EOF (Claude writes the sample and closes it), waiting for it until `deadline`;
    None when it is over `limit` bytes (then nothing of it is used)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            ready, _, _ = select.select([0], [], [], max(0.0, deadline - time.monotonic()))
        except (OSError, ValueError):
            break  # no stdin at all
        if not ready:
            break
        try:
            chunk = os.read(0, 1 << 20)
        except OSError:
            break
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def parse(data: bytes) -> dict:
    """The stdin object, or {} for anything else (the line then shows what it can: nothing)."""
    try:
        text = data.decode("utf-8", "replace")
        value, _ = scan(text, len(text) - len(text.lstrip()))
    except Exception:  # noqa: BLE001 (StopIteration, ValueError; nesting: RecursionError, SystemError)
        return {}
    return value if isinstance(value, dict) else {}


def _get(obj: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _num(value: object, low: float = 0.0, high: float = 1e12) -> float | None:
    """A number of the sample within [low, high], else None (left out of the line): a NaN, an
    infinity, a negative cost or a percentage of 10^300 is not something to draw."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int past a float's range
        return None
    return number if low <= number <= high else None


# What the line never carries: control characters (a newline would make it two lines, an escape
# would recolour Claude's screen), from a model name or anything else of the sample.
_CONTROLS = dict.fromkeys([*range(0x20), *range(0x7F, 0xA0)], " ")
MAX_MODEL_CHARS = 60


def _duration(seconds: float) -> str:
    minutes = max(0, int(seconds // 60))
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def line(sample: dict, extra: dict[str, float], now: float) -> str:
    """The one line Claude Code draws."""
    parts: list[str] = []
    model = _get(sample, "model", "display_name") or _get(sample, "model", "id")
    if isinstance(model, str) and model.strip():
        parts.append(model[:MAX_MODEL_CHARS].translate(_CONTROLS).strip())
    used = _num(_get(sample, "context_window", "used_percentage"), high=100)
    if used is not None:
        parts.append(f"ctx {used:.0f}%")
    cost = _num(_get(sample, "cost", "total_cost_usd"))
    if cost is not None:
        parts.append(f"${cost:.2f} session")
    today = _num(extra.get("today_cost"))
    if today is not None:
        parts.append(f"${today:.2f} today")
    five = _num(_get(sample, "rate_limits", "five_hour", "used_percentage"), high=100)
    if five is not None:
        text = f"5h {five:.0f}%"
        # Epoch seconds within about the window's 5 hours (not milliseconds, not long past)
        resets = _num(
            _get(sample, "rate_limits", "five_hour", "resets_at"), now - 60, now + 6 * 3600
        )
        if resets is not None:
            text += f" (resets in {_duration(resets - now)})"
        parts.append(text)
    failures = _num(extra.get("failures"))
    if failures:
        parts.append(f"{failures:.0f} failed tool call{'s' if failures != 1 else ''}")
    return SEPARATOR.join(parts) or "agentd"


def run(env: dict[str, str] | os._Environ[str], start: float) -> str:
    received_at = int(time.time() * 1000)
    try:
        file = paths.read_config_file(paths.config_file(env))
    except (OSError, ValueError):
        file = {}
    limit = paths.MAX_LINE_BYTES - paths.ENVELOPE_BYTES
    data = read_stdin(start + STDIN_FIRST_BYTE_S, limit)
    sample = parse(data) if data else {}
    now = time.time()
    extra = None
    if sample:
        extra = forward_sample(env, file, data or b"", received_at, day_start(now), start)
    if extra is None:  # the daemon did not answer with them: as it left them, or read here
        session = sample.get("session_id")
        session = session if isinstance(session, str) else None
        db = paths.db_path(env, file)
        try:
            state = paths.state_dir(env)
            extra = kept_figures(state, db, session, day_start(now))
            if extra is None:
                extra = figures(state, db, session, now)
        except OSError:
            extra = {}
    return line(sample, extra, now)


def ask(socket_path: str, params: bytes, deadline: float) -> dict[str, float] | bool:
    """The `statusline` request: the figures once the daemon has stored the sample; True when
    it answered with an error (an older daemon without the method), False when it could not be
    reached or did not answer in time."""
    reply = forward.deliver(socket_path, params, deadline, b"statusline")
    if reply is None:
        return False
    if b'"result"' not in reply:
        return True
    try:
        text = reply.decode()
        result = scan(text, 0)[0].get("result")
    except (StopIteration, ValueError, AttributeError):
        return True
    if not isinstance(result, dict):
        return True
    return {k: v for k, v in result.items() if k in ("today_cost", "failures")}


def notify(socket_path: str, params: bytes) -> bool:
    """Send the sample as an `ingest` notification (for a daemon older than the `statusline`
    method): True once the daemon has the line. The peer must be of our uid (forward.deliver's
    check)."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        try:
            sock.settimeout(forward.CONNECT_S)
            sock.connect(socket_path)
            creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
        except OSError:
            return False  # missing, refused, not a socket, timed out
        if int.from_bytes(creds[4:8], sys.byteorder) != os.geteuid():
            from agentd import trust

            trust.check_peer(sock, socket_path)  # raises Untrusted, saying whose socket it is
        try:
            sock.sendall(b'{"jsonrpc":"2.0","method":"ingest","params":%s}\n' % params)
        except OSError:
            return False
        return True
    finally:
        sock.close()


def forward_sample(
    env: dict[str, str] | os._Environ[str],
    file: dict,
    data: bytes,
    received_at: int,
    day_start_ms: int,
    start: float,
) -> dict[str, float] | None:
    """The sample to the daemon through a trusted socket, and its figures back (None when it
    did not give them); else the sample into the spool as a hook event (and the daemon started,
    unless autostart is off)."""
    params = spool.encode_line(SOURCE, received_at, data)
    socket_path = paths.socket_path(env, file)
    refused = forward.socket_refusal(socket_path)
    if refused is None:
        try:
            answer = ask(
                socket_path, params[:-1] + b',"day_start":%d}' % day_start_ms, start + BUDGET_S
            )
            if isinstance(answer, dict):
                return answer
            # An error answer: an older daemon (no such method), or a sample it cannot read;
            # send it the way such a daemon takes it.
            if answer and notify(socket_path, params):
                return None
        except PermissionError as e:  # trust.Untrusted: a peer of another uid
            refused = e
    # Not delivered, or not answered in time (then the daemon may have it too: a replay is
    # stored once).
    from agentd import trust

    state = paths.state_dir(env)
    try:
        trust.private_dir(state)
        spool.write_file(os.path.join(state, "spool"), SOURCE, [params + b"\n"])
    except OSError as e:  # nowhere to keep it (a home that cannot exist, a full disk): say so
        os.write(2, f"agentd statusline: sample not sent, not spooled: {e}\n".encode())
        return None
    if refused is not None:  # kept; no daemon is started beside a planted socket
        os.write(2, f"agentd statusline: sample spooled, not sent: {refused}\n".encode())
        return None
    if env.get("AGENTD_AUTOSTART", file.get("autostart", True)) not in (
        False, "0", "false", "no", "off",
    ):  # fmt: skip
        try:
            forward.autostart(state)
        except OSError as e:  # the sample is safe in the spool; only the start failed
            os.write(2, f"agentd statusline: sample spooled; daemon not started: {e}\n".encode())
    return None


def render(env: dict[str, str] | os._Environ[str], start: float) -> bytes:
    """The line to print, newline ended, whatever happens: a failure is said on stderr and
    draws a stub, never a traceback on Claude's screen."""
    try:
        text = run(env, start)
    except BaseException as e:  # noqa: BLE001
        text = "agentd"
        try:  # noqa: SIM105
            os.write(2, f"agentd statusline: {type(e).__name__}: {e}\n".encode(errors="replace"))
        except OSError:
            pass
    return text.encode(errors="replace") + b"\n"  # a lone surrogate of the sample: "?"


def main() -> None:
    line = render(os.environ, time.monotonic())
    try:  # noqa: SIM105 (contextlib would be one more import)
        os.write(1, line)
    except OSError:
        pass
    os._exit(0)
