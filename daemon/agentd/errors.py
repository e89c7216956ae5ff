"""agentd's errors, one class per JSON-RPC error code (docs/protocol.md lists them all)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "AgentdError",
    "ParseError",
    "InvalidRequest",
    "MethodNotFound",
    "InvalidParams",
    "InternalError",
    "LineTooLong",
    "ShuttingDown",
    "DiskFull",
    "StartupError",
    "DatabaseUnusable",
    "AlreadyRunning",
]


class AgentdError(Exception):
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


class ParseError(AgentdError):
    CODE = -32700
    MESSAGE = "Parse error"


class InvalidRequest(AgentdError):
    CODE = -32600
    MESSAGE = "Invalid Request"


class MethodNotFound(AgentdError):
    CODE = -32601
    MESSAGE = "Method not found"

    @classmethod
    def of(cls, method: str) -> MethodNotFound:
        return cls(f"Method not found: {method!r}", data={"method": method})


class InvalidParams(AgentdError):
    CODE = -32602
    MESSAGE = "Invalid params"

    @classmethod
    def of(cls, error: Exception) -> InvalidParams:
        """From a msgspec.ValidationError, whose text ends with the `$.path` of the bad field."""
        text = str(error)
        path = text.rsplit(" - at `", 1)[1].rstrip("`") if " - at `" in text else "$"
        return cls(f"Invalid params: {text}", data={"path": path})


class InternalError(AgentdError):
    CODE = -32603
    MESSAGE = "Internal error"


class LineTooLong(AgentdError):
    """Application error: a line over the daemon's limit. The connection is closed after it."""

    CODE = -32001
    MESSAGE = "Line too long"


class ShuttingDown(AgentdError):
    """Application error: the daemon is stopping and takes no new work."""

    CODE = -32002
    MESSAGE = "Daemon is shutting down"


class DiskFull(AgentdError):
    """Application error: the database's disk (or quota) is full; nothing of the event was stored.

    Retryable: a shim spools the event, and the daemon stores it once space is freed (no restart).
    """

    CODE = -32003
    MESSAGE = "Disk full"


class StartupError(Exception):
    """The daemon cannot start (bad path, unwritable directory, ...); the message says why."""


class DatabaseUnusable(StartupError):
    """The database file is damaged, not agentd's, or from a newer agentd: refused, never changed."""


class AlreadyRunning(Exception):
    """A daemon already holds this state dir's pid file, or serves this socket."""

    def __init__(self, pid: int | None, socket_path: Path) -> None:
        super().__init__(f"agentd is already running (pid {pid or '?'}, socket {socket_path})")
        self.pid = pid
