"""Fault injection: the daemon down under a storm, kill -9 under load, a full or read-only spool,
100 000 hostile frames, a peer of another uid. Each test prints its counts and timings (-s)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import REPO, load_jsonl, query_db, wait_for

HOOK = [sys.executable, "-I", "-S", str(REPO / "daemon" / "agentd" / "hook.py")]
POST = next(
    r["stdin"]
    for r in load_jsonl("claude_hooks_examples.jsonl")
    if r["hook_event_name"] == "PostToolUse"
)


def count(db: Path, sql: str) -> int:
    return query_db(db, sql)[0]["n"]


def run_hook(env: dict[str, str], payload: dict) -> tuple[int, bytes, float]:
    started = time.monotonic()
    result = subprocess.run(
        HOOK, input=json.dumps(payload).encode(), env=env, capture_output=True, timeout=30
    )
    return result.returncode, result.stdout, time.monotonic() - started


def test_2000_hooks_with_the_daemon_down_all_land_once(make_daemon, agentd_env, config):
    env = dict(agentd_env, AGENTD_AUTOSTART="0")
    payloads = [
        dict(POST, session_id=f"storm-{i % 20}", tool_use_id=f"toolu_storm_{i}")
        for i in range(2000)
    ]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=64) as pool:
        results = list(pool.map(lambda p: run_hook(env, p), payloads))
    fired = time.monotonic() - started
    assert {(code, out) for code, out, _ in results} == {(0, b"")}
    # A hook whose stdin came late (a starved machine) left it to a child that may still be at it.
    assert wait_for(lambda: len(list(config.spool_dir.glob("*.ndjson"))) == 2000, 60)
    started = time.monotonic()
    make_daemon().start()
    landed = wait_for(lambda: count(config.db_path, "SELECT count(*) AS n FROM tools") == 2000, 120)
    assert landed, query_db(
        config.db_path,
        "SELECT count(*) AS tools, (SELECT count(*) FROM events) AS events FROM tools",
    )
    drained = time.monotonic() - started
    assert count(config.db_path, "SELECT count(*) AS n FROM events") == 2000
    assert count(config.db_path, "SELECT count(DISTINCT id) AS n FROM tools") == 2000
    assert count(config.db_path, "SELECT sum(tool_call_count) AS n FROM sessions") == 2000
    assert wait_for(lambda: not list(config.spool_dir.glob("*.ndjson")), timeout=30)
    slowest = max(t for _, _, t in results)
    print(f"\n2000 hooks (64 at a time) in {fired:.1f} s, slowest {slowest * 1000:.0f} ms; "
          f"drained and stored in {drained:.1f} s")  # fmt: skip


def test_kill_9_under_load_loses_nothing_acked_or_spooled(make_daemon, agentd_env, config):
    daemon = make_daemon().start()
    acked: list[set[str]] = [set() for _ in range(8)]
    stop = threading.Event()

    def client(n: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(config.socket_path))
                    f = s.makefile("rwb")
                    while not stop.is_set():
                        key = f"c{n}-{i}"
                        i += 1
                        params = {"source": "claude", "payload": dict(POST, tool_use_id=key)}
                        f.write(
                            json.dumps(
                                {"jsonrpc": "2.0", "id": key, "method": "ingest", "params": params}
                            ).encode()
                            + b"\n"
                        )
                        f.flush()
                        reply = f.readline()
                        if not reply:
                            break
                        if json.loads(reply).get("result") == {"stored": True}:
                            acked[n].add(key)
            except OSError:
                time.sleep(0.01)  # the daemon is gone; keep trying until told to stop

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    # Killed mid-stream: once every client has had an ack (a fixed wait may see none when loaded).
    assert wait_for(lambda: all(acked), 60), [len(a) for a in acked]
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait()
    killed_after = sum(len(a) for a in acked)
    # Hooks that fire while it is dead spool their events.
    env = dict(agentd_env, AGENTD_AUTOSTART="0")
    spooled = [f"hook-{i}" for i in range(20)]
    for key in spooled:
        assert run_hook(env, dict(POST, tool_use_id=key))[0] == 0
    stop.set()
    for t in threads:
        t.join(10)
    restarted = make_daemon().start()
    assert wait_for(lambda: not list(config.spool_dir.glob("*.ndjson")), timeout=30)
    stored = {
        r["k"]
        for r in query_db(
            config.db_path, "SELECT json_extract(payload, '$.tool_use_id') AS k FROM events"
        )
    }
    every_ack = set().union(*acked)
    assert every_ack, "the clients got no ack at all"
    assert every_ack <= stored, f"{len(every_ack - stored)} acked events lost"
    assert set(spooled) <= stored
    assert query_db(config.db_path, "PRAGMA integrity_check") == [{"integrity_check": "ok"}]
    assert restarted.call("ping")
    print(f"\nkill -9 after {killed_after} acked events from 8 clients; after restart all "
          f"{len(every_ack)} acked + {len(spooled)} spooled present; integrity ok")  # fmt: skip


@contextlib.contextmanager
def tmpfs(path: Path, options: str):
    """A small tmpfs mounted at `path` (root only); unmounted on exit."""
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({result.stderr.strip() or 'not root'}): needs root"
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("mount"), reason="mounting a tmpfs needs root"
)
@pytest.mark.parametrize("kind", ["full", "read-only"])
def test_full_or_read_only_spool_keeps_hooks_fast_and_silent(agentd_env, config, kind):
    env = dict(agentd_env, AGENTD_AUTOSTART="0")
    with tmpfs(config.spool_dir, "size=64k,mode=0700") as spool_dir:
        if kind == "full":
            with contextlib.suppress(OSError), open(spool_dir / "filler", "wb") as f:
                while True:
                    f.write(b"x" * 4096)
        else:
            subprocess.run(["mount", "-o", "remount,ro", str(spool_dir)], check=True)
        times = []
        for i in range(10):
            code, out, elapsed = run_hook(env, dict(POST, tool_use_id=f"toolu_{kind}_{i}"))
            assert (code, out) == (0, b"")
            times.append(elapsed)
        assert max(times) < 10  # none hangs on the full or read-only spool (not a speed test)
        print(f"\n{kind} spool: 10 hooks exited 0, slowest {max(times) * 1000:.0f} ms")


def mutated_frames(n: int, seed: int = 7) -> list[bytes]:
    """Seeded hostile input: valid requests bit-flipped, cut, spliced, nested, oversized numbers."""
    rng = random.Random(seed)
    base = [
        json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "ingest",
                "params": {"source": "claude", "payload": POST},
            }
        ).encode(),
        b'{"jsonrpc":"2.0","id":2,"method":"ping"}',
        b'[{"jsonrpc":"2.0","id":3,"method":"status"},{"jsonrpc":"2.0","method":"ping"}]',
    ]
    out = []
    for _ in range(n):
        frame = bytearray(rng.choice(base))
        for _ in range(rng.randint(1, 6)):
            op = rng.randrange(7)
            pos = rng.randrange(len(frame) + 1)
            if op == 0 and frame:
                frame[min(pos, len(frame) - 1)] ^= 1 << rng.randrange(8)
            elif op == 1:
                frame = frame[:pos]
            elif op == 2:
                frame[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            elif op == 3:
                frame[pos:pos] = rng.choice(
                    [b"[", b"{", b'"', b"\\", b"\xff", b"1e999", b"-0", b"null", b"[[[[[[[["]
                )
            elif op == 4:
                frame = frame.replace(b"2.0", rng.choice([b"1.0", b"2", b'"2.0"', b""]), 1)
            elif op == 5:
                frame = frame.replace(
                    b"ingest", rng.choice([b"shutdown_", b"INGEST", b"", b"prune"]), 1
                )
            else:
                frame = frame.replace(
                    b'"id":', rng.choice([b'"id":{},"x":', b'"id":[1],', b'"id":1.5,']), 1
                )
        # No frame may stop the daemon by asking politely: that is not what this tests.
        frame = frame.replace(b'"shutdown"', b'"shutdown_"').replace(b'"prune"', b'"prune_"')
        out.append(bytes(frame).replace(b"\n", b" ") + b"\n")
    return out


class HostileConnection:
    """Sends frames with blocking writes while a thread reads and discards the answers (a client
    that never reads would stall its own connection, not test the daemon). Reconnects when the
    daemon closes it (after a line over the limit, say)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sent = self.reconnects = 0
        self._connect()

    def _connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(self.path))
        self.reader = threading.Thread(target=self._drain, args=(self.sock,), daemon=True)
        self.reader.start()

    @staticmethod
    def _drain(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while sock.recv(1 << 20):
                pass

    def send(self, frame: bytes) -> None:
        try:
            self.sock.sendall(frame)
            self.sent += 1
        except OSError:
            self.close()
            self.reconnects += 1
            self._connect()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.reader.join(10)


def test_100000_hostile_frames_while_a_good_client_gets_every_ack(daemon, config):
    frames = mutated_frames(100_000)
    good_keys = [f"good-{i}" for i in range(500)]
    connections = [HostileConnection(config.socket_path) for _ in range(4)]

    def hostile(conn: HostileConnection, part: list[bytes]) -> None:
        for frame in part:
            conn.send(frame)

    started = time.monotonic()
    attackers = [
        threading.Thread(target=hostile, args=(c, frames[i::4])) for i, c in enumerate(connections)
    ]
    for t in attackers:
        t.start()
    acked = []
    with socket.socket(socket.AF_UNIX) as good:
        good.connect(str(config.socket_path))
        f = good.makefile("rwb")
        for key in good_keys:
            params = {"source": "claude", "payload": dict(POST, tool_use_id=key)}
            f.write(
                json.dumps(
                    {"jsonrpc": "2.0", "id": key, "method": "ingest", "params": params}
                ).encode()
                + b"\n"
            )
            f.flush()
            reply = json.loads(f.readline())
            assert reply == {"jsonrpc": "2.0", "id": key, "result": {"stored": True}}
            acked.append(key)
    for t in attackers:
        t.join(600)
    elapsed = time.monotonic() - started
    sent = sum(c.sent for c in connections)
    reconnects = sum(c.reconnects for c in connections)
    for c in connections:
        c.close()
    assert sent + reconnects == len(frames)  # every frame went out (a reconnect costs the frame)
    assert sent >= 0.99 * len(frames)
    assert daemon.alive and daemon.call("ping")
    assert acked == good_keys
    stored = {
        r["k"]
        for r in query_db(
            config.db_path, "SELECT json_extract(payload, '$.tool_use_id') AS k FROM events"
        )
    }
    assert set(good_keys) <= stored
    print(f"\n{sent} mutated frames sent on 4 connections ({reconnects} reconnects) and 500 good "
          f"ingests in {elapsed:.1f} s: daemon up, every good ingest acked and stored")  # fmt: skip


@pytest.mark.skipif(os.geteuid() != 0, reason="making a throwaway user needs root")
def test_a_peer_of_another_uid_is_refused(daemon, config):
    if not shutil.which("useradd"):
        pytest.skip("useradd is not installed")
    name = f"agtest{os.getpid() % 100000}"
    made = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                          capture_output=True, text=True)  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"useradd failed: {made.stderr.strip()}")
    try:
        uid = int(
            subprocess.run(["id", "-u", name], capture_output=True, text=True, check=True).stdout
        )
        # Open the file-system gates (0700 dir, 0600 socket) so that only SO_PEERCRED stands.
        os.chmod(config.socket_path.parent, 0o711)
        os.chmod(config.socket_path, 0o666)
        probe = (
            "import socket, sys\n"
            "s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])\n"
            "try:\n"
            '    s.sendall(b\'{"jsonrpc":"2.0","id":1,"method":"ping"}\\n\')\n'
            "    print('answer', repr(s.recv(4096)))\n"
            "except (BrokenPipeError, ConnectionResetError):\n"
            "    print('closed')\n"
        )
        # An interpreter the throwaway user may run (the test's own may live under /root).
        python = shutil.which("python3", path="/usr/bin:/bin:/usr/local/bin")
        if python is None:
            pytest.skip("no python3 that another user can run")
        result = subprocess.run([python, "-I", "-c", probe, str(config.socket_path)],
                                user=uid, capture_output=True, text=True, timeout=30)  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() in ("closed", "answer b''")  # closed without an answer
        log = (config.state_dir / "agentd.log").read_text()
        assert f"refused a peer with uid {uid}" in log
        assert daemon.call("ping")  # the owner still gets in
    finally:
        os.chmod(config.socket_path.parent, 0o700)
        subprocess.run(["userdel", name], capture_output=True)


def test_a_daemon_whose_state_dir_is_deleted_stops_and_drains_nothing_into_it(
    make_daemon, agentd_env, config
):
    """`rm -rf $AGENTD_HOME` under a running daemon: it kept running, drained new spool files into
    its deleted database (those events were lost) and a second daemon started beside it. Now it
    notices within seconds, says so in one line and stops; the spool waits for the next daemon."""
    old = make_daemon().start()
    stderr = open(old.stderr_path, "rb")  # noqa: SIM115 - read after the file is deleted
    try:
        shutil.rmtree(config.state_dir)
        code, _, _ = run_hook(agentd_env, {**POST, "session_id": "orph"})  # the daemon is gone
        assert code == 0 and list(config.spool_dir.glob("*.ndjson"))
        assert wait_for(lambda: not old.alive, timeout=60)
        assert old.process is not None and old.process.returncode == 0
        log = stderr.read().decode()
    finally:
        stderr.close()
    assert log.count("stopping: the ") == 1, log
    assert list(config.spool_dir.glob("*.ndjson"))  # not drained into the deleted database
    new = make_daemon().start()
    assert wait_for(
        lambda: (
            query_db(config.db_path, "SELECT count(*) AS n FROM events WHERE session_id = 'orph'")
            == [{"n": 1}]
        )
    )
    assert new.alive and new.stop() == 0
