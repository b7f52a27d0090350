"""Study assembly: a study becomes a read job once nothing has arrived for `stable_after_s`.

Instances that arrive after the read started are recorded by the spool; the late-instance policy
decides whether the study is read once more."""

from __future__ import annotations

import logging

from dicom_gateway.index import Index, now
from dicom_gateway.jobs import enqueue_in

log = logging.getLogger(__name__)


def promote_stable_studies(index: Index, stable_after_s: float, late_policy: str) -> list[str]:
    """Queue every study that has been quiet long enough; returns their UIDs."""
    quiet_since = now() - stable_after_s
    with index.write() as db:
        ready = [
            row["study_uid"]
            for row in db.execute(
                "SELECT study_uid FROM studies WHERE state = 'receiving' AND last_received <= ?",
                (quiet_since,),
            )
        ]
        if late_policy == "reread":
            ready += [
                row["study_uid"]
                for row in db.execute(
                    "SELECT study_uid FROM studies WHERE state = 'done' AND late_instances > 0 "
                    "AND rereads = 0 AND last_received <= ?",
                    (quiet_since,),
                )
            ]
        for study_uid in ready:
            db.execute(
                "UPDATE studies SET rereads = rereads + (state = 'done') WHERE study_uid = ?",
                (study_uid,),
            )
            enqueue_in(db, study_uid)
    for study_uid in ready:
        log.info("study %s is complete: queued for reading", study_uid)
    return ready
