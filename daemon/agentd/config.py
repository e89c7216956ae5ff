"""Paths and settings, resolved once and passed down explicitly.

Stdlib only. Where files live is resolved in paths.py, which the hook shares.
Precedence: explicit argument (CLI flag) > environment > config file > default (docs/configuration.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agentd import paths

DEFAULT_MAX_LINE_BYTES = paths.MAX_LINE_BYTES  # shared with the hook and the OpenCode plugin
DEFAULT_OUTPUT_LIMIT_BYTES = 10 * 1024
CONTENT_LEVELS = ("full", "metadata", "none")  # see privacy.py


class ConfigError(Exception):
    """The config file or an AGENTD_* variable holds something agentd cannot use."""


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        return paths.read_config_file(str(path))
    except (OSError, ValueError) as e:  # tomllib.TOMLDecodeError is a ValueError
        raise ConfigError(f"cannot read config file {path}: {e}") from e


def _typed(file: dict[str, Any], key: str, kind: type, default: Any, path: Path) -> Any:
    value = file.get(key, default)
    # bool is an int subclass: reject it where an int is wanted.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{path}: '{key}' must be {kind.__name__}, got {value!r}")
    return value


def _patterns(redaction: dict[str, Any], path: Path) -> dict[str, str]:
    """`[redaction] patterns = {name = "regex"}`: each must compile (checked here, not mid-ingest)."""
    import re

    patterns = _typed(redaction, "patterns", dict, {}, path)
    for name, pattern in patterns.items():
        if not isinstance(pattern, str):
            raise ConfigError(f"{path}: redaction pattern {name!r} must be a string")
        try:
            re.compile(pattern)
        except re.error as e:
            raise ConfigError(
                f"{path}: redaction pattern {name!r} is not a valid regex: {e}"
            ) from e
    return dict(patterns)


@dataclass(frozen=True, kw_only=True)
class Config:
    socket_path: Path
    db_path: Path
    state_dir: Path
    config_path: Path
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    output_limit_bytes: int = DEFAULT_OUTPUT_LIMIT_BYTES
    autostart: bool = True
    content_level: str = "full"
    redaction: bool = True
    redaction_patterns: dict[str, str] = field(default_factory=dict)
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
        config_path = Path(paths.config_file(env))
        file = _read_config_file(config_path) if read_file else {}
        redaction = _typed(file, "redaction", dict, {}, config_path)
        config = cls(
            socket_path=Path(paths.socket_path(env, file)),
            db_path=Path(paths.db_path(env, file)),
            state_dir=Path(paths.state_dir(env)),
            config_path=config_path,
            max_line_bytes=_typed(file, "max_line_bytes", int, DEFAULT_MAX_LINE_BYTES, config_path),
            output_limit_bytes=_typed(
                file, "output_limit_bytes", int, DEFAULT_OUTPUT_LIMIT_BYTES, config_path
            ),
            autostart=_typed(file, "autostart", bool, True, config_path),
            content_level=_typed(file, "content_level", str, "full", config_path),
            redaction=_typed(redaction, "enabled", bool, True, config_path),
            redaction_patterns=_patterns(redaction, config_path),
            extra=file,
        )
        if config.content_level not in CONTENT_LEVELS:
            raise ConfigError(
                f"{config_path}: 'content_level' must be one of {', '.join(CONTENT_LEVELS)},"
                f" got {config.content_level!r}"
            )
        return config.with_overrides(**overrides)
