"""Never lose, never lie: late stdin, planted sockets, planted links, file modes, a clock that
steps back. Real hook, real CLI, real daemon; another local user made with useradd (root only)."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import select
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentd.client import call
from conftest import REPO, load_jsonl, query_db, wait_for, with_autostart

HOOK = [sys.executable, "-I", "-S", str(REPO / "daemon" / "agentd" / "hook.py")]
POST = next(
    r["stdin"]
    for r in load_jsonl("claude_hooks_examples.jsonl")
    if r["hook_event_name"] == "PostToolUse"
)
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="making a throwaway user needs root")


def agentd(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentd", *args], env=env, capture_output=True, text=True, timeout=60
    )


def run_hook(env: dict[str, str], payload: dict) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        HOOK, input=json.dumps(payload).encode(), env=env, capture_output=True, timeout=30
    )


def spooled(spool_dir: Path) -> list[str]:
    """The tool_use_ids in the spool's finished files."""
    if not spool_dir.exists():
        return []
    lines = (line for f in spool_dir.glob("*.ndjson") for line in f.read_bytes().splitlines())
    return [json.loads(line)["payload"].get("tool_use_id") for line in lines]


def shut_down(env: dict[str, str], config, coming: float = 0.0) -> None:
    """Stop whatever daemon a test got started; `coming`: how long one may take to come up."""
    wait_for(lambda: config.socket_path.exists(), coming)
    with contextlib.suppress(Exception):
        call(config.socket_path, "shutdown")
    wait_for(lambda: not config.socket_path.exists())
    agentd(env, "stop")


# -- 1. stdin that comes late ---------------------------------------------------------------------


def late_hook(env: dict[str, str], first: bytes = b"") -> subprocess.Popen[bytes]:
    """A hook whose stdin brings `first` now and the rest only after the hook has exited."""
    proc = subprocess.Popen(
        HOOK, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    if first:
        proc.stdin.write(first)
        proc.stdin.flush()
    assert proc.wait(10) == 0  # within its budget, the payload not yet there
    # Claude waits for the hook's stdout and stderr to close: nothing may hold them open.
    for pipe in (proc.stdout, proc.stderr):
        assert select.select([pipe], [], [], 5)[0], "the hook's output is still held open"
        assert pipe.read() == b""
        pipe.close()
    return proc


def finish(proc: subprocess.Popen[bytes], rest: bytes) -> None:
    try:
        proc.stdin.write(rest)
        proc.stdin.close()
    except BrokenPipeError:
        pytest.fail("nobody reads stdin once the hook has exited: the event is lost")


def test_stdin_that_comes_after_the_hook_exited_is_spooled(agentd_env, config):
    env = dict(agentd_env, AGENTD_AUTOSTART="0")
    proc = late_hook(env)
    finish(proc, json.dumps(dict(POST, tool_use_id="toolu_late")).encode() + b"\n")
    assert wait_for(lambda: spooled(config.spool_dir) == ["toolu_late"], 15)


@pytest.mark.parametrize("cut", ["mid-string", "after a nested object"])
def test_a_payload_that_stalls_midway_is_delivered_whole(daemon, agentd_env, cut):
    payload = json.dumps(dict(POST, tool_use_id="toolu_stalled")).encode()
    at = 100 if cut == "mid-string" else payload.index(b"}") + 1  # ends in `}`, yet not whole
    proc = late_hook(agentd_env, first=payload[:at])  # then silence
    finish(proc, payload[at:])

    def stored():
        return query_db(daemon.config.db_path, "SELECT payload FROM events")

    assert wait_for(lambda: stored(), 15)
    (row,) = stored()
    assert json.loads(row["payload"]) == json.loads(payload)


# -- 2. a socket another user planted -------------------------------------------------------------

LISTENER = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.settimeout(2)
    data = b""
    try:
        while b"\n" not in data:
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
        if data:  # pretend to be agentd: pid 1, and every event "stored"
            c.sendall(b'{"jsonrpc":"2.0","id":1,"result":{"stored":true,"pid":1,"version":"0"}}\n')
    except OSError:
        pass
    print("got", repr(data), flush=True)
    c.close()
"""


@pytest.fixture
def other_user() -> Iterator[int]:
    """A throwaway local user's uid; removed afterwards."""
    if not shutil.which("useradd"):
        pytest.skip("useradd is not installed")
    name = f"agtrust{os.getpid() % 100000}"
    made = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                          capture_output=True, text=True)  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"useradd failed: {made.stderr.strip()}")
    try:
        yield pwd.getpwnam(name).pw_uid
    finally:
        subprocess.run(["userdel", name], capture_output=True)


@contextlib.contextmanager
def planted_socket(path: Path, uid: int) -> Iterator[list[str]]:
    """A listener that user runs at `path`, answering like agentd; yields what it received."""
    python = shutil.which("python3", path="/usr/bin:/bin:/usr/local/bin")
    if python is None:
        pytest.skip("no python3 that another user can run")
    proc = subprocess.Popen([python, "-I", "-c", LISTENER, str(path)], user=uid,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    received: list[str] = []
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        yield received
    finally:
        proc.kill()
        out, _ = proc.communicate(10)
        received += out.splitlines()


@ROOT_ONLY
@pytest.mark.parametrize("where", ["a shared directory", "our private directory"])
def test_a_planted_socket_gets_nothing_and_start_refuses(agentd_env, config, other_user, where):
    shared = Path(tempfile.mkdtemp(prefix="agsh-", dir="/tmp"))
    os.chmod(shared, 0o1777)  # like /tmp: anyone may create a socket here
    socket_dir = shared if where == "a shared directory" else config.state_dir
    config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(config.state_dir, 0o777)  # let that user bind in it; closed again below
    sock = socket_dir / "agentd.sock"
    env = dict(agentd_env, AGENTD_SOCKET=str(sock))
    try:
        with planted_socket(sock, other_user) as received:
            os.chmod(config.state_dir, 0o700)
            hook = run_hook(env, dict(POST, tool_use_id="toolu_secret"))
            started = agentd(env, "start")
            try:
                pinged = f"answered {call(sock, 'ping')}"
            except OSError as e:
                pinged = type(e).__name__
        assert (hook.returncode, hook.stdout) == (0, b"")
        assert not any("toolu_secret" in line for line in received), received
        assert spooled(config.spool_dir) == ["toolu_secret"]  # kept for our own daemon
        assert b"refusing" in hook.stderr and hook.stderr.count(b"\n") == 1
        assert not (config.state_dir / "autostart.lock").exists()  # no daemon started beside it
        assert started.returncode == 1, started.stdout
        assert "already running" not in started.stdout
        reason = "other users can write in it" if socket_dir == shared else f"uid {other_user}"
        assert reason in started.stderr and "Traceback" not in started.stderr
        assert pinged == "Untrusted"  # client.py refuses it too
    finally:
        shutil.rmtree(shared, ignore_errors=True)
        agentd(env, "stop")


# -- 3. links planted in the state dir ------------------------------------------------------------


@pytest.fixture
def victims() -> Iterator[dict[str, Path]]:
    """Files of the victim that planted links point at."""
    where = Path(tempfile.mkdtemp(prefix="agv-", dir="/tmp"))
    files = {name: where / name for name in ("autostart.lock", "agentd.log", "agentd.pid")}
    for path in files.values():
        path.write_text("precious\n")
    yield files
    shutil.rmtree(where, ignore_errors=True)


def assert_untouched(victims: dict[str, Path]) -> None:
    for path in victims.values():
        assert path.read_text() == "precious\n", path


@ROOT_ONLY
def test_a_state_dir_of_another_user_is_not_written(agentd_env, config, other_user, victims):
    home = config.state_dir
    home.mkdir(exist_ok=True)
    for name, target in victims.items():
        (home / name).symlink_to(target)
    os.chown(home, other_user, -1)
    os.chmod(home, 0o755)
    before = sorted(os.listdir(home))
    try:
        hook = run_hook(with_autostart(agentd_env), POST)  # daemon down, autostart on
        assert (hook.returncode, hook.stdout) == (0, b"")
        assert hook.stderr.count(b"\n") == 1 and b"owned by uid" in hook.stderr
        started = agentd(agentd_env, "start")
        assert started.returncode == 1 and f"owned by uid {other_user}" in started.stderr
        assert "Traceback" not in started.stderr
        assert sorted(os.listdir(home)) == before
        assert_untouched(victims)
    finally:
        shut_down(agentd_env, config)


def test_a_state_dir_others_can_write_is_refused_not_chmodded(agentd_env, config):
    """AGENTD_HOME pointing at a shared directory of ours (a 1777 /tmp, for root): the hook must
    not make it 0700, which would lock every other user out of it; it refuses it, as start does."""
    home = config.state_dir
    home.mkdir(exist_ok=True)
    os.chmod(home, 0o1777)
    try:
        hook = run_hook(with_autostart(agentd_env), POST)
        assert (hook.returncode, hook.stdout) == (0, b"")
        assert b"other users can write in it" in hook.stderr and hook.stderr.count(b"\n") == 1
        assert stat.S_IMODE(home.stat().st_mode) == 0o1777
        assert not (home / "spool").exists() and not (home / "autostart.lock").exists()
        started = agentd(agentd_env, "start")
        assert started.returncode == 1 and "other users can write in it" in started.stderr
        assert stat.S_IMODE(home.stat().st_mode) == 0o1777
    finally:
        os.chmod(home, 0o700)
        shut_down(agentd_env, config)


def test_our_state_dir_others_can_only_read_is_made_private(agentd_env, config):
    """A 0755 state dir of ours (an older agentd's): tightened, and the event kept."""
    config.state_dir.mkdir(exist_ok=True)
    os.chmod(config.state_dir, 0o755)
    hook = run_hook(dict(agentd_env, AGENTD_AUTOSTART="0"), dict(POST, tool_use_id="toolu_kept"))
    assert (hook.returncode, hook.stdout, hook.stderr) == (0, b"", b"")
    assert spooled(config.spool_dir) == ["toolu_kept"]
    assert stat.S_IMODE(config.state_dir.stat().st_mode) == 0o700


def test_links_planted_in_our_state_dir_are_never_followed(agentd_env, config, victims):
    home = config.state_dir
    for name, target in victims.items():
        (home / name).symlink_to(target)
    hook = run_hook(with_autostart(agentd_env), dict(POST, tool_use_id="toolu_linked"))  # down
    try:
        assert (hook.returncode, hook.stdout) == (0, b"")
        assert spooled(config.spool_dir) == ["toolu_linked"]  # the event is kept
        assert b"autostart.lock: it is a symbolic link" in hook.stderr
        started = agentd(agentd_env, "start")
        assert started.returncode == 1
        assert "agentd.log: it is a symbolic link" in started.stderr
        (home / "agentd.log").unlink()
        started = agentd(agentd_env, "start", "--foreground")  # the pid file is the next one
        assert started.returncode == 1
        assert "agentd.pid: it is a symbolic link" in started.stderr
        assert "Traceback" not in started.stderr
        assert_untouched(victims)
    finally:
        shut_down(agentd_env, config)


# -- 4. modes -------------------------------------------------------------------------------------


def test_every_file_agentd_creates_is_private(agentd_env, config, tmp_path):
    env = dict(agentd_env, AGENTD_AUTOSTART="0")
    old_umask = os.umask(0o022)  # what a user's shell typically has; children inherit it
    try:
        assert run_hook(env, dict(POST, tool_use_id="toolu_spooled")).returncode == 0
        assert spooled(config.spool_dir) == ["toolu_spooled"]
        assert agentd(env, "start").returncode == 0
        assert wait_for(lambda: not spooled(config.spool_dir))
        assert run_hook(env, dict(POST, tool_use_id="toolu_acked")).returncode == 0
        transcripts = tmp_path / "projects" / "-w"
        transcripts.mkdir(parents=True)
        shutil.copy(REPO / "tests" / "payloads" / "claude_transcript_trimmed.jsonl", transcripts)
        imported = agentd(env, "import", "claude", "--path", str(tmp_path / "projects"))
        assert imported.returncode == 0, imported.stderr
    finally:
        os.umask(old_umask)
        stopped = agentd(env, "stop")
    assert stopped.returncode == 0, stopped.stderr
    found = {}
    for root, dirs, files in os.walk(config.state_dir):
        for name in dirs + files:
            path = Path(root, name)
            found[str(path.relative_to(config.state_dir))] = stat.S_IMODE(path.lstat().st_mode)
    assert {"agentd.log", "agentd.db", "spool", "import-state.json"} <= set(found), found
    loose = {
        name: f"{mode:04o}"
        for name, mode in found.items()
        if mode != (0o700 if (config.state_dir / name).is_dir() else 0o600)
    }
    assert loose == {}
    assert stat.S_IMODE(config.state_dir.stat().st_mode) == 0o700


# -- 5. a clock that steps back -------------------------------------------------------------------


def test_an_autostart_lock_from_the_future_does_not_block_autostart(agentd_env, config):
    lock = config.state_dir / "autostart.lock"
    lock.write_text("12345\n")
    an_hour_ahead = time.time() + 3600  # a start "moments ago" by a clock since set back an hour
    os.utime(lock, (an_hour_ahead, an_hour_ahead))
    try:
        hook = run_hook(with_autostart(agentd_env), dict(POST, tool_use_id="toolu_future"))
        assert (hook.returncode, hook.stdout) == (0, b"")

        def stored():
            with contextlib.suppress(Exception):
                return query_db(config.db_path, "SELECT count(*) AS n FROM events")[0]["n"]

        assert wait_for(lambda: stored() == 1, 20), "the daemon was not started"
    finally:
        shut_down(agentd_env, config, coming=10)
