"""The DICOM listener (SCP): C-ECHO and C-STORE of every storage SOP class and transfer syntax.

A C-STORE's data set is written to disk as it arrives and acknowledged only after the spool made
it durable and indexed it; every failure becomes a DIMSE status, and the listener keeps serving."""

from __future__ import annotations

import gc
import logging
import os
import ssl

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, evt
from pynetdicom.sop_class import Verification

from dicom_gateway import pdu_guard
from dicom_gateway.audit import Audit, stored_fields
from dicom_gateway.settings import GatewaySettings, StartError, peer_address
from dicom_gateway.spares import SpareFiles
from dicom_gateway.spool import Spool, SpoolError
from dicom_gateway.status import PROCESSING_FAILURE, SUCCESS

log = logging.getLogger(__name__)

# A-ASSOCIATE-RJ (PS3.8 9.3.4): (result, source, diagnostic)
CALLING_AE_NOT_RECOGNIZED = (0x01, 0x01, 0x03)  # rejected-permanent, by the service user
LOCAL_LIMIT_EXCEEDED = (0x02, 0x03, 0x02)  # rejected-transient, by the presentation provider
# Rejections pynetdicom still makes itself, by (source, diagnostic).
STACK_REJECTIONS = {
    (0x01, 0x02): "application context name not supported",
    (0x01, 0x07): "called AE title not recognised",
    (0x02, 0x02): "protocol version not supported",
    (0x03, 0x02): "association limit reached",
}


def freeze_startup() -> None:
    """Called by a process once it listens: what exists then (pynetdicom, pydicom, a worker's
    models) lives as long as the process. Out of the collector's way, a full collection (which
    the receive path's short-lived cycles set off now and then) scans only what came after, not
    every object loaded."""
    gc.collect()
    gc.freeze()


class Listener:
    def __init__(self, settings: GatewaySettings, spool: Spool, audit: Audit) -> None:
        self._settings = settings
        self._spool = spool
        self._audit = audit
        self._callers = settings.allowed_callers
        self._server = None
        self._spares: SpareFiles | None = None
        self.ae = AE(ae_title=settings.ae_title)
        self.ae.maximum_pdu_size = settings.max_pdu
        self.ae.acse_timeout = settings.handshake_timeout_s  # waiting for the A-ASSOCIATE-RQ
        self.ae.network_timeout = settings.network_timeout_s  # an idle association is aborted
        # The guard counts associations; pynetdicom's own count (pending connections included)
        # is set where it never decides.
        self.ae.maximum_associations = settings.max_associations + settings.max_pending
        self.guard = pdu_guard.Guard(
            pdu_guard.Limits(
                max_pending=settings.max_pending,
                max_pending_per_address=settings.max_pending_per_address,
                max_associations=settings.max_associations,
                handshake_timeout_s=settings.handshake_timeout_s,
                network_timeout_s=settings.network_timeout_s,
                max_pdu=settings.max_pdu,
            ),
            on_refused=self._on_connection_refused,
        )
        for context in AllStoragePresentationContexts:
            self.ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        self.ae.add_supported_context(Verification)
        if not self._callers:
            log.warning("no [gateway] allowed list: every calling AE title is accepted")

    def start(self) -> None:
        address = (self._settings.bind, self._settings.port)
        _quiet_standard_logging()
        self._spares = SpareFiles(self._spool.open_received)
        try:
            self._server = pdu_guard.start(
                self.ae,
                address,
                self.guard,
                ssl_context=_ssl_context(self._settings),
                open_file=self._spares.take,
                reuse_port=self._settings.listener_processes > 1,
                evt_handlers=[
                    (evt.EVT_C_STORE, self._on_store),
                    (evt.EVT_C_ECHO, self._on_echo),
                    (evt.EVT_REQUESTED, self._on_requested),
                    (evt.EVT_ACCEPTED, self._on_accepted),
                    (evt.EVT_REJECTED, self._on_rejected),
                ],
            )
        except BaseException as exc:  # the port taken, a bad certificate: no spare file stays
            self._spares.close()
            self._spares = None
            if isinstance(exc, OSError):  # in use, or an address not on this machine
                raise StartError(
                    f"cannot listen on {address[0]}:{address[1]}: {_why(exc)}"
                ) from None
            raise
        log.info("listening as %s on %s:%d", self._settings.ae_title, *address)

    def stop(self) -> None:
        """Stop accepting; associations in flight finish first."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._spares is not None:
            self._spares.close()
            self._spares = None

    def _peer(self, event) -> dict:
        requestor = event.assoc.requestor
        request = requestor.primitive  # before negotiation, the AE title is only in the request
        return {
            "calling_ae": requestor.ae_title or (request.calling_ae_title if request else ""),
            "address": requestor.address,
            "association": event.assoc.native_id,
        }

    def _on_requested(self, event) -> None:
        """Admission, decided here so that every refusal is audited with its real reason. It
        fails closed: pynetdicom logs and swallows a notification handler's error and would
        go on to accept, so any error here (an audit write that fails) refuses the association."""
        try:
            peer = self._peer(event)
            reason, code = self._caller_refusal(peer), CALLING_AE_NOT_RECOGNIZED
            if reason is None and not pdu_guard.connection_of(event.assoc).promote():
                reason, code = "association limit reached", LOCAL_LIMIT_EXCEEDED
            if reason is not None:  # audited before the peer hears of it
                self._audit("association_rejected", reason=reason, **peer)
        except Exception:
            pdu_guard.reject(event.assoc, *LOCAL_LIMIT_EXCEEDED)
            raise
        if reason is not None:
            pdu_guard.reject(event.assoc, *code)

    def _caller_refusal(self, peer: dict) -> str | None:
        if not self._callers:
            return None
        if peer["calling_ae"] not in self._callers:
            return "calling AE title not allowed"
        pinned = self._callers[peer["calling_ae"]]
        if pinned and pinned != _comparable(peer["address"]):
            return "address not allowed for AE"
        return None

    def _on_accepted(self, event) -> None:
        # Which listener process took it: with several on one port, the kernel chose.
        self._audit("association_accepted", listener=os.getpid(), **self._peer(event))

    def _on_rejected(self, event) -> None:
        """A rejection pynetdicom made itself (ours are audited in _on_requested)."""
        answer = event.assoc.acceptor.primitive
        key = (getattr(answer, "result_source", None), getattr(answer, "diagnostic", None))
        reason = STACK_REJECTIONS.get(key, f"rejected by the DICOM stack (source, reason) {key}")
        self._audit("association_rejected", reason=reason, **self._peer(event))

    def _on_connection_refused(self, reason: str, address: str) -> None:
        """A connection closed before (or instead of) an association: no AE title to name."""
        self._audit("connection_refused", reason=reason, address=address)

    def _on_echo(self, event) -> int:
        return SUCCESS

    def _on_store(self, event) -> int:
        peer = self._peer(event)
        with self._spool.storing():  # a stopping service waits for it
            try:
                stored = self._store(event, peer["calling_ae"])
            except SpoolError as exc:
                reason = str(exc)
                self._audit("instance_refused", status=f"0x{exc.status:04X}", reason=reason, **peer)
                return exc.status
            except Exception:  # our bug: answer with a failure, keep serving, keep the trace
                log.exception("storing an instance from %s failed", peer["calling_ae"])
                return PROCESSING_FAILURE
            self._audit("instance_stored", **stored_fields(stored), **peer)
        return SUCCESS

    def _store(self, event, calling_ae: str):
        """The data set as it was streamed to disk; one that came whole with its command (a
        single PDU) was not streamed and is stored from memory."""
        path = event.dataset_path
        if path is None:
            return self._spool.store(event.encoded_dataset(include_meta=True), calling_ae)
        return self._spool.store_received(event.assoc.receiving.pop(str(path)), calling_ae)


def _quiet_standard_logging() -> None:
    """pynetdicom's standard handlers describe every PDU and DIMSE message for its logger, C-STORE
    by C-STORE, even when that logger drops what they write (keep_phi_out_of_logs holds it at
    WARNING): bound only while someone debugging lowered it (`_config` is pynetdicom's
    documented switch; a server binds them when it is made)."""
    verbose = logging.getLogger("pynetdicom").isEnabledFor(logging.INFO)
    _config.LOG_HANDLER_LEVEL = "standard" if verbose else "none"


def _ssl_context(settings: GatewaySettings) -> ssl.SSLContext | None:
    """The listener's TLS; a file that is missing, unreadable or not PEM is named (ssl's own
    errors name none)."""
    if not settings.tls_cert:
        return None
    files = {"tls_cert": settings.tls_cert, "tls_key": settings.tls_key, "tls_ca": settings.tls_ca}
    for key, path in files.items():
        if path and not (os.path.isfile(path) and os.access(path, os.R_OK)):
            raise StartError(f"{key} {path}: no such readable file")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except OSError as exc:  # ssl.SSLError: not PEM, or the key is not the certificate's
        raise StartError(
            f"tls_cert {settings.tls_cert} with tls_key {settings.tls_key}: {_why(exc)}"
        ) from None
    if settings.tls_ca:
        try:
            context.load_verify_locations(settings.tls_ca)
        except OSError as exc:
            raise StartError(f"tls_ca {settings.tls_ca}: {_why(exc)}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _comparable(address: str) -> str | None:
    """A peer's address as pins are written (None: not an IP address, matching no pin)."""
    try:
        return peer_address(address)
    except ValueError:
        return None


def _why(exc: OSError) -> str:
    """The system's or ssl's reason, without the errno number."""
    return getattr(exc, "reason", None) or exc.strerror or str(exc)
