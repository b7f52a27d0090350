"""A study is not quiet while one of its instances is still arriving.

A study is read once nothing has arrived for `stable_after_s`, judged on the instances already
stored. One instance can take longer than that to arrive (a 500-frame enhanced CT or a
tomosynthesis object over a slow link): its study looked quiet, was read without it, and the
instance came late. So a data set that has been arriving for more than TOUCH_S marks its study
as receiving now, every TOUCH_S, until it is complete. Its Study Instance UID is read from the
part written so far (it comes long before the pixel data); a data set that arrives in less time,
nearly every one, costs a clock reading per PDU and nothing else."""

from __future__ import annotations

import logging
import threading
import time

from pydicom.filereader import read_partial

from dicom_gateway.index import Index

log = logging.getLogger(__name__)

TOUCH_S = 1.0  # well under any stable_after_s a site would set
STUDY_UID = 0x0020000D


class Progress:
    """One data set's arrival, as StillArriving follows it."""

    def __init__(self) -> None:
        self.next_touch: float | None = None  # set at its first bytes
        self.study_uid: str | None = None
        self.marking: threading.Thread | None = None


class StillArriving:
    def __init__(self, index: Index, every_s: float = TOUCH_S) -> None:
        self._index = index
        self._every_s = every_s

    def __call__(self, progress: Progress, path: str) -> None:
        """After each write to the file at `path`: never waits for the index (the mark is
        made on a thread of its own, one at a time per data set)."""
        now = time.monotonic()
        if progress.next_touch is None:
            progress.next_touch = now + self._every_s
        if now < progress.next_touch:
            return
        progress.next_touch = now + self._every_s
        progress.study_uid = progress.study_uid or _study_uid(path)
        if progress.study_uid is None or (progress.marking and progress.marking.is_alive()):
            return
        progress.marking = threading.Thread(
            target=self.mark, args=(progress.study_uid,), name="still-arriving", daemon=True
        )
        progress.marking.start()

    def mark(self, study_uid: str) -> None:
        """The study counts as receiving now; an index out of reach is a warning."""
        try:
            with self._index.write() as db:
                db.execute(
                    "UPDATE studies SET last_received = ? WHERE study_uid = ?",
                    (db.now(), study_uid),
                )
        except Exception as exc:  # the data set arrives on; the next mark may get through
            log.warning("study %s: not marked as still arriving: %s", study_uid, exc)


def _study_uid(path: str) -> str | None:
    """The Study Instance UID in the part of a data set written so far, or None."""
    try:
        with open(path, "rb") as part:
            found = read_partial(part, stop_when=lambda tag, vr, length: tag > STUDY_UID)
        return str(found.StudyInstanceUID) or None
    except Exception:  # cut anywhere, or not DICOM: the whole data set is checked once complete
        return None
