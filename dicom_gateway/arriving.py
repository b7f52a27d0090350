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
import time

from pydicom.filereader import read_partial

from dicom_gateway.index import Index

log = logging.getLogger(__name__)

TOUCH_S = 1.0  # well under any stable_after_s a site would set
STUDY_UID = 0x0020000D


class Arrival:
    """One data set's progress, as StillArriving follows it."""

    def __init__(self) -> None:
        self.started: float | None = None  # at its first bytes
        self.next_touch = 0.0
        self.study_uid: str | None = None


class StillArriving:
    def __init__(self, index: Index, every_s: float = TOUCH_S) -> None:
        self._index = index
        self._every_s = every_s

    def __call__(self, arrival: Arrival, path: str) -> None:
        """After each write to the file at `path`."""
        now = time.monotonic()
        if arrival.started is None:
            arrival.started, arrival.next_touch = now, now + self._every_s
        if now < arrival.next_touch:
            return
        arrival.next_touch = now + self._every_s
        arrival.study_uid = arrival.study_uid or _study_uid(path)
        if arrival.study_uid is None:  # not that far yet
            return
        try:
            with self._index.write() as db:
                db.execute(
                    "UPDATE studies SET last_received = ? WHERE study_uid = ?",
                    (db.now(), arrival.study_uid),
                )
        except Exception as exc:  # the index out of reach a moment: the data set arrives on
            log.warning("study %s: not marked as still arriving: %s", arrival.study_uid, exc)


def _study_uid(path: str) -> str | None:
    """The Study Instance UID in the part of a data set written so far, or None."""
    try:
        with open(path, "rb") as part:
            found = read_partial(part, stop_when=lambda tag, vr, length: tag > STUDY_UID)
        return str(found.StudyInstanceUID) or None
    except Exception:  # cut anywhere, or not DICOM: the whole data set is checked once complete
        return None
