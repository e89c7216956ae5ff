"""push-state.json: what a running `agentd push --watch` last did, for `agentd status`.

Written atomically (temp file + rename) by the push, read by `agentd status`; nothing else
depends on it (the server's agentd.push_state is the truth about what was pushed).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["STATE_FILE", "write_state", "read_state", "status_line"]

STATE_FILE = "push-state.json"


def write_state(state_dir: Path, state: dict[str, Any]) -> None:
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = state_dir / STATE_FILE
    tmp = path.with_name(f"{STATE_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**state, "pid": os.getpid(), "updated_at": _now()}, indent=2))
    os.replace(tmp, path)


def read_state(state_dir: Path) -> dict[str, Any] | None:
    """The last state written, with `running` saying whether its push process is still alive."""
    try:
        state: dict[str, Any] = json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    state["running"] = _alive(state.get("pid"))
    return state


def status_line(state_dir: Path) -> str | None:
    """One line for `agentd status`, or None when no push ever ran here."""
    state = read_state(state_dir)
    return None if state is None else describe(state)


def describe(state: dict[str, Any]) -> str:
    """A push state (read_state) as one line for `agentd status`."""
    now = _now()
    target = state.get("server", "?")
    if not state["running"]:
        last = state.get("last_push_at")
        when = f"last push {_ago(now - last)} ago" if last else "never pushed"
        return f"  push:          not running ({target}; {when})"
    if state.get("state") == "backoff":
        retry = max(0, (state.get("retry_at") or now) - now) / 1000
        return (
            f"  push:          backing off, retry in {retry:.0f} s: {state.get('error')}"
            f" ({state.get('pending', '?')} changes waiting)"
        )
    lag = state.get("lag_ms") or 0
    return (
        f"  push:          to {target}, lag {lag / 1000:.1f} s, "
        f"{state.get('pending', 0)} changes waiting, {state.get('rows_pushed', 0)} rows pushed"
    )


def _ago(ms: int) -> str:
    seconds = ms / 1000
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:  # a zombie is gone
        return f.read().split(") ", 1)[1][:1] != "Z"
    return True


def _now() -> int:
    return int(time.time() * 1000)
