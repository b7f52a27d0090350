"""Durable storage of received instances: temp file -> fsync -> rename -> index row.

Nothing is acknowledged before all four happened; nothing half-written is ever left behind."""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from dicom_gateway.dataset_check import MalformedDataset, check_dataset
from dicom_gateway.index import Index
from dicom_gateway.status import CANNOT_UNDERSTAND, OUT_OF_RESOURCES
from imaging.atomic import fsync_dir

log = logging.getLogger(__name__)

UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


class SpoolError(Exception):
    """An instance that cannot be stored; `status` is the DIMSE status to answer with."""

    status = CANNOT_UNDERSTAND


class OutOfResources(SpoolError):
    status = OUT_OF_RESOURCES


class BadInstance(SpoolError):
    status = CANNOT_UNDERSTAND


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


class Spool:
    def __init__(self, root: Path, index: Index, min_free_mb: int) -> None:
        self.root = root
        self.index = index
        self.min_free = min_free_mb * 2**20
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        (root / "studies").mkdir(parents=True, exist_ok=True)
        for leftover in (root / "tmp").iterdir():  # from a crash before rename: never acknowledged
            # A shared spool has other listeners writing here now: only what no C-STORE can
            # still be writing goes.
            if not index.dialect.shared or leftover.stat().st_mtime < time.time() - 3600:
                leftover.unlink(missing_ok=True)

    def study_dir(self, study_uid: str) -> Path:
        return self.root / "studies" / checked_uid(study_uid, "Study Instance UID")

    def store(self, encoded: bytes, calling_ae: str) -> StoredInstance:
        """`encoded` is the received dataset with its file meta, exactly as sent."""
        study_uid, series_uid, sop_uid = _identity(encoded)
        if shutil.disk_usage(self.root).free - len(encoded) < self.min_free:
            raise OutOfResources(f"less than {self.min_free >> 20} MiB free in {self.root}")
        target = self.study_dir(study_uid) / f"{sop_uid}.dcm"
        self._write_durably(target, encoded)
        late = self._record(study_uid, series_uid, sop_uid, target, len(encoded), calling_ae)
        return StoredInstance(study_uid, series_uid, sop_uid, target, len(encoded), late)

    def _write_durably(self, target: Path, data: bytes) -> None:
        temporary = self.root / "tmp" / f"{uuid.uuid4().hex}.part"
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            target.parent.mkdir(exist_ok=True)
            os.replace(temporary, target)
            fsync_dir(target.parent)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OutOfResources(f"disk full writing {target.name}") from None
            raise

    def _record(self, study_uid, series_uid, sop_uid, path, size, calling_ae) -> bool:
        """Index row for a stored file; True when it arrived after the study's read started."""
        with self.index.write() as db:
            received = db.now()
            db.execute(
                "INSERT INTO studies (study_uid, first_received, last_received) VALUES (?, ?, ?) "
                "ON CONFLICT(study_uid) DO UPDATE SET last_received = excluded.last_received",
                (study_uid, received, received),
            )
            known = db.execute(
                "SELECT study_uid, path FROM instances WHERE sop_uid = ?", (sop_uid,)
            ).fetchone()
            reading = db.execute(
                "SELECT 1 FROM jobs WHERE study_uid = ? AND state IN ('running', 'done') LIMIT 1",
                (study_uid,),
            ).fetchone()
            late = known is None and reading is not None  # a re-send adds nothing new
            if late:
                db.execute(
                    "UPDATE studies SET late_instances = late_instances + 1 WHERE study_uid = ?",
                    (study_uid,),
                )
            db.execute(
                "INSERT INTO instances (sop_uid, study_uid, series_uid, path, size, received, "
                "calling_ae, late) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(sop_uid) DO UPDATE "
                "SET study_uid = excluded.study_uid, series_uid = excluded.series_uid, "
                "path = excluded.path, size = excluded.size, received = excluded.received",
                (sop_uid, study_uid, series_uid, str(path), size, received, calling_ae, int(late)),
            )
        if known is not None and known["path"] != str(path):
            # The same instance re-sent under another study: only the newest copy counts.
            log.warning("SOP %s moved from study %s to %s", sop_uid, known["study_uid"], study_uid)
            Path(known["path"]).unlink(missing_ok=True)
        return late


def _identity(encoded: bytes) -> tuple[str, str, str]:
    """The three UIDs, from the walk that checks the dataset is whole: one pass over its
    element headers, no pixel data decoded; a cut or garbled dataset is refused, never stored."""
    try:
        uids = check_dataset(encoded)
    except MalformedDataset as exc:
        raise BadInstance(f"malformed dataset: {exc}") from None
    return (
        checked_uid(uids.get("StudyInstanceUID"), "Study Instance UID"),
        checked_uid(uids.get("SeriesInstanceUID"), "Series Instance UID"),
        checked_uid(uids.get("SOPInstanceUID"), "SOP Instance UID"),
    )
