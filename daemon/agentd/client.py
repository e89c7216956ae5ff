"""A small blocking JSON-RPC client over the daemon's Unix socket (CLI, tests, scripts).

Stdlib only. The hook has its own leaner path (hook.py) because it runs on every tool call.
Like the hook, it sends nothing to a socket it does not trust (trust.py): one in a directory that
other users can write, or one whose peer runs as another uid. Both raise Untrusted.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from agentd.errors import NotRunning, RemoteError
from agentd.trust import Untrusted, check_dir, check_peer

__all__ = ["Client", "RemoteError", "NotRunning", "Untrusted"]


class Client:
    def __init__(self, socket_path: Path, timeout: float = 5.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._next_id = 0

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        """Connect; NotRunning when nobody listens, Untrusted when the socket is not ours."""
        try:
            check_dir(os.path.dirname(self.socket_path) or ".")
        except (FileNotFoundError, NotADirectoryError) as e:
            raise NotRunning(f"no daemon at {self.socket_path}: {e.strerror}") from None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.socket_path))
            check_peer(sock, self.socket_path)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as e:
            sock.close()
            raise NotRunning(f"no daemon at {self.socket_path}: {e.strerror}") from None
        except OSError:
            sock.close()
            raise
        self._sock = sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def call(self, method: str, params: Any = None) -> Any:
        """Send one request and return its result; RemoteError for a JSON-RPC error."""
        self._next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send_line(json.dumps(message, separators=(",", ":")).encode())
        reply = json.loads(self.read_line())
        if "error" in reply:
            raise RemoteError(reply["error"])
        return reply["result"]

    def send_line(self, line: bytes) -> None:
        assert self._sock is not None, "not connected"
        self._sock.sendall(line if line.endswith(b"\n") else line + b"\n")

    def read_line(self) -> bytes:
        assert self._sock is not None, "not connected"
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer from {self.socket_path} in {self.timeout} s")
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("the daemon closed the connection")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line


def call(socket_path: Path, method: str, params: Any = None, timeout: float = 5.0) -> Any:
    with Client(socket_path, timeout=timeout) as client:
        return client.call(method, params)
