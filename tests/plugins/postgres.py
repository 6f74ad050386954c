"""A private PostgreSQL server for the tests: `initdb` + `pg_ctl` on a temporary folder, on a free
loopback port, trust authentication, stopped at the end of the session.

The machine's own PostgreSQL (if any) is never used: a test owns its server, its port and its data.
initdb refuses to run as root, so as root the server runs as the `postgres` user (Debian's package
creates it) over a folder that user owns.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.plugins.mosquitto import free_port


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class Postgres:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        cmd = list(argv)
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)

    def start(self) -> None:
        initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
        if not initdb or not pg_ctl:
            pytest.fail("PostgreSQL server binaries not found (Debian: apt-get install postgresql)")
        if self.user:
            shutil.chown(self.root, self.user, self.user)
        done = self._run(
            initdb, "-D", str(self.data), "--auth=trust", "-U", "edge", "-E", "UTF8", "--no-sync"
        )
        assert done.returncode == 0, done.stderr
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        done = self._run(
            pg_ctl, "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w", "start"
        )
        assert done.returncode == 0, done.stderr + (self.root / "log").read_text(errors="replace")

    def stop(self) -> None:
        pg_ctl = _bin("pg_ctl")
        if pg_ctl:
            self._run(pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://edge@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh empty database for one test; its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url(), autocommit=True) as conn:
                    conn.execute(f"CREATE DATABASE {name}")
                return self.url(name)
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    root = Path(tempfile.mkdtemp(prefix="edge-pg-"))
    server = Postgres(root)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: Postgres) -> str:
    return postgres_server.new_database()
