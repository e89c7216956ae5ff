"""A real PostgreSQL server for the push tests: initdb in a temp dir, a Unix socket only.

initdb and postgres refuse to run as root, so under root (CI) the server runs as an
unprivileged user (`postgres` if the Debian package made one, else `nobody`) through runuser.
Two roles: the superuser `agentd_admin` (trust) and `alice`, whose password is checked
(scram-sha-256), for the wrong-password test.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

ALICE_PASSWORD = "s3cret-alice"


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    if not found[-1]:
        raise RuntimeError(f"{name} not found: ./scripts/test installs PostgreSQL (apt-get)")
    return found[-1]


def _run_as() -> list[str]:
    if os.getuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            return ["runuser", "-u", user, "--"]
    raise RuntimeError("no unprivileged user to run PostgreSQL as")


class PgServer:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="agpg-", dir="/tmp"))
        self.data = self.base / "data"
        self.socket_dir = self.base / "sock"
        self.log = self.base / "server.log"
        self.prefix = _run_as()
        self.running = False

    def _own(self, *paths: Path) -> None:
        if self.prefix:
            user = self.prefix[2]
            for path in paths:
                shutil.chown(path, user, user)

    def start(self) -> PgServer:
        if not self.data.exists():
            self.base.chmod(0o755)
            self.socket_dir.mkdir()
            self.log.touch()
            self._own(self.base, self.socket_dir, self.log)
            subprocess.run(
                [*self.prefix, _bin("initdb"), "-D", str(self.data), "-U", "agentd_admin",
                 "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"],
                check=True, capture_output=True,
            )  # fmt: skip
            with (self.data / "postgresql.conf").open("a") as f:
                f.write(
                    f"listen_addresses = ''\nunix_socket_directories = '{self.socket_dir}'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "max_connections = 40\nshared_buffers = 64MB\n"
                )
            (self.data / "pg_hba.conf").write_text(
                "local all alice scram-sha-256\nlocal all all trust\n"
            )
        subprocess.run(
            [*self.prefix, _bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
             "-t", "30", "start"],
            check=True, capture_output=True,
        )  # fmt: skip
        self.running = True
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'alice'").fetchone()
            if not exists:
                conn.execute(f"CREATE ROLE alice LOGIN PASSWORD '{ALICE_PASSWORD}'")
        return self

    def stop(self) -> None:
        if self.running:
            subprocess.run(
                [*self.prefix, _bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
                check=False, capture_output=True,
            )  # fmt: skip
            self.running = False

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def url(self, dbname: str, user: str = "agentd_admin", password: str | None = None) -> str:
        auth = f"{user}:{password}" if password else user
        return f"postgresql://{auth}@/{dbname}?host={self.socket_dir}"

    def create_database(self, name: str, owner: str = "agentd_admin") -> str:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} OWNER {owner}")
        return self.url(name)
