"""The DICOM listener (SCP): C-ECHO and C-STORE of every storage SOP class and transfer syntax.

A C-STORE is acknowledged only after the spool made the bytes durable; every failure becomes a
DIMSE status, and the listener keeps serving."""

from __future__ import annotations

import logging
import ssl

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from dicom_gateway.audit import Audit
from dicom_gateway.settings import GatewaySettings
from dicom_gateway.spool import Spool, SpoolError
from dicom_gateway.status import PROCESSING_FAILURE, SUCCESS

log = logging.getLogger(__name__)


class Listener:
    def __init__(self, settings: GatewaySettings, spool: Spool, audit: Audit) -> None:
        self._settings = settings
        self._spool = spool
        self._audit = audit
        self._callers = settings.allowed_callers
        self._server = None
        self.ae = AE(ae_title=settings.ae_title)
        self.ae.maximum_pdu_size = settings.max_pdu
        self.ae.maximum_associations = 16
        for context in AllStoragePresentationContexts:
            self.ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        self.ae.add_supported_context(Verification)
        if self._callers:
            self.ae.require_calling_aet = list(self._callers)
        else:
            log.warning("no [gateway] allowed list: every calling AE title is accepted")

    def start(self) -> None:
        address = (self._settings.bind, self._settings.port)
        self._server = self.ae.start_server(
            address,
            block=False,
            ssl_context=_ssl_context(self._settings),
            evt_handlers=[
                (evt.EVT_C_STORE, self._on_store),
                (evt.EVT_C_ECHO, self._on_echo),
                (evt.EVT_ACCEPTED, self._on_accepted),
                (evt.EVT_REJECTED, self._on_rejected),
            ],
        )
        log.info("listening as %s on %s:%d", self._settings.ae_title, *address)

    def stop(self) -> None:
        """Stop accepting; associations in flight finish first."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _peer(self, event) -> dict:
        requestor = event.assoc.requestor
        return {
            "calling_ae": requestor.ae_title,
            "address": requestor.address,
            "association": event.assoc.native_id,
        }

    def _on_accepted(self, event) -> None:
        peer = self._peer(event)
        pinned = self._callers.get(peer["calling_ae"])
        if pinned and pinned != peer["address"]:
            self._audit("association_rejected", reason="address not allowed for AE", **peer)
            event.assoc.abort()
            return
        self._audit("association_accepted", **peer)

    def _on_rejected(self, event) -> None:
        self._audit(
            "association_rejected", reason="calling AE title not allowed", **self._peer(event)
        )

    def _on_echo(self, event) -> int:
        return SUCCESS

    def _on_store(self, event) -> int:
        peer = self._peer(event)
        try:
            stored = self._spool.store(event.encoded_dataset(include_meta=True), peer["calling_ae"])
        except SpoolError as exc:
            self._audit("instance_refused", status=f"0x{exc.status:04X}", reason=str(exc), **peer)
            return exc.status
        except Exception:  # our bug: answer with a failure, keep serving, keep the trace
            log.exception("storing an instance from %s failed", peer["calling_ae"])
            return PROCESSING_FAILURE
        self._audit(
            "instance_stored",
            study_uid=stored.study_uid,
            series_uid=stored.series_uid,
            sop_uid=stored.sop_uid,
            bytes=stored.size,
            late=stored.late,
            **peer,
        )
        return SUCCESS


def _ssl_context(settings: GatewaySettings) -> ssl.SSLContext | None:
    if not settings.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    if settings.tls_ca:
        context.load_verify_locations(settings.tls_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
