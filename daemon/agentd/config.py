"""Paths and settings, resolved once and passed down explicitly.

Stdlib only, and cheap to import: the hook imports this module twice per tool call.
Precedence: explicit argument (CLI flag) > environment > config file > default (docs/configuration.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024
DEFAULT_OUTPUT_LIMIT_BYTES = 10 * 1024


class ConfigError(Exception):
    """The config file or an AGENTD_* variable holds something agentd cannot use."""


def _env_path(env: dict[str, str], name: str) -> Path | None:
    value = env.get(name)
    return Path(value).expanduser() if value else None


def _xdg(env: dict[str, str], name: str, fallback: str) -> Path:
    return _env_path(env, name) or Path(env.get("HOME") or Path.home()) / fallback


def config_file_path(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    explicit = _env_path(env, "AGENTD_CONFIG")
    if explicit:
        return explicit
    home = _env_path(env, "AGENTD_HOME")
    if home:
        return home / "config.toml"
    return _xdg(env, "XDG_CONFIG_HOME", ".config") / "agentd" / "config.toml"


def _read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    import tomllib  # only when a config file exists: keeps the hook's start fast

    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from e


def _typed(file: dict[str, Any], key: str, kind: type, default: Any, path: Path) -> Any:
    value = file.get(key, default)
    # bool is an int subclass: reject it where an int is wanted.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{path}: '{key}' must be {kind.__name__}, got {value!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class Config:
    socket_path: Path
    db_path: Path
    state_dir: Path
    config_path: Path
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    output_limit_bytes: int = DEFAULT_OUTPUT_LIMIT_BYTES
    autostart: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def spool_dir(self) -> Path:
        return self.state_dir / "spool"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "agentd.log"

    @property
    def pid_path(self) -> Path:
        return self.state_dir / "agentd.pid"

    def with_overrides(self, **overrides: Any) -> Config:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @classmethod
    def load(
        cls, env: dict[str, str] | None = None, *, read_file: bool = True, **overrides: Any
    ) -> Config:
        """Resolve every path and setting. `overrides` are CLI flags (None = not given)."""
        env = dict(os.environ) if env is None else env
        config_path = config_file_path(env)
        file = _read_config_file(config_path) if read_file else {}
        home = _env_path(env, "AGENTD_HOME")
        if home:
            state_dir = home
            default_db = home / "agentd.db"
            default_socket = home / "agentd.sock"
        else:
            state_dir = _xdg(env, "XDG_STATE_HOME", ".local/state") / "agentd"
            default_db = _xdg(env, "XDG_DATA_HOME", ".local/share") / "agentd" / "agentd.db"
            runtime = _env_path(env, "XDG_RUNTIME_DIR")
            default_socket = (runtime / "agentd" if runtime else state_dir) / "agentd.sock"
        file_socket = file.get("socket")
        file_db = file.get("db")
        config = cls(
            socket_path=_env_path(env, "AGENTD_SOCKET")
            or (Path(file_socket).expanduser() if isinstance(file_socket, str) else default_socket),
            db_path=_env_path(env, "AGENTD_DB")
            or (Path(file_db).expanduser() if isinstance(file_db, str) else default_db),
            state_dir=state_dir,
            config_path=config_path,
            max_line_bytes=_typed(file, "max_line_bytes", int, DEFAULT_MAX_LINE_BYTES, config_path),
            output_limit_bytes=_typed(
                file, "output_limit_bytes", int, DEFAULT_OUTPUT_LIMIT_BYTES, config_path
            ),
            autostart=_typed(file, "autostart", bool, True, config_path),
            extra=file,
        )
        return config.with_overrides(**overrides)
