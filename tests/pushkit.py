"""Helpers of the push tests: machines (an AGENTD_HOME with a real daemon fed real payloads)
and comparisons of local rows with what the server holds."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psycopg

from agentd.config import Config
from agentd.push.local import TABLES
from conftest import Daemon, load_jsonl

CLAUDE = [r["stdin"] for r in load_jsonl("claude_hooks_examples.jsonl")]
OPENCODE = [
    {k: v for k, v in r.items() if k != "scenario"}
    for r in load_jsonl("opencode_plugin_events_examples.jsonl")
]


class Machine:
    """One AGENTD_HOME with its own daemon, machine id and database."""

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="agd-", dir="/tmp"))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTD_")}
        self.env["AGENTD_HOME"] = str(self.home)
        self.config = Config.load(self.env)
        self.daemon = Daemon(self.env, self.config)

    def start(self) -> Machine:
        self.daemon.start()
        return self

    def feed(self, source: str, payloads: list[dict[str, Any]], received_at: int | None = None):
        for n, payload in enumerate(payloads):
            at = None if received_at is None else received_at + n
            assert self.daemon.ingest(source, payload, at) == {"stored": True}

    def agentd(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agentd", *args],
            env=self.env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def push(self, url: str, *args: str) -> subprocess.CompletedProcess[str]:
        result = self.agentd("push", url, *args)
        assert result.returncode == 0, result.stderr
        return result

    @property
    def machine_id(self) -> str:
        return (self.config.state_dir / "machine-id").read_text().strip()

    def local_rows(self, table: str) -> dict[str, tuple[Any, ...]]:
        conn = sqlite3.connect(f"file:{self.config.db_path}?mode=ro", uri=True)
        try:
            cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            rows = conn.execute(f"SELECT {', '.join(cols)} FROM {table}").fetchall()
        finally:
            conn.close()
        return {row[0]: tuple(row) for row in rows}

    def columns(self, table: str) -> list[str]:
        conn = sqlite3.connect(f"file:{self.config.db_path}?mode=ro", uri=True)
        try:
            return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
        finally:
            conn.close()

    def stop(self) -> None:
        if self.daemon.alive:
            self.daemon.stop()

    def destroy(self) -> None:
        self.stop()
        import shutil

        shutil.rmtree(self.home, ignore_errors=True)


def server_rows(url: str, machine: Machine, table: str) -> dict[str, tuple[Any, ...]]:
    cols = machine.columns(table)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            f"SELECT {', '.join(cols)} FROM agentd.{table} WHERE machine_id = %s",  # type: ignore[arg-type]
            (machine.machine_id,),
        ).fetchall()
    return {row[0]: tuple(row) for row in rows}


def assert_same(url: str, machine: Machine, tables: tuple[str, ...] = TABLES) -> int:
    """Every local row is on the server with the same values, and nothing else; rows compared."""
    total = 0
    for table in tables:
        local = machine.local_rows(table)
        remote = server_rows(url, machine, table)
        assert set(remote) == set(local), table
        for row_id, row in local.items():
            assert remote[row_id] == row, (table, row_id)
        total += len(local)
    return total


def scalar(url: str, sql: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, params).fetchone()  # type: ignore[arg-type]
    return row[0] if row else None
