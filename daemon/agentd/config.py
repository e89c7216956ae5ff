"""Every setting in one table (SETTINGS), resolved once into a frozen Config passed down explicitly.

Stdlib only. Precedence: CLI flag > environment (AGENTD_*) > config file > default
(docs/configuration.md, whose settings table tests/test_docs.py checks against SETTINGS). Where
files live is resolved in paths.py, which the hook shares: the `socket` and `db` rows describe
those settings and Config takes their values from paths.py. The hook reads `AGENTD_AUTOSTART`
itself (it must not import this module); tests/test_config.py checks that both agree.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agentd import paths
from agentd.errors import ConfigError

__all__ = ["SETTINGS", "Setting", "Config", "ConfigError", "CONTENT_LEVELS", "ENV_OFF"]

DEFAULT_MAX_LINE_BYTES = paths.MAX_LINE_BYTES  # shared with the hook and the OpenCode plugin
DEFAULT_OUTPUT_LIMIT_BYTES = 10 * 1024
DEFAULT_QUERY_TIMEOUT_S = 60
CONTENT_LEVELS = ("full", "metadata", "none")  # see privacy.py
# An AGENTD_* boolean is off for exactly these values, anything else is on: what hook.py does
# with AGENTD_AUTOSTART (tests/test_config.py runs the hook's own code to check it).
ENV_OFF = ("0", "false", "no", "off")
_MISSING = object()


@dataclass(frozen=True, kw_only=True)
class Setting:
    """One setting: its config.toml key ("section.key" for a key in [section], which is also
    valid TOML as a dotted key), type, default, AGENTD_* variable and help text."""

    name: str
    type: type
    default: Any
    env: str | None
    help: str
    attribute: str  # the Config field
    choices: tuple[str, ...] = ()
    # Resolves the value from env and file itself (paths.py: the hook shares it).
    resolve: Callable[[Mapping[str, str], Mapping[str, Any]], Any] | None = None
    check: Callable[[Any], str | None] | None = None  # an error message, or None when fine

    @property
    def type_name(self) -> str:
        return {bool: "boolean", int: "integer", str: "string", dict: "table"}[self.type]

    @property
    def default_text(self) -> str:
        """The default as docs/configuration.md shows it (TOML)."""
        if self.default is None:
            return "see *Where things live*"
        if isinstance(self.default, bool):
            return f"`{str(self.default).lower()}`"
        if isinstance(self.default, str):
            return f'`"{self.default}"`'
        return f"`{self.default}`"


def _patterns_error(patterns: dict[str, Any]) -> str | None:
    """Each pattern must compile: checked on load, not mid-ingest."""
    for name, pattern in patterns.items():
        if not isinstance(pattern, str):
            return f"redaction pattern {name!r} must be a string"
        try:
            re.compile(pattern)
        except re.error as e:
            return f"redaction pattern {name!r} is not a valid regex: {e}"
    return None


SETTINGS: tuple[Setting, ...] = (
    Setting(
        name="socket",
        type=str,
        default=None,
        env="AGENTD_SOCKET",
        help="The daemon's Unix socket (also `--socket`).",
        attribute="socket_path",
        resolve=lambda env, file: Path(paths.socket_path(env, file)),
    ),
    Setting(
        name="db",
        type=str,
        default=None,
        env="AGENTD_DB",
        help="The SQLite database (also `--db`).",
        attribute="db_path",
        resolve=lambda env, file: Path(paths.db_path(env, file)),
    ),
    Setting(
        name="max_line_bytes",
        type=int,
        default=DEFAULT_MAX_LINE_BYTES,
        env=None,
        help="Longest protocol line the daemon accepts (16 MiB).",
        attribute="max_line_bytes",
    ),
    Setting(
        name="output_limit_bytes",
        type=int,
        default=DEFAULT_OUTPUT_LIMIT_BYTES,
        env=None,
        help="Tool output kept per call; the rest is cut, with a marker.",
        attribute="output_limit_bytes",
    ),
    Setting(
        name="query_timeout_s",
        type=int,
        default=DEFAULT_QUERY_TIMEOUT_S,
        env=None,
        help="`agentd query` stops a query still running after this many seconds; 0 for no "
        "limit (also `--timeout`).",
        attribute="query_timeout_s",
        check=lambda v: None if v >= 0 else "query_timeout_s must be 0 or more",
    ),
    Setting(
        name="autostart",
        type=bool,
        default=True,
        env="AGENTD_AUTOSTART",
        help="The hook starts the daemon when it finds none running; "
        "`AGENTD_AUTOSTART` of 0, false, no or off turns it off.",
        attribute="autostart",
    ),
    Setting(
        name="content_level",
        type=str,
        default="full",
        env=None,
        help="How much content is kept: full, metadata or none (docs/privacy.md).",
        attribute="content_level",
        choices=CONTENT_LEVELS,
    ),
    Setting(
        name="redaction.enabled",
        type=bool,
        default=True,
        env=None,
        help="Redact secrets before anything is stored (docs/privacy.md).",
        attribute="redaction",
    ),
    Setting(
        name="redaction.patterns",
        type=dict,
        default={},
        env=None,
        help="Your own rules, added to the built-in ones: name = Python regex.",
        attribute="redaction_patterns",
        check=_patterns_error,
    ),
    Setting(
        name="push.url",
        type=str,
        default="",
        env="AGENTD_PUSH_URL",
        help="The PostgreSQL server `agentd push` copies to, a libpq URL (docs/team.md).",
        attribute="push_url",
    ),
    Setting(
        name="push.content_level",
        type=str,
        default="",
        env=None,
        help="What a push sends: metadata or none push less than is stored; "
        "empty means `content_level`.",
        attribute="push_content_level",
        check=lambda v: (
            None
            if v in ("", *CONTENT_LEVELS)
            else (f"[push] 'content_level' must be one of {', '.join(CONTENT_LEVELS)}, got {v!r}")
        ),
    ),
    Setting(
        name="push.raw",
        type=bool,
        default=False,
        env=None,
        help="`agentd push` sends the raw events table too (`--raw`).",
        attribute="push_raw",
    ),
)


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        return paths.read_config_file(str(path))
    except (OSError, ValueError) as e:  # tomllib.TOMLDecodeError is a ValueError
        raise ConfigError(f"cannot read config file {path}: {e}") from e


def _from_file(file: dict[str, Any], setting: Setting, path: Path) -> Any:
    """The setting's value in the file, type-checked; _MISSING when the file has none."""
    section, _, key = setting.name.rpartition(".")
    table = file.get(section, {}) if section else file
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: '{section}' must be a table, got {table!r}")
    value = table.get(key, _MISSING)
    # bool is an int subclass: reject it where an int is wanted.
    if value is not _MISSING and (
        not isinstance(value, setting.type) or (setting.type is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{path}: {_key(setting)} must be {setting.type.__name__}, got {value!r}")
    return value


def _key(setting: Setting) -> str:
    """The key as the file has it, for messages: 'autostart', [redaction] 'enabled'."""
    section, _, key = setting.name.rpartition(".")
    return f"[{section}] '{key}'" if section else f"'{key}'"


def _from_env(setting: Setting, text: str) -> Any:
    if setting.type is bool:
        return text not in ENV_OFF
    if setting.type is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{setting.env} must be an integer, got {text!r}") from None
    return text


@dataclass(frozen=True, kw_only=True)
class Config:
    socket_path: Path
    db_path: Path
    state_dir: Path
    config_path: Path
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    output_limit_bytes: int = DEFAULT_OUTPUT_LIMIT_BYTES
    query_timeout_s: int = DEFAULT_QUERY_TIMEOUT_S
    autostart: bool = True
    content_level: str = "full"
    redaction: bool = True
    redaction_patterns: dict[str, str] = field(default_factory=dict)
    push_url: str = ""
    push_content_level: str = ""
    push_raw: bool = False
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
        cls, env: Mapping[str, str] | None = None, *, read_file: bool = True, **overrides: Any
    ) -> Config:
        """Resolve every setting in SETTINGS. `overrides` are CLI flags (None = not given)."""
        env = dict(os.environ) if env is None else env
        config_path = Path(paths.config_file(env))
        file = _read_config_file(config_path) if read_file else {}
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            in_file = _from_file(file, setting, config_path)
            if setting.resolve is not None:
                value = setting.resolve(env, file)
            elif setting.env is not None and setting.env in env:
                value = _from_env(setting, env[setting.env])
            elif in_file is not _MISSING:
                value = in_file
            else:
                value = setting.default
            if setting.choices and value not in setting.choices:
                raise ConfigError(
                    f"{config_path}: {_key(setting)} must be one of "
                    f"{', '.join(setting.choices)}, got {value!r}"
                )
            problem = setting.check(value) if setting.check else None
            if problem:
                raise ConfigError(f"{config_path}: {problem}")
            values[setting.attribute] = dict(value) if isinstance(value, dict) else value
        config = cls(
            state_dir=Path(paths.state_dir(env)), config_path=config_path, extra=file, **values
        )
        return config.with_overrides(**overrides)
