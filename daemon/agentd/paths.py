"""Where agentd's files live, and the line limits every client shares (docs/configuration.md).

Plain strings and `os` only: the hook imports this on every tool call, and `pathlib` and
`dataclasses` would cost it more than the rest of its work. config.py wraps these in a Config.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # the idiom that spares importing `typing` at run time
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = [
    "MAX_LINE_BYTES",
    "ENVELOPE_BYTES",
    "config_file",
    "state_dir",
    "socket_path",
    "db_path",
    "read_config_file",
    "make_private_dir",
]

# The default `max_line_bytes`: the longest line the daemon reads (docs/protocol.md, "Framing").
# opencode-plugin/src/agentd.ts repeats both numbers; tests/test_hook.py keeps them equal.
MAX_LINE_BYTES = 16 * 1024 * 1024
# Room a client keeps for the JSON-RPC envelope around an event's payload within that limit.
ENVELOPE_BYTES = 256


def _home(env: Mapping[str, str]) -> str:
    return env.get("HOME") or os.path.expanduser("~")


def _xdg(env: Mapping[str, str], name: str, fallback: str) -> str:
    value = env.get(name)
    return os.path.expanduser(value) if value else os.path.join(_home(env), fallback)


def _agentd_home(env: Mapping[str, str]) -> str | None:
    value = env.get("AGENTD_HOME")
    return os.path.expanduser(value) if value else None


def config_file(env: Mapping[str, str]) -> str:
    explicit = env.get("AGENTD_CONFIG")
    if explicit:
        return os.path.expanduser(explicit)
    home = _agentd_home(env)
    if home:
        return os.path.join(home, "config.toml")
    return os.path.join(_xdg(env, "XDG_CONFIG_HOME", ".config"), "agentd", "config.toml")


def state_dir(env: Mapping[str, str]) -> str:
    """Spool, log and pid file live here."""
    return _agentd_home(env) or os.path.join(_xdg(env, "XDG_STATE_HOME", ".local/state"), "agentd")


def socket_path(env: Mapping[str, str], file: Mapping[str, Any]) -> str:
    """`file` is the parsed config file ({} when there is none)."""
    explicit = env.get("AGENTD_SOCKET")
    if explicit:
        return os.path.expanduser(explicit)
    if isinstance(file.get("socket"), str):
        return os.path.expanduser(file["socket"])
    home = _agentd_home(env)
    if home:
        return os.path.join(home, "agentd.sock")
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "agentd", "agentd.sock")
    return os.path.join(state_dir(env), "agentd.sock")


def db_path(env: Mapping[str, str], file: Mapping[str, Any]) -> str:
    explicit = env.get("AGENTD_DB")
    if explicit:
        return os.path.expanduser(explicit)
    if isinstance(file.get("db"), str):
        return os.path.expanduser(file["db"])
    home = _agentd_home(env)
    if home:
        return os.path.join(home, "agentd.db")
    return os.path.join(_xdg(env, "XDG_DATA_HOME", ".local/share"), "agentd", "agentd.db")


def read_config_file(path: str) -> dict[str, Any]:
    """The parsed config file, {} if there is none. Raises OSError or ValueError if unreadable."""
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below; no contextlib import on the hook's path)
    except FileNotFoundError:
        return {}
    try:
        import tomllib  # only when a config file exists: keeps the hook's start fast

        return tomllib.load(f)
    finally:
        f.close()


def make_private_dir(path: str | os.PathLike[str], chmod: bool = True) -> None:
    """Create `path` (and its parents) 0700 and check that it is ours: a real directory owned by
    us that group and others cannot write (else trust.Untrusted, an OSError). With `chmod` (a
    directory that is agentd's own), an existing one they can read is made 0700."""
    from agentd import trust

    trust.private_dir(path, tighten=chmod)
