"""The outbox: results wait here until each destination acknowledged them (C-STORE).

Rows persist in the index, so a PACS that is down delays delivery, never drops it."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import pydicom
from pynetdicom import AE

from dicom_gateway.audit import Audit
from dicom_gateway.index import Index, now
from dicom_gateway.settings import GatewaySettings, Peer

log = logging.getLogger(__name__)


class Outbox:
    def __init__(self, index: Index, settings: GatewaySettings, audit: Audit) -> None:
        self._index = index
        self._settings = settings
        self._audit = audit

    def add_in(self, db, job_id: int, paths: Iterable[Path]) -> int:
        """Queue each file for each destination, inside the caller's transaction."""
        count = 0
        for path in paths:
            sop_uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
            for peer in self._settings.peers:
                db.execute(
                    "INSERT INTO outbox (job_id, destination, path, sop_uid, next_try) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (job_id, str(peer), str(path), sop_uid, now()),
                )
                count += 1
        return count

    def rows(self, states: tuple[str, ...] = ("pending", "failed")) -> list:
        marks = ",".join("?" * len(states))
        return self._index.read(
            f"SELECT * FROM outbox WHERE state IN ({marks}) ORDER BY id", *states
        )

    def send_due(self) -> int:
        """One association per destination with due rows; returns how many were delivered."""
        due = self._index.read(
            "SELECT * FROM outbox WHERE state = 'pending' AND next_try <= ? ORDER BY id", now()
        )
        by_destination: dict[str, list] = {}
        for row in due:
            by_destination.setdefault(row["destination"], []).append(row)
        return sum(self._send(Peer.parse(d), rows) for d, rows in by_destination.items())

    def _send(self, peer: Peer, rows: list) -> int:
        ae = AE(ae_title=self._settings.ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
        headers = {row["id"]: pydicom.dcmread(row["path"], stop_before_pixels=True) for row in rows}
        for ds in headers.values():
            ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
        if not assoc.is_established:
            self._postpone(rows, f"association with {peer} failed")
            return 0
        delivered = 0
        try:
            for row in rows:
                status = assoc.send_c_store(Path(row["path"]))
                code = getattr(status, "Status", None)
                if code is not None and code in (0x0000, 0xB000, 0xB007, 0xB006):
                    self._delivered(row, peer)
                    delivered += 1
                else:
                    self._postpone([row], f"{peer} answered status {code!r}")
        finally:
            assoc.release()
        return delivered

    def _delivered(self, row, peer: Peer) -> None:
        with self._index.write() as db:
            db.execute(
                "UPDATE outbox SET state = 'sent', sent = ?, attempts = attempts + 1 WHERE id = ?",
                (now(), row["id"]),
            )
        self._audit("object_sent", destination=str(peer), sop_uid=row["sop_uid"], job=row["job_id"])

    def _postpone(self, rows: list, reason: str) -> None:
        """Exponential back-off, capped; the row stays pending until it goes through."""
        with self._index.write() as db:
            for row in rows:
                delay = min(
                    self._settings.retry_first_s * 2 ** row["attempts"], self._settings.retry_max_s
                )
                db.execute(
                    "UPDATE outbox SET attempts = attempts + 1, next_try = ?, last_error = ? "
                    "WHERE id = ?",
                    (now() + delay, reason, row["id"]),
                )
        log.warning("%d object(s) not delivered: %s; will retry", len(rows), reason)
