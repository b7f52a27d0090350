"""Durable storage of received instances: temp file -> fsync -> rename -> dir fsync -> index row.

Nothing is acknowledged before all of them happened; nothing half-written is ever left behind.
A data set is written into its temporary file as it arrives; the rename, the folder's fsync and
the index row are committed in groups across concurrent associations (group_commit.py)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import mmap
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dicom_gateway.arriving import Progress, StillArriving
from dicom_gateway.dataset_check import MalformedDataset, check_dataset
from dicom_gateway.group_commit import GroupCommit
from dicom_gateway.index import Index
from dicom_gateway.status import (
    CANNOT_UNDERSTAND,
    DATA_SET_MISMATCH,
    OUT_OF_RESOURCES,
    PROCESSING_FAILURE,
)
from dicom_gateway.writeback import Writeback
from imaging.atomic import fsync_dir

log = logging.getLogger(__name__)

UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
# A temporary file in a shared spool untouched this long is a crash's leftover: no C-STORE can
# still be writing it, so a starting service removes it.
LEFTOVER_AGE_S = 3600.0


class SpoolError(Exception):
    """An instance that cannot be stored; `status` is the DIMSE status to answer with."""

    status = CANNOT_UNDERSTAND


class OutOfResources(SpoolError):
    status = OUT_OF_RESOURCES


class BadInstance(SpoolError):
    status = CANNOT_UNDERSTAND


class TemporaryFileGone(SpoolError):
    """The file a data set was written into was removed before it was kept (by hand, by a
    cleanup on another machine): this side's failure, not the sender's."""

    status = PROCESSING_FAILURE


class NotAsSent(SpoolError):
    """The data set is not the instance its C-STORE request (or file meta) said it is."""

    status = DATA_SET_MISMATCH


@dataclass(frozen=True)
class StoredInstance:
    study_uid: str
    series_uid: str
    sop_uid: str
    path: Path
    size: int
    late: bool


def checked_uid(value: object, keyword: str) -> str:
    """A UID safe to use in a file name: digits and dots, at most 64 characters."""
    text = str(value or "").strip("\x00 ")
    if len(text) > 64 or not UID.match(text):
        raise BadInstance(f"{keyword} {text[:80]!r} is not a valid UID")
    return text


class ReceivedFile:
    """A data set on its way into the spool, written as it arrives (no buffer, no copy kept).
    A write that fails (disk full) is remembered, not raised: the data set is then refused
    with the right status once it is complete, and the association goes on."""

    def __init__(self, folder: str | Path, arriving: StillArriving | None = None) -> None:
        self.name = os.path.join(folder, f"{uuid.uuid4().hex}.part")
        self._arriving, self._progress = arriving, Progress()
        # Readable too: the check of the whole data set maps it from this same descriptor.
        self._fd = os.open(self.name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self._writeback = Writeback(self._fd)
        self.file = self  # pynetdicom flushes `file.file` after each fragment: nothing to flush
        self.error: OSError | None = None
        self.size = 0

    def write(self, data) -> None:
        view = memoryview(data)
        while view and self.error is None and self._fd >= 0:
            try:
                written = os.write(self._fd, view)
            except OSError as exc:
                self.error = exc
                return
            self.size += written
            view = view[written:]
        if self.error is None and self._fd >= 0:
            self._writeback.advance(self.size)
            if self._arriving is not None:
                self._arriving(self._progress, self.name)

    def flush(self) -> None:
        pass

    def refresh(self) -> bool:
        """Mark it as in use now (its time is what a starting service's cleanup goes by); False
        when its name was removed meanwhile: a data set written into it could never be kept."""
        if self._fd < 0:
            return False
        try:
            os.utime(self._fd)
        except OSError:
            return False
        return self.present()

    @contextlib.contextmanager
    def contents(self) -> Iterator[bytes | mmap.mmap]:
        """What was written into it, mapped from its own descriptor: no second open, nothing
        copied, pixel pages never touched by a walk over the element headers."""
        if self.size == 0:
            yield b""
            return
        mapped = mmap.mmap(self._fd, 0, access=mmap.ACCESS_READ)  # the file as it is now
        try:
            yield mapped
        finally:
            with contextlib.suppress(BufferError):  # a view kept by a traceback: closed when freed
                mapped.close()

    def present(self) -> bool:
        """False when its name was removed (or it was closed): nothing written into it could
        be kept."""
        if self._fd < 0:
            return False
        try:
            return os.fstat(self._fd).st_nlink > 0
        except OSError:
            return False

    def complete(self) -> None:
        """Nothing more will be written: what is not yet on its way to the disk starts now."""
        if self.error is None and self._fd >= 0:
            self._writeback.finish(self.size)

    def sync(self) -> None:
        if self.error is not None:
            raise self.error
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def discard(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.name)


@dataclass(frozen=True)
class _Arrival:
    """An instance whose bytes are durable in the temporary folder, waiting for its place
    (paths as strings: built and compared once per instance, on the acknowledging thread)."""

    temporary: str
    target: str
    study_uid: str
    series_uid: str
    sop_uid: str
    size: int
    calling_ae: str


class Spool:
    def __init__(self, root: Path, index: Index, min_free_mb: int, clean: bool = True) -> None:
        """`clean`: remove what a crash left in the temporary folder (never acknowledged); only
        the first process of a service does, the others' files there are in flight."""
        self.root = root
        self.index = index
        self._arriving = StillArriving(index)
        self.min_free = min_free_mb * 2**20
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        (root / "studies").mkdir(parents=True, exist_ok=True)
        self._temporary, self._studies = str(root / "tmp"), str(root / "studies")
        if clean:  # from a crash before rename: never acknowledged
            stale = time.time() - LEFTOVER_AGE_S
            for leftover in (root / "tmp").iterdir():
                # A shared spool has other listeners writing here now: only what no C-STORE can
                # still be writing goes. One of them may rename a file away after it was listed.
                with contextlib.suppress(FileNotFoundError):
                    if not index.dialect.shared or leftover.stat().st_mtime < stale:
                        leftover.unlink(missing_ok=True)
        self.commits = GroupCommit(self._commit_group)  # its counts: instances per commit
        self._in_flight = 0
        self._idle = threading.Condition()
        # Listener processes sharing the index take turns through this lock (the kernel wakes
        # the next), never through SQLite's busy handler, which sleeps 1 ms, 2 ms, 5 ms...
        self._turns = os.open(root / "ingest.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)

    @contextlib.contextmanager
    def storing(self) -> Iterator[None]:
        """Around storing one instance and auditing it: a stopping service waits for it
        (`wait_idle`) before it closes the index and the audit trail."""
        with self._idle:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """True once no instance is being stored; False when `timeout_s` ran out first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout_s)

    def study_dir(self, study_uid: str) -> Path:
        return Path(self._studies, checked_uid(study_uid, "Study Instance UID"))

    def open_received(self) -> ReceivedFile:
        """A new temporary file for a data set about to arrive."""
        return ReceivedFile(self._temporary, self._arriving)

    def store(self, encoded: bytes, calling_ae: str, *, requested: bool = True) -> StoredInstance:
        """`encoded` is the received dataset with its file meta, exactly as sent; it takes the
        path a streamed C-STORE takes (one check of the whole dataset, on the written file).
        `requested`: its file meta says what a C-STORE request named, and the data set must be
        that instance; a STOW part's is whatever wrote the file (a script that gave a copy new
        UIDs often leaves the old ones there), and it is kept as sent."""
        self._check_free_space(len(encoded))  # before it is written: the room it needs
        received = self.open_received()
        received.write(encoded)
        return self._keep(received, calling_ae, space_checked=True, requested=requested)

    def store_received(self, received: ReceivedFile, calling_ae: str) -> StoredInstance:
        """A data set written into `received` as it arrived: checked whole, made durable,
        renamed into its study and indexed, then acknowledged; refused, nothing of it stays."""
        return self._keep(received, calling_ae, space_checked=False, requested=True)

    def _keep(
        self, received: ReceivedFile, calling_ae: str, space_checked: bool, requested: bool
    ) -> StoredInstance:
        try:
            if received.error is not None:
                raise received.error
            received.complete()  # its last pages go to the disk while it is checked
            with received.contents() as encoded:
                study_uid, series_uid, sop_uid = _identity(encoded, requested)
            if not space_checked:  # written as it arrived: what is left after it
                self._check_free_space(0)
            received.sync()
            if not received.present():  # its name was removed while it arrived
                raise _gone(received.name)
            received.close()
            size = received.size
            # The UIDs were checked (digits and dots): the study's folder as study_dir names it.
            target = os.path.join(self._studies, study_uid, f"{sop_uid}.dcm")
            late = self.commits(
                _Arrival(received.name, target, study_uid, series_uid, sop_uid, size, calling_ae)
            )
        except OSError as exc:
            received.discard()
            name = os.path.basename(received.name)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OutOfResources(f"disk full writing {name}") from None
            raise
        except BaseException:
            received.discard()
            raise
        return StoredInstance(study_uid, series_uid, sop_uid, Path(target), size, late)

    def _check_free_space(self, needed: int) -> None:
        if shutil.disk_usage(self.root).free - needed < self.min_free:
            raise OutOfResources(f"less than {self.min_free >> 20} MiB free in {self.root}")

    def _commit_group(self, group: list[_Arrival]) -> list[bool | OSError | TemporaryFileGone]:
        """Rename each, fsync each study folder once, one index transaction for all. An
        instance that cannot be renamed (its temporary file gone) fails alone (its result is the
        error); the rest are kept."""
        results: list[bool | OSError | TemporaryFileGone | None] = []
        renamed: list[_Arrival] = []
        for arrival in group:
            try:
                _rename_into_study(arrival)
                renamed.append(arrival)
                results.append(None)
            except FileNotFoundError as exc:
                gone = not os.path.exists(arrival.temporary)
                results.append(_gone(arrival.temporary) if gone else exc)
        for folder in dict.fromkeys(os.path.dirname(arrival.target) for arrival in renamed):
            fsync_dir(folder)
        fcntl.flock(self._turns, fcntl.LOCK_EX)
        try:
            with self.index.write() as db:
                received = db.now()  # the index's clock: the database server's when shared
                recorded = [self._record(db, arrival, received) for arrival in renamed]
        finally:
            fcntl.flock(self._turns, fcntl.LOCK_UN)
        lates = iter(late for late, _ in recorded)
        for arrival, (_, known) in zip(renamed, recorded, strict=True):
            if known is not None and known["path"] != arrival.target:
                # The same instance re-sent under another study: only the newest copy counts.
                log.warning(
                    "SOP %s moved from study %s to %s",
                    arrival.sop_uid,
                    known["study_uid"],
                    arrival.study_uid,
                )
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(known["path"])
        return [next(lates) if result is None else result for result in results]

    @staticmethod
    def _record(db, arrival: _Arrival, received: float):
        """Index row for a stored file: (True when it arrived after the study's read started,
        the row it replaces)."""
        study_uid, sop_uid = arrival.study_uid, arrival.sop_uid
        known = db.execute(
            "SELECT study_uid, path FROM instances WHERE sop_uid = ?", (sop_uid,)
        ).fetchone()
        reading = db.execute(
            "SELECT 1 FROM jobs WHERE study_uid = ? AND state IN ('running', 'done') LIMIT 1",
            (study_uid,),
        ).fetchone()
        late = known is None and reading is not None  # a re-send adds nothing new
        # One statement an instance: a late one counts, and a new one takes a study whose read
        # failed back to receiving, so that it is read again once complete with it.
        db.execute(
            "INSERT INTO studies (study_uid, first_received, last_received) VALUES (?, ?, ?) "
            "ON CONFLICT(study_uid) DO UPDATE SET last_received = excluded.last_received, "
            "late_instances = studies.late_instances + ?, state = CASE WHEN "
            "studies.state = 'failed' AND ? = 1 THEN 'receiving' ELSE studies.state END",
            (study_uid, received, received, int(late), int(known is None)),
        )
        db.execute(
            "INSERT INTO instances (sop_uid, study_uid, series_uid, path, size, received, "
            "calling_ae, late) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(sop_uid) DO UPDATE "
            "SET study_uid = excluded.study_uid, series_uid = excluded.series_uid, "
            "path = excluded.path, size = excluded.size, received = excluded.received",
            (
                sop_uid,
                study_uid,
                arrival.series_uid,
                arrival.target,
                arrival.size,
                received,
                arrival.calling_ae,
                int(late),
            ),
        )
        return late, known


def _gone(temporary: str) -> TemporaryFileGone:
    name = os.path.basename(temporary)
    return TemporaryFileGone(f"temporary file {name} removed while it arrived")


def _rename_into_study(arrival: _Arrival) -> None:
    """The temporary file renamed to its place; a study's folder is made with its first instance
    (FileNotFoundError when the temporary file itself is gone)."""
    try:
        os.replace(arrival.temporary, arrival.target)
    except FileNotFoundError:
        folder = os.path.dirname(arrival.target)
        if os.path.isdir(folder):  # the folder was there: the temporary file was not
            raise
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder)
        os.replace(arrival.temporary, arrival.target)


# What the file meta says (for a C-STORE, what its request named) and what the data set must hold.
_SENT_AS = (
    ("MediaStorageSOPClassUID", "SOPClassUID"),
    ("MediaStorageSOPInstanceUID", "SOPInstanceUID"),
)


def _identity(encoded, requested: bool) -> tuple[str, str, str]:
    """The three UIDs, from the walk that checks the dataset is whole: one pass over its
    element headers, no pixel data decoded; a cut or garbled dataset is refused, never stored,
    and so is one without its SOP Class or Instance UID, or (`requested`: a C-STORE) one that is
    not the instance its request named (0xA900, as dcmtk's storescp answers)."""
    try:
        uids = check_dataset(encoded)
    except MalformedDataset as exc:
        raise BadInstance(f"malformed dataset: {exc}") from None
    identity = (
        checked_uid(uids.get("StudyInstanceUID"), "Study Instance UID"),
        checked_uid(uids.get("SeriesInstanceUID"), "Series Instance UID"),
        checked_uid(uids.get("SOPInstanceUID"), "SOP Instance UID"),
    )
    for sent, own in _SENT_AS:
        if not uids.get(own):  # one the data set lacks is not understood (0xC000), as storescp
            raise BadInstance(f"no {own} in the data set")
        if requested and uids.get(sent, "") != uids[own]:
            raise NotAsSent(
                f"the data set's {own} {uids[own][:80]!r} is not the "
                f"{uids.get(sent, '')[:80]!r} it was sent as"
            )
    return identity
