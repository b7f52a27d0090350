"""The worker: takes a read job under a lease, reads the study, queues the results for sending
and marks the job done in one transaction.

A read is whatever `Reader` the service was given; the worker checks that the study it read is
the job's study before anything is queued for sending."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path

from dicom_gateway.audit import Audit
from dicom_gateway.jobs import Job, JobQueue, LeaseLost, last_results
from dicom_gateway.outbox import Outbox
from dicom_gateway.reader import Reader
from dicom_gateway.routing import Routing, route
from dicom_gateway.spool import Spool
from imaging.errors import BadInput, ModelLoadError

log = logging.getLogger(__name__)

# A worker whose model cannot be used (no room on the GPU) gives the study back and claims none
# for this long: another node, or this one later, reads it; its attempts are not used up.
MODEL_RETRY_S = 30.0


class Worker:
    def __init__(
        self,
        name: str,
        queue: JobQueue,
        spool: Spool,
        outbox: Outbox,
        reader: Reader,
        audit: Audit,
        lease_s: float,
        routing: Routing | None = None,
    ) -> None:
        self.name = name
        self._hold_off_until = 0.0  # a model that could not be used: no claim before then
        self._queue, self._spool, self._outbox = queue, spool, outbox
        self._reader, self._audit, self._lease_s = reader, audit, lease_s
        self.current: Job | None = None  # the job being read, for the node's heartbeat
        self._routing = routing or Routing()

    def close(self) -> None:
        """The worker owns its reader (and the models it keeps loaded)."""
        self._reader.close()

    def run_once(self) -> bool:
        """Read one job if there is one; True when one was read (or ended)."""
        if time.monotonic() < self._hold_off_until:
            return False
        job = self._queue.claim(self.name, self._lease_s)
        if job is None:
            return False
        self.current = job
        try:
            return self._read(job)
        finally:
            self.current = None

    def _read(self, job: Job) -> bool:
        out_dir = self._spool.root / "results" / job.study_uid / f"job{job.id}-try{job.attempt}"
        stop_beating = _heartbeat(self._queue, job, self.name, self._lease_s)
        try:
            decision = route(self._routing, self._spool.index, job.study_uid)
            if not decision.read:  # routed away: stored, recorded, never read
                self._not_read(job, decision, stop_beating)
                return True
            study_dir = self._spool.study_dir(job.study_uid)
            earlier = last_results(self._spool.index, job.study_uid)
            request = replace(decision.request, replaces=earlier)
            outcome = self._reader.read(study_dir, out_dir, request)
        except ModelLoadError as exc:  # the service's model, not the study: keep the job
            stop_beating()
            self._hold_off_until = time.monotonic() + MODEL_RETRY_S
            log.error(
                "job %d: the model cannot be used: %s; the study stays queued and this worker "
                "takes no study for %.0f s",
                job.id,
                exc,
                MODEL_RETRY_S,
            )
            with contextlib.suppress(LeaseLost):
                self._queue.give_back(job, self.name, f"model: {exc}")
            return False
        except BadInput as exc:  # the study itself: retrying cannot help
            self._end(job, f"bad input: {exc}", permanent=True, stop_beating=stop_beating)
            return True
        except Exception as exc:  # our bug or a resource problem: retried under the lease rules
            self._end(job, _logged(job, "failed", exc), stop_beating=stop_beating)
            return True
        if outcome.study_uid != job.study_uid:  # never send one patient's results as another's
            error = f"the files read are study {outcome.study_uid}, not the job's {job.study_uid}"
            log.error("job %d: %s; nothing is sent", job.id, error)
            self._end(job, error, permanent=True, stop_beating=stop_beating)
            return True
        try:
            objects = self._outbox.identify(outcome.dicom)  # outside the transaction
        except Exception as exc:
            said = _logged(job, "results unreadable", exc)
            self._end(job, f"results unreadable: {said}", stop_beating=stop_beating)
            return True
        stop_beating()
        try:
            self._queue.complete(
                job,
                self.name,
                str(out_dir),
                then=lambda db: self._outbox.add_in(db, job.id, objects),
            )
        except LeaseLost:
            log.warning("job %d: lease lost before completion; its results are discarded", job.id)
            return True
        self._audit(
            "study_read",
            study_uid=job.study_uid,
            job=job.id,
            attempt=job.attempt,
            findings=outcome.findings,
            end=outcome.end_reason,
            out_dir=str(out_dir),
            rule=decision.rule,
        )
        return True

    def _not_read(self, job: Job, decision, stop_beating) -> None:
        stop_beating()
        try:
            self._queue.complete(job, self.name, "")
        except LeaseLost:
            return
        self._audit(
            "study_not_read",
            study_uid=job.study_uid,
            job=job.id,
            rule=decision.rule,
            reason=decision.reason,
        )

    def _end(self, job: Job, error: str, *, stop_beating, permanent: bool = False) -> None:
        stop_beating()
        try:
            self._queue.fail(job, self.name, error, permanent=permanent)
        except LeaseLost:
            return
        self._audit(
            "study_failed", study_uid=job.study_uid, job=job.id, attempt=job.attempt, error=error
        )


# Libraries whose errors quote the header value they failed on ("Unable to convert '03.02.1951'
# to 'DA' object"): a patient's name, ID or birth date.
QUOTING = ("pydicom", "highdicom")


def unexpected(exc: Exception) -> str:
    """What the job, the audit and the log say of an error no rule expected: its type and text,
    but for an error raised in (or below) a library that quotes header values, its type and the
    library's frame only."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        library = next((name for name in QUOTING if name in Path(frame.filename).parts), None)
        if library is not None:
            return (
                f"{type(exc).__name__} in {library} ({Path(frame.filename).name}:"
                f"{frame.lineno}); its text, which may quote the study's header, is left out"
            )
    return f"{type(exc).__name__}: {exc}"


def _logged(job: Job, what: str, exc: Exception) -> str:
    """`unexpected(exc)`, logged with the trace's frames (code, never the error's text)."""
    said = unexpected(exc)
    frames = "".join(traceback.format_tb(exc.__traceback__)).rstrip()
    log.error("job %d for study %s: %s: %s\n%s", job.id, job.study_uid, what, said, frames)
    return said


def _heartbeat(queue: JobQueue, job: Job, worker: str, lease_s: float):
    """Renew the lease every third of its length until the returned stop() is called."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(lease_s / 3):
            try:
                queue.heartbeat(job, worker, lease_s)
            except LeaseLost:
                return
            except Exception:  # e.g. the index busy for a moment: keep beating
                log.exception("heartbeat for job %d failed; retrying", job.id)

    thread = threading.Thread(target=beat, name=f"heartbeat-{job.id}", daemon=True)
    thread.start()

    def stop_beating() -> None:
        stop.set()
        thread.join()

    return stop_beating
