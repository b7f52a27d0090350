"""The spool index: instances, studies, jobs, outbox, nodes. On SQLite (WAL, one machine, the
default) or PostgreSQL (many machines, `postgres_index.py`). Schema changes are numbered
migrations, written once for both engines, applied once, in order, at open."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TypeVar

from dicom_gateway.dialect import SQLITE, Dialect

log = logging.getLogger(__name__)
T = TypeVar("T")

MIGRATIONS = (
    """
    CREATE TABLE studies (
        study_uid TEXT PRIMARY KEY,
        first_received {time} NOT NULL,
        last_received {time} NOT NULL,
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
        received {time} NOT NULL,
        calling_ae TEXT NOT NULL,
        late INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX instances_by_study ON instances(study_uid);
    CREATE TABLE jobs (
        id {id},
        study_uid TEXT NOT NULL REFERENCES studies(study_uid),
        state TEXT NOT NULL DEFAULT 'queued',  -- queued, running, done, failed
        lease_owner TEXT,
        lease_expires {time},
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        out_dir TEXT,
        created {time} NOT NULL,
        finished {time}
    );
    CREATE INDEX jobs_by_state ON jobs(state);
    CREATE TABLE outbox (
        id {id},
        job_id INTEGER REFERENCES jobs(id),
        destination TEXT NOT NULL,
        path TEXT NOT NULL,
        sop_uid TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',  -- pending, sent, failed
        attempts INTEGER NOT NULL DEFAULT 0,
        next_try {time} NOT NULL,
        last_error TEXT,
        sent {time}
    );
    CREATE INDEX outbox_due ON outbox(state, next_try);
    """,
    """
    -- which outbox process is sending a row (its claim lasts until next_try)
    ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
    -- every running role (named host:pid), as `pacs status` lists them
    CREATE TABLE nodes (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        state TEXT NOT NULL,  -- idle, reading, stopped
        job_id INTEGER,
        started {time} NOT NULL,
        last_seen {time} NOT NULL
    );
    CREATE INDEX jobs_by_finished ON jobs(finished);
    """,
)


def index_path(spool_dir: str | Path) -> Path:
    """Where a spool keeps its SQLite index: the service writes it, `pacs outbox` reads it."""
    return Path(spool_dir) / "index.sqlite"


class Transaction:
    """One write transaction: `execute` takes `?` placeholders on either engine; `now()` is the
    index's clock (the database server's, when it is shared)."""

    def __init__(self, connection, dialect: Dialect, clock: Callable[[], float] | None) -> None:
        self._connection, self.dialect, self._clock = connection, dialect, clock
        self._now: float | None = None
        self.skip_locked, self.for_update = dialect.skip_locked, dialect.for_update

    def execute(self, sql: str, args=()):
        return self._connection.execute(self.dialect.sql(sql), tuple(args))

    def now(self) -> float:
        if self._clock is not None:
            return self._clock()
        if self._now is None or self.dialect.name == "sqlite":
            self._now = self.dialect.now(self)
        return self._now


class Index(ABC):
    """The engine-independent part: migrations, the clock, retries over a broken connection."""

    dialect: Dialect
    transient: tuple[type[Exception], ...] = ()  # errors after which a transaction may be rerun

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock  # tests set the time; None: the engine's clock

    def migrate(self) -> None:
        with self.write() as db:
            version = self.dialect.version(db)
            for number, script in enumerate(MIGRATIONS[version:], version + 1):
                for statement in filter(str.strip, self.dialect.schema(script).split(";")):
                    db.execute(statement)
                self.dialect.set_version(db, number)

    @abstractmethod
    def write(self) -> AbstractContextManager[Transaction]:
        """A write transaction: committed when the block ends, rolled back when it raises."""

    @abstractmethod
    def read(self, sql: str, *args) -> list:
        """Rows of one query outside any write transaction."""

    def retrying(self, step: Callable[[], T], what: str, patience_s: float = 120.0) -> T:
        """Run a whole transaction again while the database is out of reach (a server restart),
        for at most `patience_s`; any other error, or the last one, is raised."""
        deadline = time.monotonic() + patience_s
        while True:
            try:
                return step()
            except self.transient as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("%s: the index is out of reach (%s); retrying", what, exc)
                time.sleep(1.0)

    @abstractmethod
    def close(self) -> None: ...


class SqliteIndex(Index):
    """One SQLite file; one connection per thread; write transactions are BEGIN IMMEDIATE."""

    dialect = SQLITE

    def __init__(self, path: Path, clock: Callable[[], float] | None = None) -> None:
        super().__init__(clock)
        self.path = path
        self._local = threading.local()
        self.migrate()

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
    def write(self) -> Iterator[Transaction]:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield Transaction(db, self.dialect, self._clock)
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
