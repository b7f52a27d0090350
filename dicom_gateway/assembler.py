"""Study assembly: a study becomes a read job once nothing has arrived for `stable_after_s`.

Quiet is judged on the index's clock against the last instance any listener stored, so a study
still arriving on another listener is not read early. Instances that arrive after the read
started are recorded by the spool; the late-instance policy decides whether the study is read
once more."""

from __future__ import annotations

import logging

from dicom_gateway.index import Index
from dicom_gateway.jobs import enqueue_in
from dicom_gateway.nodes import ALIVE_S

log = logging.getLogger(__name__)


def promote_stable_studies(index: Index, stable_after_s: float, late_policy: str) -> list[str]:
    """Queue every study that has been quiet long enough; returns their UIDs. Several workers
    may run this at once: each study is locked by the one that queues it."""
    with index.write() as db:
        quiet_since = db.now() - stable_after_s
        ready = [
            row["study_uid"]
            for row in db.execute(
                "SELECT study_uid FROM studies WHERE state = 'receiving' AND last_received <= ? "
                "ORDER BY study_uid" + db.skip_locked,
                (quiet_since,),
            ).fetchall()
        ]
        if late_policy == "reread":
            ready += [
                row["study_uid"]
                for row in db.execute(
                    "SELECT study_uid FROM studies WHERE state = 'done' AND late_instances > 0 "
                    "AND rereads = 0 AND last_received <= ? ORDER BY study_uid" + db.skip_locked,
                    (quiet_since,),
                ).fetchall()
            ]
        for study_uid in ready:
            db.execute(
                "UPDATE studies SET rereads = rereads + CASE WHEN state = 'done' THEN 1 ELSE 0 "
                "END WHERE study_uid = ?",
                (study_uid,),
            )
            enqueue_in(db, study_uid)
    for study_uid in ready:
        log.info("study %s is complete: queued for reading", study_uid)
    return ready


def listening_again(index: Index, node: str) -> None:
    """A study still arriving when the service stopped is quiet from now, not from its last
    instance: its senders could not send while nothing listened (a PACS re-sends the rest once
    it can), so the time the service was down is no quiet. On a site of several listeners
    (`node` is this one) only when no other listener is alive: their senders were not stopped,
    and a rolling restart must not hold back every study the others are receiving."""
    with index.write() as db:
        now = db.now()
        if (
            index.dialect.shared
            and db.execute(
                "SELECT 1 FROM nodes WHERE name != ? AND role IN ('all', 'listener') AND "
                "state != 'stopped' AND last_seen >= ? LIMIT 1",
                (node, now - ALIVE_S),
            ).fetchone()
        ):
            return
        db.execute("UPDATE studies SET last_received = ? WHERE state = 'receiving'", (now,))
