"""The Claude Code hook's work: read the event on stdin, forward it to the daemon, else spool it.

hook.py is the command Claude Code runs; it only launches this. The split is for speed: Python
compiles a script it is given on every run, but loads an imported module from its cached .pyc,
and the hook runs twice per tool call. Its rules are in hook.py's docstring.
"""

from __future__ import annotations

# The C modules `_socket` and `_signal`, not `socket` and `signal`: those import `enum`, which
# would double the hook's start time.
import _signal
import _socket
import os
import select
import stat  # loaded by `os` already
import sys
import time

from agentd import paths, spool

BUDGET_S = 0.5  # from start to the ack: reading stdin, connecting, waiting
CONNECT_S = 0.05
# Waiting for the payload in the hook itself. Claude writes it at once; only a starved machine
# makes it late. Then a detached child goes on waiting (hand_off) while the hook exits: the event
# is kept, and Claude is not held up.
STDIN_HANDOFF_S = 1.0
STDIN_LATE_S = 120.0  # how long that child waits for the rest of the payload
STDIN_IDLE_S = 0.03  # a whole payload came, then silence this long: the writer left stdin open
TAIL_BYTES = 65536  # of stdin over the limit, the end kept to find the event's ids in
AUTOSTART_EVERY_S = 10.0  # at most one daemon start per this many seconds, however many hooks fire
SOURCE = "claude"


class Stdin:
    """The payload on stdin, read in one go or (handed off to a child) in two: up to `limit`
    bytes kept, the total seen, and the last TAIL_BYTES beyond the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept: list[bytes] = []
        self.kept_size = self.total = 0
        self.tail = self.last = b""  # `last`: the last non-blank byte seen
        self.depth = 0  # `{` minus `}` seen: 0 when a JSON object may have ended
        self.refuted = -1  # `total` when a payload that looked whole did not parse

    def read(self, until: float) -> bool:
        """Read on until EOF, or until a payload that ends like a whole JSON object (a last `}`
        that balances the braces: cheap, and not fooled by a cut after a nested object) is
        followed by STDIN_IDLE_S of silence (a writer that leaves stdin open) and then parses
        (braces inside strings count too, so a cut right after a string's `}` can look whole), or
        until `until`. Whether the payload is complete; False when time ran out first. The wait
        ends with one last look (a starved process may pass `until` with the whole payload
        already in the pipe)."""
        while True:
            whole = (
                self.total and self.last == b"}" and not self.depth and self.total != self.refuted
            )
            wait = max(0.0, until - time.monotonic())
            try:
                ready, _, _ = select.select([0], [], [], min(wait, STDIN_IDLE_S) if whole else wait)
            except (OSError, ValueError):
                return True  # no stdin at all
            if not ready:
                if not whole:
                    return False
                if self.parses():
                    return True
                self.refuted = self.total  # a cut payload: wait for the rest
                continue
            try:
                chunk = os.read(0, 1 << 20)
            except OSError:
                return True
            if not chunk:
                return True  # EOF
            self.total += len(chunk)
            if self.kept_size < self.limit:
                self.kept.append(chunk[: self.limit - self.kept_size])
                self.kept_size += len(self.kept[-1])
            if self.total > self.limit:
                self.tail = (self.tail + chunk)[-TAIL_BYTES:]
            self.last = chunk.rstrip()[-1:] or self.last
            self.depth += chunk.count(b"{") - chunk.count(b"}")

    def parses(self) -> bool:
        """Whether what came is one whole JSON value (only asked after a silence: a writer that
        keeps stdin open; the usual writer closes it, and json is never imported then). A payload
        over the limit is cut anyway: taken as whole."""
        if self.total > self.limit:
            return True
        import json

        try:
            json.loads(b"".join(self.kept))
        except ValueError:
            return False
        return True

    def payload(self) -> bytes:
        """What to send: the payload as it came, or what oversize_payload keeps of one too big."""
        head = b"".join(self.kept)
        if self.total > self.limit:
            return oversize_payload(head, self.total, self.tail)
        return head


def hand_off() -> bool:
    """Fork a detached child to wait for the rest of stdin: True in the child, False in the hook,
    which may then exit. The child keeps stdin, leaves Claude's session (setsid: it outlives the
    hook's process group), and lets go of stdout and stderr (/dev/null) before the hook returns:
    Claude waits for the hook's stdout to close, and must not wait for the child."""
    ready_r, ready_w = os.pipe()
    if os.fork():
        os.close(ready_w)
        os.read(ready_r, 1)  # EOF once the child has closed its end, after the dup2s below
        os.close(ready_r)
        return False
    os.close(ready_r)
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)
    os.close(ready_w)
    return True


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


def deliver(
    socket_path: str, params: bytes, deadline: float, method: bytes = b"ingest"
) -> bytes | None:
    """Send one request (`ingest`, or the statusline's `statusline`); the reply line, or None if
    the daemon could not be reached or did not answer by `deadline`. trust.Untrusted (a
    PermissionError), before anything is sent, if the socket's peer is not of our uid."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        try:
            sock.settimeout(CONNECT_S)
            sock.connect(socket_path)
            # trust.peer_uid, inlined: importing trust.py would cost more than the check itself.
            creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
        except OSError:  # missing, refused, not a socket, timed out (TimeoutError is an OSError)
            return None
        if int.from_bytes(creds[4:8], sys.byteorder) != os.geteuid():
            from agentd import trust

            trust.check_peer(sock, socket_path)  # raises Untrusted, saying whose socket it is
        try:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock.sendall(b'{"jsonrpc":"2.0","id":1,"method":"%s","params":%s}\n' % (method, params))
            reply = b""
            while b"\n" not in reply:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    return None
                reply += chunk
            return reply
        except OSError:
            return None
    finally:
        sock.close()


def is_parse_error(reply: bytes) -> bool:
    return b'"code":-32700' in reply or b'"code":-32602' in reply


def autostart(state_dir: str) -> None:
    """Start the daemon in the background, once even when many hooks find it down at once.

    Its lock and log are opened in the checked state dir, O_NOFOLLOW: a link planted there is
    refused, never written through."""
    import fcntl

    from agentd import trust

    dir_fd = trust.open_private_dir(state_dir)  # checked once: both files are opened in it
    try:
        fd = trust.open_private("autostart.lock", os.O_RDWR | os.O_CREAT, dir_fd=dir_fd)
    except BaseException:
        os.close(dir_fd)
        raise
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # another hook is starting it right now
        st = os.fstat(fd)
        # A start moments ago is still coming up. An mtime in the future is a clock that stepped
        # back, not a recent start: trusting it would block autostart until the clock caught up.
        if st.st_size and 0 <= time.time() - st.st_mtime < AUTOSTART_EVERY_S:
            return
        os.ftruncate(fd, 0)
        os.write(fd, b"%d\n" % os.getpid())
        log = trust.open_private("agentd.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, dir_fd)
        try:
            # posix_spawn, not subprocess (a heavy import); setsid detaches it from Claude's
            # session. The log goes in as an fd already opened safely (POSIX_SPAWN_DUP2).
            os.posix_spawn(
                sys.executable,
                [sys.executable, "-m", "agentd", "start", "--foreground", "--no-log-to-stderr"],
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                    (os.POSIX_SPAWN_DUP2, log, 2),
                ],
                setsid=True,
            )
        finally:
            os.close(log)
    finally:
        os.close(fd)
        os.close(dir_fd)


def socket_refusal(socket_path: str) -> PermissionError | None:
    """Why the socket's directory is not one to connect in (others could have planted the
    socket): a trust.Untrusted, or None. A missing directory is fine: no daemon runs yet."""
    directory = os.path.dirname(socket_path) or "."
    try:
        st = os.lstat(directory)
    except OSError:
        return None  # missing or unreadable: connecting fails too, and the event is spooled
    if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022:
        return None  # the usual case, decided without importing trust.py
    from agentd import trust

    try:
        trust.check_dir(directory)
    except trust.Untrusted as e:
        return e
    except OSError:
        pass
    return None


def run(env: dict[str, str] | os._Environ[str], start: float) -> None:
    deadline = start + BUDGET_S
    received_at = int(time.time() * 1000)
    try:
        file = paths.read_config_file(paths.config_file(env))
    except (OSError, ValueError):
        file = {}  # a broken config file must not cost the event; `agentd status` reports it
    max_line = file.get("max_line_bytes")
    limit = (max_line if isinstance(max_line, int) else paths.MAX_LINE_BYTES) - paths.ENVELOPE_BYTES
    stdin = Stdin(limit)
    if not stdin.read(start + STDIN_HANDOFF_S):
        if not hand_off():
            return  # the child keeps the event
        stdin.read(time.monotonic() + STDIN_LATE_S)
        deadline = time.monotonic() + BUDGET_S  # the child has time: nobody waits for it
    payload = stdin.payload()
    if not payload.strip():
        return  # nothing to keep
    # Normally all of BUDGET_S is left; if stdin came late, still give delivery a fair try.
    deadline = max(deadline, time.monotonic() + 2 * CONNECT_S)
    if not payload.lstrip().startswith(b"{"):
        payload = spool.wrap_unparsed(payload)
    socket_path = paths.socket_path(env, file)
    params = spool.encode_line(SOURCE, received_at, payload)  # the `ingest` params, one line
    refused = socket_refusal(socket_path)
    if refused is None:
        try:
            reply = deliver(socket_path, params, deadline)
            if reply is not None and is_parse_error(reply):
                params = spool.encode_line(SOURCE, received_at, spool.wrap_unparsed(payload))
                reply = deliver(socket_path, params, deadline)
            if reply is not None and b'"result"' in reply:
                return
        except PermissionError as e:  # trust.Untrusted: a peer of another uid
            refused = e
    # Not delivered (or not acked in time: the daemon may have committed it; replays are harmless).
    # Whether the payload is JSON is left to the daemon (spool.decode_line keeps a non-JSON one as
    # text when it drains the spool): a json import here would cost more than the rest of the hook.
    # A state dir that is not ours raises trust.Untrusted here: nothing is written in it.
    from agentd import trust

    state = paths.state_dir(env)
    trust.private_dir(state)
    spool.write_file(os.path.join(state, "spool"), SOURCE, [params + b"\n"])
    if refused is not None:  # kept; and no daemon is started to listen beside a planted socket
        os.write(2, f"agentd-hook: event spooled, not sent: {refused}\n".encode())
        return
    autostart_setting = env.get("AGENTD_AUTOSTART", file.get("autostart", True))
    if autostart_setting not in (False, "0", "false", "no", "off"):
        try:
            autostart(state)
        except OSError as e:  # the event is safe in the spool; only the start failed
            os.write(2, f"agentd-hook: event spooled; daemon not started: {e}\n".encode())


def ignore_termination() -> None:
    """Claude Code SIGTERMs hooks still running when a `-p` session ends (StopFailure, SessionEnd),
    within milliseconds of starting them. Finish the delivery or the spool write instead: the hook
    bounds itself at BUDGET_S anyway. (hook.py does this first of all, and the installed command
    starts with `trap '' TERM HUP`, which covers the interpreter's own start-up.)"""
    _signal.signal(_signal.SIGTERM, _signal.SIG_IGN)
    _signal.signal(_signal.SIGHUP, _signal.SIG_IGN)


def main() -> None:
    start = time.monotonic()
    ignore_termination()  # again, for the `agentd-hook` console script, which imports hook.py
    try:
        run(os.environ, start)
    except BaseException as e:  # never break the agent: report on stderr (Claude's debug log)
        try:  # noqa: SIM105 (contextlib would be one more import on the hook's path)
            os.write(2, f"agentd-hook: event not kept: {type(e).__name__}: {e}\n".encode())
        except OSError:
            pass
    os._exit(0)  # skip interpreter teardown: nothing left to flush, and it costs milliseconds
