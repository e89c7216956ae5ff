"""What can go wrong in a push, as messages for the user (the CLI prints them as one line).

PushError
 ├── ConnectFailed   the server cannot be reached or refuses us (`auth` says which)
 ├── SchemaMissing   the server has no agentd tables, or older ones: run `agentd push --init`
 └── PushBusy        another `agentd push` for this machine holds the server's lock
"""

from __future__ import annotations

__all__ = ["PushError", "ConnectFailed", "SchemaMissing", "PushBusy"]


class PushError(Exception):
    """A push failed; str() is one line for the user."""


class ConnectFailed(PushError):
    def __init__(self, message: str, *, auth: bool = False) -> None:
        super().__init__(message)
        self.auth = auth  # a wrong password or unknown role: retrying will not help


class SchemaMissing(PushError):
    pass


class PushBusy(PushError):
    pass
