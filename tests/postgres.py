"""A real PostgreSQL server for tests: initdb and pg_ctl from the Debian package, a temporary data
folder, a free loopback port, no system service."""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.peers import free_port

DEBIAN_BINDIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def bindir() -> Path:
    """Where initdb and pg_ctl live: `pg_config --bindir`, else the newest Debian version folder."""
    candidates = []
    if shutil.which("pg_config"):
        done = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(Path(done.stdout.strip()))
    for folder in [*candidates, *DEBIAN_BINDIRS]:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    pytest.fail("PostgreSQL's initdb is missing: apt-get install postgresql (.ci/run does)")


class Postgres:
    """One PostgreSQL server; `database()` hands each test a fresh, empty database."""

    def __init__(self, fsync: bool = False) -> None:
        """`fsync` off for tests (a throw-away server); on where timing should be realistic."""
        self._fsync = fsync
        self._bin = bindir()
        # PostgreSQL refuses to run as root: then it runs as the package's own user, in a folder
        # that user owns (pytest's temporary folders are private to root).
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.folder = Path(tempfile.mkdtemp(prefix="edge-agent-pg-"))
        if self._as:
            user = pwd.getpwnam("postgres")
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        self.port = free_port()
        self._names = itertools.count(1)
        self._run("initdb", "-D", self.data, "-U", "edge", "--auth=trust", "-E", "UTF8", "-N")
        self.start()

    @property
    def data(self) -> str:
        return str(self.folder / "data")

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as, str(self._bin / tool), *args], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            f"-c fsync={'on' if self._fsync else 'off'} -c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", self.data, "-o", options, "-l", f"{self.folder}/log", "-w", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """What an administrator's `systemctl restart postgresql` does to every client."""
        self.stop()
        self.start()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://edge@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"test{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def close(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
