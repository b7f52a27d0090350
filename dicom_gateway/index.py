"""The spool's SQLite index (WAL): instances, studies, jobs, outbox. Schema changes are numbered
migrations, applied once, in order, at open."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MIGRATIONS = (
    """
    CREATE TABLE studies (
        study_uid TEXT PRIMARY KEY,
        first_received REAL NOT NULL,
        last_received REAL NOT NULL,
        state TEXT NOT NULL DEFAULT 'receiving',  -- receiving, queued, done, failed
        late_instances INTEGER NOT NULL DEFAULT 0,
        rereads INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE instances (
        sop_uid TEXT PRIMARY KEY,
        study_uid TEXT NOT NULL REFERENCES studies(study_uid),
        series_uid TEXT NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        received REAL NOT NULL,
        calling_ae TEXT NOT NULL,
        late INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX instances_by_study ON instances(study_uid);
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        study_uid TEXT NOT NULL REFERENCES studies(study_uid),
        state TEXT NOT NULL DEFAULT 'queued',  -- queued, running, done, failed
        lease_owner TEXT,
        lease_expires REAL,
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        out_dir TEXT,
        created REAL NOT NULL,
        finished REAL
    );
    CREATE INDEX jobs_by_state ON jobs(state);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id INTEGER REFERENCES jobs(id),
        destination TEXT NOT NULL,
        path TEXT NOT NULL,
        sop_uid TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',  -- pending, sent, failed
        attempts INTEGER NOT NULL DEFAULT 0,
        next_try REAL NOT NULL,
        last_error TEXT,
        sent REAL
    );
    CREATE INDEX outbox_due ON outbox(state, next_try);
    """,
)


def index_path(spool_dir: str | Path) -> Path:
    """Where a spool keeps its index: the service writes it, `pacs outbox` reads it."""
    return Path(spool_dir) / "index.sqlite"


class Index:
    """One SQLite file; one connection per thread; write transactions are BEGIN IMMEDIATE."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        with self.write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], version + 1):
                for statement in filter(str.strip, script.split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")  # an acknowledged row survives power loss
            db.execute("PRAGMA foreign_keys = ON")
            self._local.db = db
        return db

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def read(self, sql: str, *args) -> list[sqlite3.Row]:
        return self._connection().execute(sql, args).fetchall()

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def now() -> float:
    return time.time()
