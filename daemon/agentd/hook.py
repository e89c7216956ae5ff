"""agentd-hook: the Claude Code hook command (docs/claude-code.md).

Reads the hook's JSON from stdin and forwards it, as it is, to the daemon as `ingest` (source
`claude`), waiting for the ack within a budget. When the daemon is missing, refuses, or does not
answer in time, it writes the event to the spool and (unless autostart is off) starts the daemon.

Rules, because it runs twice per tool call inside the agent:
- always exit 0 (exit 2 would block Claude) and never write to stdout (SessionStart and
  UserPromptSubmit stdout is injected into Claude's context);
- never hang: stdin may never be closed (SessionEnd after /clear), the daemon may never answer;
- never lose the event: stdin that comes late is waited for by a detached child (hand_off);
- never hand it to another user: the socket's directory must be ours alone and its peer of our
  uid, and nothing is written through a link planted in the state dir (trust.py);
- start fast: `os`, `sys`, `time`, `select`, `_socket` and agentd's own lean `paths` and
  `spool` only on the common path (`trust` when spooling or refusing). Run it as
  `python -I -S .../agentd/hook.py` (what `agentd install claude` writes): no site-packages
  scan, and this file finds its package by itself.

This file is only the launcher; the work is in forward.py, which Python loads from its cached
.pyc (a script is compiled afresh on every run: each line here costs every tool call).
"""

from __future__ import annotations

import _signal

if __name__ == "__main__":  # first of all, before any other import costs time (see forward.py)
    _signal.signal(_signal.SIGTERM, _signal.SIG_IGN)
    _signal.signal(_signal.SIGHUP, _signal.SIG_IGN)

import os  # noqa: E402
import sys  # noqa: E402

if __name__ == "__main__" and not __package__:  # run as a file: make `agentd` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

try:
    from agentd.forward import main
except BaseException as e:  # a broken or half-upgraded agentd must not break the agent: exit 0
    if __name__ != "__main__":
        raise
    os.write(2, f"agentd-hook: event not kept: cannot load agentd: {e!r}\n".encode())
    os._exit(0)

__all__ = ["main"]

if __name__ == "__main__":
    main()
