"""The read queue: claim with a lease, heartbeat, complete, fail.

`JobQueue` is the whole contract the worker relies on; `IndexJobQueue` keeps it in the spool
index, on either engine. On PostgreSQL many workers claim at once: `SELECT … FOR UPDATE SKIP
LOCKED` hands each job to exactly one of them, and leases are judged by the server's clock."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from dicom_gateway.index import Index
from dicom_gateway.nodes import ALIVE_S

log = logging.getLogger(__name__)

# A failed attempt's study is taken again after this long, by any worker: a problem of the site
# (a full shared spool, the index a moment away) would otherwise use up its attempts at once.
RETRY_S = 5.0


@dataclass(frozen=True)
class Job:
    id: int
    study_uid: str
    attempt: int  # 1 for the first try


class LeaseLost(Exception):
    """The job's lease expired and another worker may hold it: stop, write nothing."""


class JobQueue(Protocol):
    def enqueue(self, study_uid: str) -> int: ...

    def claim(self, worker: str, lease_s: float) -> Job | None: ...

    def heartbeat(self, job: Job, worker: str, lease_s: float) -> None: ...

    def complete(self, job: Job, worker: str, out_dir: str, then: Callable | None = None) -> None:
        """Mark done; `then(db)` runs in the same transaction (the outbox rows)."""
        ...

    def fail(self, job: Job, worker: str, error: str, *, permanent: bool = False) -> None: ...

    def give_back(self, job: Job, worker: str, error: str) -> None:
        """Queued again as before this claim, its attempt not counted: the worker, not the
        study, could not read it."""
        ...


class IndexJobQueue:
    def __init__(self, index: Index, max_attempts: int) -> None:
        self._index = index
        self._max_attempts = max_attempts

    def enqueue(self, study_uid: str) -> int:
        with self._index.write() as db:
            return enqueue_in(db, study_uid)

    def claim(self, worker: str, lease_s: float) -> Job | None:
        """The oldest queued job (a failed attempt's once RETRY_S passed), or one whose worker
        died: its lease ran out, or its node has not been seen for ALIVE_S (a crashed service
        restarted on its machine, or another machine's, takes it then, not lease_s later)."""
        with self._index.write() as db:
            self._give_up_on_exhausted(db)
            # a queued job's lease_expires, when set, is when its next attempt may start; a
            # running one's worker is gone when its lease ran out or its node stopped beating
            now = db.now()
            row = db.execute(
                "SELECT id, study_uid, attempts FROM jobs WHERE (state = 'queued' AND "
                "(lease_expires IS NULL OR lease_expires <= ?)) OR (state = 'running' AND "
                "(lease_expires < ? OR EXISTS (SELECT 1 FROM nodes WHERE nodes.name = "
                "jobs.lease_owner AND (nodes.state = 'stopped' OR nodes.last_seen < ?)))) "
                "ORDER BY id LIMIT 1" + db.skip_locked,
                (now, now, now - ALIVE_S),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET state = 'running', lease_owner = ?, lease_expires = ?, "
                "attempts = attempts + 1 WHERE id = ?",
                (worker, db.now() + lease_s, row["id"]),
            )
        return Job(row["id"], row["study_uid"], row["attempts"] + 1)

    def _give_up_on_exhausted(self, db) -> None:
        expired = db.execute(
            "SELECT id, study_uid FROM jobs WHERE state = 'running' AND lease_expires < ? "
            "AND attempts >= ?" + db.skip_locked,
            (db.now(), self._max_attempts),
        ).fetchall()
        for row in expired:
            error = f"lease expired {self._max_attempts} times (the worker died each time)"
            _finish(db, row["id"], row["study_uid"], "failed", error=error)
            log.error("job %d for study %s failed: %s", row["id"], row["study_uid"], error)

    def heartbeat(self, job: Job, worker: str, lease_s: float) -> None:
        with self._index.write() as db:
            _own(db, job, worker)
            db.execute(
                "UPDATE jobs SET lease_expires = ? WHERE id = ?", (db.now() + lease_s, job.id)
            )

    def complete(self, job: Job, worker: str, out_dir: str, then: Callable | None = None) -> None:
        """A read's end is not lost to a database restart: tried again while the lease lasts.
        Idempotent: a completion that committed but whose acknowledgement the connection lost
        is found done, by this worker into `out_dir`, when it is tried again."""

        def recorded(row) -> bool:
            return (row["state"], row["out_dir"]) == ("done", out_dir)

        def commit() -> None:
            with self._index.write() as db:
                if not _own(db, job, worker, ended=recorded):
                    return
                if then is not None:
                    then(db)
                _finish(db, job.id, job.study_uid, "done", out_dir=out_dir)

        self._index.retrying(commit, f"job {job.id} completion")

    def fail(self, job: Job, worker: str, error: str, *, permanent: bool = False) -> None:
        """A read that raised: retried until max_attempts (or never, if `permanent`), then
        failed with the reason. Idempotent as `complete` is: a failure that committed but whose
        acknowledgement the connection lost is found recorded, by this worker, for this attempt."""

        final = permanent or job.attempt >= self._max_attempts
        state = "failed" if final else "queued"

        def recorded(row) -> bool:
            return (row["state"], row["attempts"], row["error"]) == (state, job.attempt, error)

        def commit() -> None:
            with self._index.write() as db:
                if not _own(db, job, worker, ended=recorded):
                    return
                if final:
                    _finish(db, job.id, job.study_uid, "failed", error=error)
                else:  # the lease owner stays until another claim: who re-queued it
                    db.execute(  # not before RETRY_S, whichever worker takes it
                        "UPDATE jobs SET state = 'queued', error = ?, lease_expires = ? "
                        "WHERE id = ?",
                        (error, db.now() + RETRY_S, job.id),
                    )

        self._index.retrying(commit, f"job {job.id} failure")

    def give_back(self, job: Job, worker: str, error: str) -> None:
        """Idempotent as `fail` is."""

        def recorded(row) -> bool:
            return (row["state"], row["attempts"], row["error"]) == (
                "queued",
                job.attempt - 1,
                error,
            )

        def commit() -> None:
            with self._index.write() as db:
                if _own(db, job, worker, ended=recorded):
                    db.execute(
                        "UPDATE jobs SET state = 'queued', error = ?, attempts = ?, "
                        "lease_expires = NULL WHERE id = ?",
                        (error, job.attempt - 1, job.id),
                    )

        self._index.retrying(commit, f"job {job.id} given back")


def last_results(index: Index, study_uid: str) -> str:
    """Where the study's last finished read wrote its results ("" when it has none): a read
    again (late instances) replaces that read's report."""
    rows = index.read(
        "SELECT out_dir FROM jobs WHERE study_uid = ? AND state = 'done' AND out_dir != '' "
        "ORDER BY id DESC LIMIT 1",
        study_uid,
    )
    return rows[0]["out_dir"] if rows else ""


def enqueue_in(db, study_uid: str) -> int:
    """Queue a read of the study inside the caller's transaction."""
    [job_id] = db.execute(
        "INSERT INTO jobs (study_uid, created) VALUES (?, ?) RETURNING id", (study_uid, db.now())
    ).fetchone()
    db.execute("UPDATE studies SET state = 'queued' WHERE study_uid = ?", (study_uid,))
    return int(job_id)


def _own(db, job: Job, worker: str, *, ended: Callable = lambda row: False) -> bool:
    """True: the job is still this worker's; its row stays locked until the transaction ends.
    False: this worker already ended it as `ended(row)` says (nothing is left to do). The lease
    owner stays on a finished or re-queued row until another worker claims it."""
    row = db.execute(
        "SELECT state, lease_owner, out_dir, error, attempts FROM jobs WHERE id = ?"
        + db.for_update,
        (job.id,),
    ).fetchone()
    if row is not None and row["lease_owner"] == worker:
        if row["state"] == "running":
            return True
        if ended(row):
            return False
    raise LeaseLost(f"job {job.id} is no longer leased to {worker}")


def _finish(db, job_id: int, study_uid: str, state: str, *, error=None, out_dir=None) -> None:
    """The lease owner stays on the row: who finished it (and so may ask again)."""
    db.execute(
        "UPDATE jobs SET state = ?, error = ?, out_dir = ?, finished = ? WHERE id = ?",
        (state, error, out_dir, db.now(), job_id),
    )
    db.execute("UPDATE studies SET state = ? WHERE study_uid = ?", (state, study_uid))
