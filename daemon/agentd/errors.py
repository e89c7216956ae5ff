"""Every error agentd raises on purpose, in one tree (httpx's `_exceptions.py` idea):

    AgentdError                   catch this to catch anything agentd means to raise
    ├── WireError                 a JSON-RPC error answer: CODE, MESSAGE, to_error()
    │   ├── ParseError            -32700  the line is not JSON
    │   ├── InvalidRequest        -32600  JSON, but not a JSON-RPC request
    │   ├── MethodNotFound        -32601
    │   ├── InvalidParams         -32602  the params do not fit the method ($.path in data)
    │   ├── InternalError         -32603  a bug: the connection carries on
    │   ├── LineTooLong           -32001  over max_line_bytes; the connection is closed after it
    │   ├── ShuttingDown          -32002  the daemon is stopping and takes no new work
    │   ├── DiskFull              -32003  nothing of the event was stored: spool it and retry
    │   ├── PricesUnavailable     -32004  the daemon's price table cannot be loaded (reprice)
    │   └── RepriceRunning        -32005  a reprice is already running: one at a time
    ├── InvalidEvent              an event the ingest pipeline cannot take (becomes InvalidParams)
    └── UserError                 a problem the user can fix: the CLI prints "Error: <message>"
        │                         and exits with EXIT_CODE (cli/__init__.py, the one place)
        ├── ConfigError           the config file or an AGENTD_* variable
        ├── NotRunning            nothing answers on the daemon's socket (exit 3)
        ├── RemoteError           the daemon answered a request with an error
        ├── AlreadyRunning        another daemon serves this state dir or socket
        ├── StartupError          the daemon cannot start (bad path, unwritable directory, ...)
        │   └── DatabaseUnusable  the database is damaged, not agentd's, or newer: refused as is
        ├── Locked                another process holds a pid-file lock
        ├── DaemonTooOld          the running daemon is older than this code
        ├── SinkLost              the daemon went away mid-import
        ├── AccessError           no write can be made now (WriterBusy, NoDatabase, DaemonRefused,
        │                         DaemonStopped)
        ├── InstallError          an agent's configuration cannot be changed as asked
        ├── ImportFailed          an import cannot run or finish
        ├── QueryError            a query or report cannot run (Interrupted: Ctrl-C; TimedOut)
        ├── UIError               the dashboard cannot start (no database yet, cannot bind)
        └── PushError             a push to PostgreSQL failed
            ├── ConnectFailed     the server cannot be reached or refuses us (`auth`: which)
            ├── SchemaMissing     no agentd tables on the server, or older ones: push --init
            └── PushBusy          another `agentd push` for this machine holds the server's lock
        └── TimeError             a time or duration the user typed is not one

docs/protocol.md lists the wire codes (a test keeps it complete). Stdlib only: the client and the
hook's neighbours import it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentd.client import RemoteError as _RemoteError

__all__ = [
    "AgentdError",
    "WireError",
    "ParseError",
    "InvalidRequest",
    "MethodNotFound",
    "InvalidParams",
    "InternalError",
    "LineTooLong",
    "ShuttingDown",
    "DiskFull",
    "PricesUnavailable",
    "RepriceRunning",
    "InvalidEvent",
    "UserError",
    "ConfigError",
    "NotRunning",
    "RemoteError",
    "DatabaseUnusable",
    "AlreadyRunning",
    "StartupError",
    "Locked",
    "AccessError",
    "WriterBusy",
    "NoDatabase",
    "no_database",
    "detached",
    "DaemonRefused",
    "DaemonStopped",
    "DaemonTooOld",
    "SinkLost",
    "InstallError",
    "ImportFailed",
    "QueryError",
    "Interrupted",
    "TimedOut",
    "TimeError",
    "UIError",
    "PushError",
    "ConnectFailed",
    "SchemaMissing",
    "PushBusy",
]


class AgentdError(Exception):
    """The root of every error agentd raises on purpose."""


# -- the wire: each class is one JSON-RPC error code ---------------------------------------------


class WireError(AgentdError):
    CODE = -32603
    MESSAGE = "Internal error"

    def __init__(self, message: str | None = None, data: Any = None) -> None:
        super().__init__(message or self.MESSAGE)
        self.message = message or self.MESSAGE
        self.data = data

    def to_error(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.CODE, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class ParseError(WireError):
    CODE = -32700
    MESSAGE = "Parse error"


class InvalidRequest(WireError):
    CODE = -32600
    MESSAGE = "Invalid Request"


class MethodNotFound(WireError):
    CODE = -32601
    MESSAGE = "Method not found"

    @classmethod
    def of(cls, method: str) -> MethodNotFound:
        return cls(f"Method not found: {method!r}", data={"method": method})


class InvalidParams(WireError):
    CODE = -32602
    MESSAGE = "Invalid params"

    @classmethod
    def of(cls, error: Exception) -> InvalidParams:
        """From a msgspec.ValidationError, whose text ends with the `$.path` of the bad field."""
        text = str(error)
        path = text.rsplit(" - at `", 1)[1].rstrip("`") if " - at `" in text else "$"
        return cls(f"Invalid params: {text}", data={"path": path})


class InternalError(WireError):
    CODE = -32603
    MESSAGE = "Internal error"


class LineTooLong(WireError):
    """Application error: a line over the daemon's limit. The connection is closed after it."""

    CODE = -32001
    MESSAGE = "Line too long"


class ShuttingDown(WireError):
    """Application error: the daemon is stopping and takes no new work."""

    CODE = -32002
    MESSAGE = "Daemon is shutting down"


class DiskFull(WireError):
    """Application error: the database's disk (or quota) is full; nothing of the event was stored.

    Retryable: a shim spools the event, and the daemon stores it once space is freed (no restart).
    """

    CODE = -32003
    MESSAGE = "Disk full"


class PricesUnavailable(WireError):
    """Application error: the daemon's price table cannot be loaded, so `reprice` would make every
    computed cost unknown; nothing was changed. The message says why and what to do."""

    CODE = -32004
    MESSAGE = "Price table unavailable"


class RepriceRunning(WireError):
    """Application error: a `reprice` while another one runs; nothing was done by this one."""

    CODE = -32005
    MESSAGE = "A reprice is already running"


class InvalidEvent(AgentdError, ValueError):
    """An event the ingest pipeline cannot take as it is; `path` names the part at fault
    ($.payload, ...). The RPC answers it as InvalidParams; the spool drain keeps the line aside."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


# -- what a user can fix: the CLI prints the message and exits with EXIT_CODE ---------------------


class UserError(AgentdError):
    EXIT_CODE = 1


class ConfigError(UserError):
    """The config file or an AGENTD_* variable holds something agentd cannot use."""


class NotRunning(UserError):
    """Nothing answers on the socket."""

    EXIT_CODE = 3


class RemoteError(UserError):
    """The daemon answered a request with a JSON-RPC error."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('message')} (code {error.get('code')})")
        self.code = error.get("code")
        self.data = error.get("data")


class AlreadyRunning(UserError):
    """A daemon already holds this state dir's pid file, or serves this socket."""

    def __init__(self, pid: int | None, socket_path: Path) -> None:
        super().__init__(f"agentd is already running (pid {pid or '?'}, socket {socket_path})")
        self.pid = pid


class StartupError(UserError):
    """The daemon cannot start (bad path, unwritable directory, ...); the message says why."""


class DatabaseUnusable(StartupError):
    """The database file is damaged, not agentd's, or from a newer agentd: refused, never changed."""


class Locked(UserError):
    """Another process holds a pid-file lock; `pid` is what its pid file says (None: unreadable)."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(f"held by pid {pid or '?'}")
        self.pid = pid


class AccessError(UserError):
    """No write can be made now; the message says why and what to do."""


class WriterBusy(AccessError):
    """Another process holds the writer lock and no daemon answers."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(
            f"pid {pid or '?'} holds the database's writer lock (a daemon starting, or another "
            "import, prune or vacuum) and no daemon answers; try again when it is done"
        )
        self.pid = pid


def no_database(path: Path) -> str:
    """What every command says of a database that does not exist yet."""
    return (
        f"no database at {path}: nothing has been captured yet.\n"
        "Start capturing with `agentd start`, then use Claude Code or OpenCode as usual."
    )


class NoDatabase(AccessError):
    """A direct write to a database that does not exist (one that only deletes has nothing to do)."""

    def __init__(self, path: Path) -> None:
        super().__init__(no_database(path))
        self.path = path


class DaemonRefused(AccessError):
    """The daemon answered the write with an error."""

    def __init__(self, method: str, error: _RemoteError) -> None:
        super().__init__(f"the daemon refused {method}: {error}")
        self.method = method
        self.error = error


class DaemonStopped(AccessError):
    """The daemon stopped (or went away) before the write it was sent was done."""

    def __init__(self, method: str) -> None:
        super().__init__(
            f"the daemon stopped before {method} finished; what it committed stays: run"
            f" `agentd {method}` again to finish"
        )
        self.method = method


class DaemonTooOld(UserError):
    """The running daemon was started from older code than this importer's."""


class SinkLost(UserError):
    """The daemon went away (or is shutting down) mid-import; run again to finish."""


class InstallError(UserError):
    """The install cannot proceed (unreadable settings, ...); the message says what to fix."""


class ImportFailed(UserError):
    """The import could not run or finish; the message says why and what to do."""


class QueryError(UserError):
    """A problem with a query the user can fix."""


class Interrupted(QueryError):
    """The statement was interrupted (Ctrl-C)."""


class TimedOut(QueryError):
    """The time limit (--timeout, query_timeout_s) stopped a running statement."""


class TimeError(UserError, ValueError):
    """A time or duration the user typed is not one agentd reads."""


class UIError(UserError):
    """`agentd ui` cannot start: no database yet, cannot bind, a non-loopback bind without token."""


class PushError(UserError):
    """A push failed; str() is one line for the user."""


class ConnectFailed(PushError):
    def __init__(self, message: str, *, auth: bool = False) -> None:
        super().__init__(message)
        self.auth = auth  # a wrong password or unknown role: retrying will not help


class SchemaMissing(PushError):
    """The server has no agentd tables, or older ones: run `agentd push --init`."""


class PushBusy(PushError):
    """Another `agentd push` for this machine holds the server's lock."""


def detached(error: BaseException) -> BaseException:
    """`error` without its traceback and chained errors, to be kept as an answer: each holds the
    frames that raised it, one of which holds the list keeping the error, a reference cycle that
    keeps the request's bytes alive until the next collection (rare in the daemon: its gc
    threshold is high). Answers carry the message, never the traceback."""
    error.__context__ = error.__cause__ = None
    return error.with_traceback(None)
