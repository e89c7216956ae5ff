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
shows them as they were last read (FIGURES_FILE: kept by the daemon when it stopped, or by this
command), if the database has not changed since; else it reads them from the database itself,
once, and keeps them. It runs as often as the hook, so it starts the same way (`python -I -S
.../agentd/statusline.py`) and imports only C modules: `_json`'s scanner instead of `json` and
`_sqlite3` instead of `sqlite3` (bench/statusline).
"""

from __future__ import annotations

import _json
import _socket
import os
import select
import stat  # loaded by os already
import sys
import time

from agentd import forward, paths, spool

TYPE_CHECKING = False  # the idiom that spares importing `typing` at run time
if TYPE_CHECKING:  # and `_sqlite3` (loading libsqlite3): the daemon's answer spares it
    import _sqlite3
    from typing import Any

SOURCE = "claude_statusline"
STDIN_FIRST_BYTE_S = 1.0
BUDGET_S = 0.5  # from start to the daemon's answer; then the sample is spooled
SEPARATOR = " | "


class _JSONContext:
    """What `_json.make_scanner` reads from `json.JSONDecoder`, without importing json (and re)."""

    strict = False
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float
    memo: dict[str, str] = {}


_scan = _json.make_scanner(_JSONContext())


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
        value, _ = _scan(text, len(text) - len(text.lstrip()))
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


def day_start(now: float) -> int:
    """Local midnight of `now` (epoch s), in epoch ms: where "today" starts on this screen."""
    local = time.localtime(now)
    return int(now - local.tm_hour * 3600 - local.tm_min * 60 - local.tm_sec) * 1000


# What the statusline shows beside the sample, read by this command (daemon down) and by the
# daemon's `statusline` method (service.py) alike: today's cost, the session's failed tool calls.
TODAY_COST_SQL = (
    "SELECT sum(cost), sum(unpriced) FROM usage_hourly WHERE hour >= ? AND responses > 0"
)
FAILURES_SQL = "SELECT count(*) FROM tools WHERE session_id = ? AND success = 0"


def first_hour(day_start_ms: int) -> int:
    """TODAY_COST_SQL's parameter: the hour `usage_hourly` files the day's first message under."""
    return day_start_ms // 3600000 * 3600000


def today_cost(row: tuple[Any, ...] | None) -> float | None:
    """TODAY_COST_SQL's row as a cost, or None: no message today, or none that could be priced.
    As query/costs.py's SUMMED_COST reads a sum: the rollup's float additions can leave -1e-16
    where nothing is, and no cost is below 0."""
    if not row or row[0] is None or (row[0] < 5e-7 and row[1]):
        return None
    return max(row[0], 0.0)


def read_kept(conn: _sqlite3.Connection, sessions: list[str], day_start_ms: int) -> dict[str, Any]:
    """What FIGURES_FILE keeps (its stamp aside), read now on an open connection (`_sqlite3`'s
    here, `sqlite3`'s in the daemon): the day, today's cost (all sessions, from `day_start_ms`)
    and the failed tool calls of each of `sessions`. Raises the driver's error."""
    row = conn.execute(TODAY_COST_SQL, (first_hour(day_start_ms),)).fetchone()
    failures = {s: conn.execute(FAILURES_SQL, (s,)).fetchone()[0] for s in sessions}
    kept: dict[str, Any] = {"day_start": day_start_ms, "failures": failures}
    if (today := today_cost(row)) is not None:
        kept["today_cost"] = today
    return kept


def shown(kept: dict[str, Any], session_id: str | None) -> dict[str, float] | None:
    """The figures of `kept` the line shows for `session_id`; None when it has not that
    session's."""
    out: dict[str, float] = {}
    if session_id:
        failures = kept.get("failures")
        if not isinstance(failures, dict) or not isinstance(failures.get(session_id), int):
            return None
        out["failures"] = failures[session_id]
    if isinstance(kept.get("today_cost"), int | float):
        out["today_cost"] = kept["today_cost"]
    return out


# The figures as they were last read, for the statusline while the daemon is down: the daemon
# keeps those of the sessions it was asked about when it stops (service.py, after its last
# commit), and the statusline keeps what it had to read from the database itself. Reading the
# database costs loading libsqlite3 and parsing its schema (its triggers are ~180 KB of SQL),
# about twice a Python start; so it is read once per change, not at every assistant message.
# The file names the database's and its WAL's size and mtime: any write since (a direct import)
# makes it stale.
FIGURES_FILE = "statusline-figures.json"
MAX_FIGURES_BYTES = 1 << 16
KEPT_SESSIONS = 64  # the newest sessions whose failures the file holds


def file_stamp(path: str, *, empty_is_none: bool = False) -> list[int] | None:
    """[mtime_ns, size] of a file, or None when it is missing (or empty, for a WAL: a reader may
    make or leave an empty one, which holds no change): what says it has not changed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if empty_is_none and not st.st_size:
        return None
    return [st.st_mtime_ns, st.st_size]


def db_stamp(db_path: str) -> list[list[int] | None]:
    """The stamps of the database file and of its WAL: beside the file a symlink names, where
    SQLite keeps it."""
    real = os.path.realpath(db_path)
    return [file_stamp(real), file_stamp(real + "-wal", empty_is_none=True)]


def load_kept(state_dir: str) -> dict[str, Any] | None:
    """FIGURES_FILE, or None when it is missing, unreadable, not a JSON object, or not a regular
    file of ours that no one else can write (the daemon's or ours, not a planted one)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # no link, never a wait
    try:
        fd = os.open(os.path.join(state_dir, FIGURES_FILE), flags)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None
        data = os.read(fd, MAX_FIGURES_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        kept = _scan(data.decode(), 0)[0]
    except (StopIteration, ValueError, RecursionError):
        return None  # torn or foreign: read the database
    return kept if isinstance(kept, dict) else None


def kept_figures(
    state_dir: str, db_path: str, session_id: str | None, day_start_ms: int
) -> dict[str, float] | None:
    """The figures of FIGURES_FILE, or None when it has none for this session and day or the
    database changed since it was written."""
    kept = load_kept(state_dir)
    if kept is None or kept.get("day_start") != day_start_ms or kept.get("db") != db_stamp(db_path):
        return None
    return shown(kept, session_id)


def _encode(value: object) -> str:
    """JSON of what FIGURES_FILE holds (dicts with str keys, lists, ints, finite floats, None),
    with `_json`'s C encoder for strings: `json` would cost its import here."""
    if isinstance(value, dict):
        items = (f"{_json.encode_basestring_ascii(k)}:{_encode(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, str):
        return _json.encode_basestring_ascii(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and value - value == 0:
        return repr(value)  # an int, or a finite float (inf and nan are not JSON)
    raise ValueError(f"cannot keep {value!r}")


PARTIAL_SUFFIX = ".partial"  # FIGURES_FILE.<pid>.partial: a writer's file before its rename


def keep(state_dir: str, kept: dict[str, Any]) -> None:
    """Write `kept` as FIGURES_FILE: whole (this process's temporary file, created anew, then
    renamed), 0600, in the state directory checked private (trust.py). Raises OSError
    (trust.Untrusted is one) and ValueError for a value JSON cannot hold."""
    data = _encode(kept).encode()
    if len(data) > MAX_FIGURES_BYTES:
        return
    from agentd import trust  # imports only os

    dir_fd = trust.open_private_dir(state_dir)
    partial = f"{FIGURES_FILE}.{os.getpid()}{PARTIAL_SUFFIX}"
    try:
        try:  # noqa: SIM105 one left by a killed process of this pid: never opened (a FIFO blocks)
            os.unlink(partial, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NONBLOCK
        fd = trust.open_private(partial, flags, dir_fd=dir_fd)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(partial, FIGURES_FILE, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:  # noqa: SIM105 (contextlib would be one more import)
            os.unlink(partial, dir_fd=dir_fd)
        except OSError:
            pass
        raise
    finally:
        os.close(dir_fd)


def read_and_keep(
    state_dir: str, db_path: str, sessions: list[str], day_start_ms: int
) -> dict[str, Any] | None:
    """read_kept from the database file, read-only; kept in FIGURES_FILE (beside the sessions it
    holds for the same database and day) when no write came during the read. None when the
    database cannot be read (missing, an older schema, locked, broken)."""
    stamp = db_stamp(db_path)  # before the read: a write meanwhile must show as a change
    if stamp[0] is None:
        return None  # no database: not even libsqlite3 to load
    import _sqlite3  # the C module: `sqlite3` would import datetime and collections

    # Quoted as a URI path by hand (urllib would be one more import): "?" or "#" would cut it.
    uri_path = db_path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")
    try:
        conn = _sqlite3.connect(f"file:{uri_path}?mode=ro", uri=True, timeout=0.1)
    except _sqlite3.Error:
        return None
    try:
        kept = read_kept(conn, sessions, day_start_ms)
    except (_sqlite3.Error, ValueError):  # ValueError: a session id SQLite cannot take
        return None
    finally:
        conn.close()
    if db_stamp(db_path) != stamp:
        return kept  # written meanwhile: shown, not kept
    before = load_kept(state_dir) or {}
    held = before.get("failures")
    same = before.get("day_start") == day_start_ms and before.get("db") == stamp
    if same and isinstance(held, dict):  # its sessions stay beside ours, the newest last
        merged = {s: n for s, n in held.items() if type(n) is int and s not in kept["failures"]}
        kept["failures"] = dict(list({**merged, **kept["failures"]}.items())[-KEPT_SESSIONS:])
    try:  # noqa: SIM105 (contextlib would be one more import)
        keep(state_dir, {**kept, "db": stamp})
    except (OSError, ValueError):
        pass  # read again next time
    return kept


def sweep_partials(state_dir: str) -> None:
    """Remove the temporary files of writers killed before their rename (the daemon does, at
    stop: a statusline killed mid-write leaves one named after its pid)."""
    for name in os.listdir(state_dir):
        if name.startswith(FIGURES_FILE + ".") and name.endswith(PARTIAL_SUFFIX):
            try:  # noqa: SIM105 (contextlib would be one more import)
                os.unlink(os.path.join(state_dir, name))
            except OSError:
                pass


def figures(state_dir: str, db_path: str, session_id: str | None, now: float) -> dict[str, float]:
    """The figures read from the database file (and kept), when the daemon did not answer and
    FIGURES_FILE did not hold them; {} when it cannot be read: the line shows the rest."""
    kept = read_and_keep(state_dir, db_path, [session_id] if session_id else [], day_start(now))
    return (shown(kept, session_id) or {}) if kept else {}


def refresh_kept(state_dir: str, db_path: str) -> None:
    """After a direct write (db/access.py, with the writer's lock still held): FIGURES_FILE's
    sessions read anew for today, so the statusline (daemon down) finds its figures current
    instead of reading the database at its next run. Nothing without the file."""
    before = load_kept(state_dir)
    held = before.get("failures") if before else None
    day = day_start(time.time())
    if not isinstance(held, dict) or not held:
        return
    if before and before.get("day_start") == day and before.get("db") == db_stamp(db_path):
        return  # nothing was written (an import that found nothing new)
    read_and_keep(state_dir, db_path, [str(s) for s in held], day)


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
        result = _scan(text, 0)[0].get("result")
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
