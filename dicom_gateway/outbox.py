"""The outbox: results wait here until each destination acknowledged them (C-STORE, or STOW-RS
for a dicomweb+https:// destination).

Rows persist in the index, so a PACS that is down delays delivery, never drops it. An outbox
process claims one association's worth of rows per destination (`SELECT … FOR UPDATE SKIP
LOCKED` on PostgreSQL) and renews a row's claim just before it sends it, so two running outbox
processes never send the same row at once. A claim left by a process that died runs out after
CLAIM_S and its rows are sent again; a row is marked sent or postponed only by the process that
still holds it. Delivery is at least once: a crash between the PACS's acknowledgement and the
`sent` mark sends that row again (same SOP Instance UID, which a PACS de-duplicates)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from dicom_gateway.audit import Audit
from dicom_gateway.index import Index
from dicom_gateway.settings import GatewaySettings, Peer
from dicom_gateway.status import STORED
from dicom_gateway.web_settings import WebPeer, is_web

log = logging.getLogger(__name__)

BATCH = 64  # rows per association: well under the 128 presentation contexts one may request
CLAIM_S = 600.0  # how long a claim (or its last renewal) keeps other outbox processes off a row


@dataclass(frozen=True)
class Undelivered:
    """One result not yet acknowledged by one destination, as `pacs outbox` lists it."""

    id: int
    destination: str
    sop_uid: str
    state: str  # pending (retried), failed, or held (its destination is no longer configured)
    attempts: int
    next_try: float  # epoch seconds
    last_error: str


def undelivered(index: Index, configured: Iterable[str] | None = None) -> list[Undelivered]:
    """Every row still waiting (or given up on), oldest first. Given the configured
    destinations, a pending row for any other is shown as held: kept, not sent."""
    rows = index.read(
        "SELECT id, destination, sop_uid, state, attempts, next_try, last_error FROM outbox "
        "WHERE state != 'sent' ORDER BY id"
    )
    listed = [Undelivered(*tuple(row)[:6], last_error=row["last_error"] or "") for row in rows]
    if configured is None:
        return listed
    kept = set(configured)
    return [
        replace(row, state="held") if _held(row.state, row.destination, kept) else row
        for row in listed
    ]


def _held(state: str, destination: str, configured: set[str]) -> bool:
    """A row kept, never sent: waiting for a destination the configuration no longer names."""
    return state == "pending" and destination not in configured


def proposed_syntaxes(syntax: UID) -> tuple[UID, ...]:
    """The transfer syntaxes offered for a file in `syntax`. Uncompressed little endian: its own,
    then Explicit and Implicit VR Little Endian (every receiver takes Implicit; pynetdicom
    re-encodes between them as it sends). Anything else only as it is: converting a compressed
    file would mean decoding its pixels."""
    if syntax.is_compressed or not syntax.is_little_endian:
        return (syntax,)
    return tuple(dict.fromkeys((syntax, ExplicitVRLittleEndian, ImplicitVRLittleEndian)))


def _no_context(peer: Peer, sop_class: UID, syntaxes: tuple[UID, ...]) -> str:
    return (
        f"{peer} accepted the association but no presentation context for {sop_class.name} "
        f"in {' or '.join(syntax.name for syntax in syntaxes)}"
    )


def held_destinations(index: Index, configured: Iterable[str]) -> dict[str, int]:
    """Held rows per destination: never sent while it is not configured, sent as before once it
    is again. Counted by the index (the serve panel asks every second; a PACS down for a day can
    leave thousands of rows)."""
    kept = set(configured)
    rows = index.read(
        "SELECT destination, COUNT(*) FROM outbox WHERE state = 'pending' GROUP BY destination"
    )
    return {row[0]: row[1] for row in rows if _held("pending", row[0], kept)}


class Outbox:
    def __init__(
        self, index: Index, settings: GatewaySettings, audit: Audit, node: str = "outbox"
    ) -> None:
        self._index = index
        self._settings = settings
        self._audit = audit
        self._node = node  # host:pid, on the rows this process claims
        # Only these are ever contacted: rows for any other destination are held.
        self._destinations = settings.destination_names

    def warn_held(self) -> None:
        """At start: one warning per destination whose queued results are held because the
        configuration no longer names it."""
        for destination, count in held_destinations(self._index, self._destinations).items():
            log.warning(
                "%d result(s) queued for %s are held: it is not in [gateway] destinations; "
                "they are kept and sent if it is configured again",
                count,
                destination,
            )

    @staticmethod
    def identify(paths: Iterable[Path]) -> list[tuple[Path, str]]:
        """(file, SOP Instance UID) of results, read before any transaction is opened."""
        return [(p, str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)) for p in paths]

    def add_in(self, db, job_id: int, objects: Iterable[tuple[Path, str]]) -> int:
        """Queue each object for each destination, inside the caller's transaction."""
        count = 0
        for path, sop_uid in objects:
            for peer in self._settings.peers:
                db.execute(
                    "INSERT INTO outbox (job_id, destination, path, sop_uid, next_try) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (job_id, str(peer), str(path), sop_uid, db.now()),
                )
                count += 1
        return count

    def send_due(self) -> int:
        """One association (at most BATCH rows) per destination with rows due; returns how many
        were delivered. The service calls it again at once while it delivers."""
        return sum(self._send_to(destination, rows) for destination, rows in self._claim().items())

    def _claim(self) -> dict[str, list]:
        """Per destination, its oldest due rows (at most BATCH), held for this process until
        CLAIM_S from now."""
        claimed: dict[str, list] = {}
        with self._index.write() as db:
            destinations = db.execute(
                "SELECT DISTINCT destination FROM outbox WHERE state = 'pending' AND next_try <= ?",
                (db.now(),),
            ).fetchall()
            for (destination,) in destinations:
                if destination not in self._destinations:
                    continue  # held: no longer configured
                due = db.execute(
                    "SELECT * FROM outbox WHERE state = 'pending' AND next_try <= ? "
                    "AND destination = ? ORDER BY id LIMIT ?" + db.skip_locked,
                    (db.now(), destination, BATCH),
                ).fetchall()
                for row in due:
                    db.execute(
                        "UPDATE outbox SET claimed_by = ?, next_try = ? WHERE id = ?",
                        (self._node, db.now() + CLAIM_S, row["id"]),
                    )
                if due:
                    claimed[destination] = due
        return claimed

    def _hold(self, rows: list) -> list:
        """The rows this process still holds, each claim renewed for CLAIM_S, just before they
        are sent. A row another outbox process took over (this one looked dead) is its now."""

        def renew() -> list:
            with self._index.write() as db:
                return [
                    row
                    for row in rows
                    if db.execute(
                        "UPDATE outbox SET next_try = ? WHERE id = ? AND claimed_by = ? "
                        "AND state = 'pending' RETURNING id",
                        (db.now() + CLAIM_S, row["id"], self._node),
                    ).fetchone()
                ]

        held = self._index.retrying(renew, "outbox claim renewed")
        if len(held) < len(rows):
            log.warning(
                "%d outbox row(s) taken over by another outbox process", len(rows) - len(held)
            )
        return held

    def _send_to(self, destination: str, rows: list) -> int:
        """The one place a destination's scheme picks how it is sent to."""
        if is_web(destination):
            return self._stow(WebPeer.parse(destination), rows)
        return self._send(Peer.parse(destination), rows)

    def _stow(self, peer: WebPeer, rows: list) -> int:
        """STOW-RS to a DICOMweb server: delivered or postponed row by row, as with C-STORE."""
        from dicom_gateway import dicomweb_out  # the dicomweb extra, checked at service start

        held = self._hold(rows)
        if not held:
            return 0
        deliveries = dicomweb_out.stow(self._settings.web.server(peer), held)
        for delivery in deliveries:
            if delivery.error:
                self._postpone([delivery.row], delivery.error)
            else:
                self._delivered(delivery.row, peer)
        return sum(1 for d in deliveries if not d.error)

    def _send(self, peer: Peer, rows: list) -> int:
        ae = AE(ae_title=self._settings.ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
        readable = []  # (row, the presentation context it needs: SOP class, transfer syntaxes)
        proposed = set()
        for row in rows:
            try:
                header = pydicom.dcmread(row["path"], stop_before_pixels=True)
            except (OSError, InvalidDicomError) as exc:
                self._postpone([row], f"result file unreadable: {exc}")
                continue
            syntax = UID(str(header.file_meta.TransferSyntaxUID))
            context = (UID(str(header.SOPClassUID)), proposed_syntaxes(syntax))
            readable.append((row, context))
            if context not in proposed:
                proposed.add(context)
                ae.add_requested_context(context[0], list(context[1]))
        if not readable:
            return 0
        assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
        if not assoc.is_established:
            if assoc.rejected_contexts and not assoc.accepted_contexts:
                self._postpone_each([(row, _no_context(peer, *c)) for row, c in readable])
            else:
                self._postpone([row for row, _ in readable], f"association with {peer} failed")
            return 0
        accepted = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
        delivered = 0
        try:
            for number, (row, (sop_class, syntaxes)) in enumerate(readable):
                if not assoc.is_established:  # aborted by the peer: the rest waits
                    rest = [row for row, _ in readable[number:]]
                    self._postpone(rest, f"{peer} dropped the association")
                    break
                if not any((sop_class, syntax) in accepted for syntax in syntaxes):
                    self._postpone([row], _no_context(peer, sop_class, syntaxes))
                    continue
                if not self._hold([row]):
                    continue
                try:
                    status = assoc.send_c_store(Path(row["path"]))
                except (ValueError, RuntimeError) as exc:  # e.g. transfer syntax refused
                    self._postpone([row], f"{peer}: {exc}")
                    continue
                code = getattr(status, "Status", None)
                if code in STORED:  # a warning still means the PACS stored it
                    self._delivered(row, peer)
                    delivered += 1
                else:
                    self._postpone([row], f"{peer} answered status {code!r}")
        finally:
            if assoc.is_established:
                assoc.release()
        return delivered

    def _delivered(self, row, peer: Peer | WebPeer) -> None:
        """Marked sent only while this process holds the row; the audit records the send
        either way, and says when the row had been taken over (it may be sent again)."""

        def record() -> bool:
            with self._index.write() as db:
                return bool(
                    db.execute(
                        "UPDATE outbox SET state = 'sent', sent = ?, attempts = attempts + 1 "
                        "WHERE id = ? AND claimed_by = ? RETURNING id",
                        (db.now(), row["id"], self._node),
                    ).fetchone()
                )

        held = self._index.retrying(record, f"outbox row {row['id']} sent")
        self._audit(
            "object_sent",
            destination=str(peer),
            sop_uid=row["sop_uid"],
            job=row["job_id"],
            **({} if held else {"claim": "taken over by another outbox process"}),
        )

    def _postpone_each(self, reasons: list[tuple]) -> None:
        """Postponed with each row's own reason, one warning per reason."""
        by_reason: dict[str, list] = {}
        for row, reason in reasons:
            by_reason.setdefault(reason, []).append(row)
        for reason, rows in by_reason.items():
            self._postpone(rows, reason)

    def _postpone(self, rows: list, reason: str) -> None:
        """Exponential back-off, capped; the row stays pending until it goes through."""

        def record() -> None:
            with self._index.write() as db:
                for row in rows:
                    delay = min(
                        self._settings.retry_first_s * 2 ** row["attempts"],
                        self._settings.retry_max_s,
                    )
                    db.execute(
                        "UPDATE outbox SET attempts = attempts + 1, next_try = ?, last_error = ? "
                        "WHERE id = ? AND claimed_by = ?",
                        (db.now() + delay, reason, row["id"], self._node),
                    )

        self._index.retrying(record, "outbox retry recorded")
        log.warning("%d object(s) not delivered: %s; will retry", len(rows), reason)
