"""Shared fixtures: real daemons on short temp sockets, real SQLite files, the real payloads."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentd.client import Client, NotRunning
from agentd.config import Config

REPO = Path(__file__).resolve().parents[1]
# Real payloads captured from Claude Code and OpenCode (tests/payloads/README.md says which).
PAYLOADS = REPO / "tests" / "payloads"


def load_jsonl(name: str) -> list[dict[str, Any]]:
    """Records of a JSONL file in tests/payloads."""
    with (PAYLOADS / name).open() as f:
        return [json.loads(line) for line in f if line.strip()]


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, step: float = 0.05) -> bool:
    """Call predicate every `step` s: True once it is truthy, False if `timeout` s pass first.
    The default only bounds a failing test: a loaded machine may take seconds to get there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def spool_empty(config: Config) -> bool:
    """No spool file left, finished or still open. Capture is "delivered, or spooled and then
    drained by the daemon", which deletes a file only once its events committed: with a daemon
    running, an empty spool after the client exited means every event it kept is in the database."""
    if not config.spool_dir.exists():
        return True
    return not any(p.name.endswith((".ndjson", ".ndjson.open")) for p in config.spool_dir.iterdir())


@pytest.fixture
def agentd_home() -> Iterator[Path]:
    """A fresh AGENTD_HOME at a short path (Unix socket paths must stay under 108 bytes)."""
    home = Path(tempfile.mkdtemp(prefix="agd-", dir="/tmp"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def agentd_env(agentd_home: Path) -> dict[str, str]:
    """The environment a subprocess (daemon, hook, CLI) gets: everything under agentd_home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTD_")}
    env["AGENTD_HOME"] = str(agentd_home)
    # Off unless a test is about autostart (with_autostart): a hook whose ack is late on a loaded
    # machine would start a daemon of its own, which may outlive the test's daemon and its home.
    env["AGENTD_AUTOSTART"] = "0"
    return env


def with_autostart(env: dict[str, str]) -> dict[str, str]:
    """`env` with autostart as a user has it by default (on, unless the config file says no)."""
    return {k: v for k, v in env.items() if k != "AGENTD_AUTOSTART"}


@pytest.fixture
def config(agentd_env: dict[str, str]) -> Config:
    return Config.load(agentd_env)


class Daemon:
    """A real `agentd start --foreground` subprocess, stopped by the test that started it."""

    def __init__(self, env: dict[str, str], config: Config) -> None:
        self.env = env
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Daemon:
        # To a file, not a pipe: a pipe nobody reads fills up and blocks the daemon's logging.
        self.stderr_path = Path(self.env["AGENTD_HOME"]) / f"daemon-{time.monotonic_ns()}.stderr"
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agentd", "start", "--foreground"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.stderr_path.read_text(errors="replace")
                raise RuntimeError(f"daemon exited with {self.process.returncode}: {err}")
            try:
                self.call("ping")
                return self
            except (NotRunning, OSError):
                time.sleep(0.02)
        raise RuntimeError("daemon did not answer ping in time")

    def client(self, timeout: float = 10.0) -> Client:
        client = Client(self.config.socket_path, timeout=timeout)
        client.connect()
        return client

    def call(self, method: str, params: Any = None) -> Any:
        with Client(self.config.socket_path, timeout=10.0) as client:
            return client.call(method, params)

    def ingest(self, source: str, payload: dict[str, Any], received_at: int | None = None) -> Any:
        params: dict[str, Any] = {"source": source, "payload": payload}
        if received_at is not None:
            params["received_at"] = received_at
        return self.call("ingest", params)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@pytest.fixture
def daemon(agentd_env: dict[str, str], config: Config) -> Iterator[Daemon]:
    """A running daemon (subprocess) with its own AGENTD_HOME; stopped after the test."""
    running = Daemon(agentd_env, config).start()
    yield running
    running.stop()


@pytest.fixture
def make_daemon(agentd_env: dict[str, str], config: Config) -> Iterator[Any]:
    """A factory for daemons the test starts (and restarts) itself; all are stopped at teardown."""
    started: list[Daemon] = []

    def make() -> Daemon:
        d = Daemon(agentd_env, config)
        started.append(d)
        return d

    yield make
    for d in started:
        if d.alive:
            d.stop()


@pytest.fixture(scope="module")
def pg() -> Iterator[Any]:
    """A real PostgreSQL server on a Unix socket in a temp directory (pgserver.py), one per test
    module, destroyed after it."""
    from pgserver import PgServer

    server = PgServer()
    try:
        yield server.start()
    finally:
        server.destroy()


@pytest.fixture
def machine() -> Iterator[Any]:
    """A machine that pushes (pushkit.Machine: its own agentd home and daemon), destroyed after
    the test."""
    from pushkit import Machine

    m = Machine().start()
    try:
        yield m
    finally:
        m.destroy()


def query_db(db_path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Rows as dicts, read through a read-only connection (the daemon may still be writing)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute(sql, params)]
    finally:
        conn.close()
