"""The figures the statusline shows beside Claude's sample (statusbar.py): today's cost (all
sessions) and the session's failed tool calls, read from the database, and kept between runs.

The daemon reads them on its open connection for the `statusline` method (service.py). With the
daemon down, the statusline shows them as they were last read: FIGURES_FILE, kept by the daemon
when it stops, by the statusline when it had to read the database itself, and refreshed by every
write made with the daemon down (db/access.py). Like statusbar.py, this imports only C modules
(and `agentd.trust`, which imports only `os`) when the statusline runs.
"""

from __future__ import annotations

import _json
import os
import stat  # loaded by os already
import time

TYPE_CHECKING = False  # the idiom that spares importing `typing` at run time
if TYPE_CHECKING:  # and `_sqlite3` (loading libsqlite3): a kept figure spares it
    import _sqlite3
    from typing import Any

__all__ = [
    "FIGURES_FILE", "KEPT_SESSIONS", "db_stamp", "day_start", "figures", "keep", "kept_figures",
    "read_kept", "refresh_kept", "scan", "shown", "sweep_partials", "today_cost",
]  # fmt: skip


class _JSONContext:
    """What `_json.make_scanner` reads from `json.JSONDecoder`, without importing json (and re)."""

    strict = False
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float
    memo: dict[str, str] = {}


scan = _json.make_scanner(_JSONContext())


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
        kept = scan(data.decode(), 0)[0]
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


def read_fresh(
    db_path: str, sessions: list[str], day_start_ms: int
) -> tuple[dict[str, Any], list[list[int] | None] | None] | None:
    """read_kept from the database file, read-only, with the database's stamp it holds for: None
    in its place when a write came during the read (then it is shown, not kept). None when the
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
    return kept, (stamp if db_stamp(db_path) == stamp else None)


def keep_merged(state_dir: str, kept: dict[str, Any], stamp: list[list[int] | None]) -> None:
    """keep() what was read under `stamp`, beside the sessions FIGURES_FILE holds for the same
    database and day (the newest last, at most KEPT_SESSIONS). Raises as keep() does."""
    before = load_kept(state_dir) or {}
    held = before.get("failures")
    failures = kept["failures"]
    same = before.get("day_start") == kept["day_start"] and before.get("db") == stamp
    if same and isinstance(held, dict):
        merged = {s: n for s, n in held.items() if type(n) is int and s not in failures}
        failures = dict(list({**merged, **failures}.items())[-KEPT_SESSIONS:])
    keep(state_dir, {**kept, "failures": failures, "db": stamp})


def read_and_keep(
    state_dir: str, db_path: str, sessions: list[str], day_start_ms: int
) -> dict[str, Any] | None:
    """read_fresh, and keep_merged when no write came during the read (a failure to keep is
    only a read next time). None when the database cannot be read."""
    fresh = read_fresh(db_path, sessions, day_start_ms)
    if fresh is None:
        return None
    kept, stamp = fresh
    if stamp is not None:
        try:  # noqa: SIM105 (contextlib would be one more import)
            keep_merged(state_dir, kept, stamp)
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
