"""agentd-hook: the Claude Code hook command (docs/claude-code.md).

Reads the hook's JSON from stdin and forwards it, as it is, to the daemon as `ingest` (source
`claude`), waiting for the ack within a budget. When the daemon is missing, refuses, or does not
answer in time, it writes the event to the spool and (unless autostart is off) starts the daemon.

Rules, because it runs twice per tool call inside the agent:
- always exit 0 (exit 2 would block Claude) and never write to stdout (SessionStart and
  UserPromptSubmit stdout is injected into Claude's context);
- never hang: stdin may never be closed (SessionEnd after /clear), the daemon may never answer;
- start fast: `os`, `sys`, `time`, `select`, `_socket` and agentd's own lean `paths`/`spool` only
  on the common path. Run it as `python -I -S .../agentd/hook.py` (what `agentd install claude`
  writes): no site-packages scan, and this file finds its package by itself.
"""

from __future__ import annotations

import _signal


def ignore_termination() -> None:
    """Claude Code SIGTERMs hooks still running when a `-p` session ends (StopFailure, SessionEnd),
    within milliseconds of starting them. Finish the delivery or the spool write instead: the hook
    bounds itself at BUDGET_S anyway. (The installed command also starts with `trap '' TERM`, which
    covers the interpreter's own start-up.)"""
    _signal.signal(_signal.SIGTERM, _signal.SIG_IGN)
    _signal.signal(_signal.SIGHUP, _signal.SIG_IGN)


if __name__ == "__main__":  # first of all, before any other import costs time
    ignore_termination()

import os  # noqa: E402
import sys  # noqa: E402

if __name__ == "__main__" and not __package__:  # run as a file: make `agentd` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

# The C modules `_socket` and `_signal`, not `socket` and `signal`: those import `enum`, which
# would double the hook's start time.
import _socket  # noqa: E402
import select  # noqa: E402
import time  # noqa: E402

from agentd import paths, spool  # noqa: E402

BUDGET_S = 0.5  # from start to the ack: reading stdin, connecting, waiting
CONNECT_S = 0.05
# Waiting for stdin's first byte. Claude writes the payload at once; only a starved machine makes
# it late, and giving up early there loses the event, so this is long. Stdin that stays empty
# (never a real hook) costs this much, once.
STDIN_FIRST_BYTE_S = 2.0
STDIN_IDLE_S = 0.03  # data came, then silence this long: the writer is done but left stdin open
STDIN_MAX_S = 2.0  # reading a payload that keeps coming stops here (a 50 MB one takes ~0.1 s)
TAIL_BYTES = 65536  # of stdin over the limit, the end kept to find the event's ids in
AUTOSTART_EVERY_S = 10.0  # at most one daemon start per this many seconds, however many hooks fire
SOURCE = "claude"


def read_stdin(deadline: float, limit: int) -> tuple[bytes, int, bytes]:
    """(up to `limit` bytes of stdin, total bytes seen, the last TAIL_BYTES beyond the limit).

    `deadline` bounds only the wait for the first byte, and ends with one last look (a starved
    process may pass it with the whole payload already in the pipe). Once data flows, reading goes
    on to EOF, or to STDIN_IDLE_S of silence (a writer that leaves stdin open), within STDIN_MAX_S.
    """
    kept: list[bytes] = []
    kept_size = total = 0
    tail = b""
    cap = time.monotonic() + STDIN_MAX_S
    while True:
        now = time.monotonic()
        if total:
            if now >= cap:
                break
            wait = min(STDIN_IDLE_S, cap - now)
        else:
            wait = max(0.0, deadline - now)
        try:
            ready, _, _ = select.select([0], [], [], wait)
        except (OSError, ValueError):
            break  # no stdin at all
        if not ready:
            break  # nothing came in time, or silence after data
        try:
            chunk = os.read(0, 1 << 20)
        except OSError:
            break
        if not chunk:
            break  # EOF
        total += len(chunk)
        if kept_size < limit:
            kept.append(chunk[: limit - kept_size])
            kept_size += len(kept[-1])
        if total > limit:
            tail = (tail + chunk)[-TAIL_BYTES:]
    return b"".join(kept), total, tail


def oversize_payload(head: bytes, total: int, tail: bytes) -> bytes:
    """What can be kept of a payload over the line limit: its identifying fields (found in its
    first and last TAIL_BYTES: Claude puts the ids around the bulky tool_response) and its head."""
    import json
    import re

    text = head[:TAIL_BYTES].decode("utf-8", "replace")
    end = tail.decode("utf-8", "replace")
    kept: dict[str, object] = {"agentd_oversize_stdin": {"bytes": total, "head": text[:4096]}}
    for key in ("session_id", "hook_event_name", "tool_use_id", "tool_name", "cwd", "agent_id"):
        match = re.search(rf'"{key}"\s*:\s*"((?:[^"\\]|\\.)*)"', text) or re.search(
            rf'"{key}"\s*:\s*"((?:[^"\\]|\\.)*)"', end
        )
        if match:
            kept[key] = json.loads(f'"{match[1]}"')
    return json.dumps(kept).encode()


def wrap_unparsed(data: bytes) -> bytes:
    """Stdin that is not a JSON object, kept as a string inside one."""
    import json

    return json.dumps({"agentd_unparsed_stdin": data.decode("utf-8", "replace")}).encode()


def deliver(socket_path: str, params: bytes, deadline: float) -> bytes | None:
    """Send one ingest request; the reply line, or None if the daemon could not be reached."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_S)
        sock.connect(socket_path)
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        sock.sendall(b'{"jsonrpc":"2.0","id":1,"method":"ingest","params":%s}\n' % params)
        reply = b""
        while b"\n" not in reply:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                return None
            reply += chunk
        return reply
    except OSError:  # missing, refused, not a socket, timed out (TimeoutError is an OSError)
        return None
    finally:
        sock.close()


def is_parse_error(reply: bytes) -> bool:
    return b'"code":-32700' in reply or b'"code":-32602' in reply


def autostart(state_dir: str) -> None:
    """Start the daemon in the background, once even when many hooks find it down at once."""
    import fcntl

    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(state_dir, "autostart.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # another hook is starting it right now
        if time.time() - os.fstat(fd).st_mtime < AUTOSTART_EVERY_S and os.fstat(fd).st_size:
            return  # started moments ago; it is still coming up
        os.ftruncate(fd, 0)
        os.write(fd, b"%d\n" % os.getpid())
        log = os.path.join(state_dir, "agentd.log")
        # posix_spawn, not subprocess (a heavy import); setsid detaches it from Claude's session.
        os.posix_spawn(
            sys.executable,
            [sys.executable, "-m", "agentd", "start", "--foreground", "--no-log-to-stderr"],
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_OPEN, 2, log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600),
            ],
            setsid=True,
        )
    finally:
        os.close(fd)


def run(env: dict[str, str] | os._Environ[str], start: float) -> None:
    deadline = start + BUDGET_S
    received_at = int(time.time() * 1000)
    try:
        file = paths.read_config_file(paths.config_file(env))
    except (OSError, ValueError):
        file = {}  # a broken config file must not cost the event; `agentd status` reports it
    max_line = file.get("max_line_bytes")
    limit = (max_line if isinstance(max_line, int) else paths.MAX_LINE_BYTES) - paths.ENVELOPE_BYTES
    data, total, tail = read_stdin(start + STDIN_FIRST_BYTE_S, limit)
    if not data.strip():
        return  # nothing to keep
    # Normally all of BUDGET_S is left; if stdin came late, still give delivery a fair try.
    deadline = max(deadline, time.monotonic() + 2 * CONNECT_S)
    payload = data if total <= limit else oversize_payload(data, total, tail)
    if not payload.lstrip().startswith(b"{"):
        payload = wrap_unparsed(payload)
    socket_path = paths.socket_path(env, file)
    params = spool.encode_line(SOURCE, received_at, payload)  # the `ingest` params, one line
    reply = deliver(socket_path, params, deadline)
    if reply is not None and is_parse_error(reply):
        params = spool.encode_line(SOURCE, received_at, wrap_unparsed(payload))
        reply = deliver(socket_path, params, deadline)
    if reply is not None and b'"result"' in reply:
        return
    # Not delivered (or not acked in time: the daemon may have committed it; replays are harmless).
    # Whether the payload is JSON is left to the daemon (spool.decode_line keeps a non-JSON one as
    # text when it drains the spool): a json import here would cost more than the rest of the hook.
    state = paths.state_dir(env)
    spool.write_file(os.path.join(state, "spool"), SOURCE, [params + b"\n"])
    autostart_setting = env.get("AGENTD_AUTOSTART", file.get("autostart", True))
    if autostart_setting not in (False, "0", "false", "no", "off"):
        autostart(state)


def main() -> None:
    start = time.monotonic()
    ignore_termination()  # again, for the `agentd-hook` console script, which imports this module
    try:
        run(os.environ, start)
    except BaseException as e:  # never break the agent: report on stderr (Claude's debug log)
        try:  # noqa: SIM105 (contextlib would be one more import on the hook's path)
            os.write(2, f"agentd-hook: event not kept: {type(e).__name__}: {e}\n".encode())
        except OSError:
            pass
    os._exit(0)  # skip interpreter teardown: nothing left to flush, and it costs milliseconds


if __name__ == "__main__":
    main()
