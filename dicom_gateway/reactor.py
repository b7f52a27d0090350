"""pynetdicom's acceptor, woken by events instead of polling, with C-STORE data streamed to a file.

pynetdicom 3.0 runs two loops per association: the DUL reactor sleeps 1 ms whenever it found
nothing to do, and the association reactor sleeps 1 ms on every turn. A C-STORE pays those
sleeps on its way in and its response on its way out: ~3 ms an instance, more than the work.
Here the DUL waits in `select` on its socket and on a wake-up socket written when a primitive is
queued for it, and the association waits on a `threading.Event` set when a DIMSE message or an
ACSE primitive arrives; both still wake every TICK_S for their timers. A complete C-STORE or
C-ECHO request is served right in the DUL's thread, so an instance costs no thread hand-over.

A C-STORE's data set is written to a file as it arrives (the file meta first, as pynetdicom's own
STORE_RECV_CHUNKED_DATASET does, but into the spool's folder and for this association only), so
the handler finds it at `event.dataset_path`, never in memory; the PDUs that only carry more of it
are written from the received bytes, past pynetdicom's PDU objects (data_pdus.py). Each file is
one created ahead by a thread of its own (spares.py). Any error in the DUL's thread, a handler's
included, ends the association with an A-ABORT and one log line.
Every pynetdicom member copied or relied on here is pinned in tests/dicom_gateway/
test_pdu_guard.py, which fails when pynetdicom changes one."""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import select
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.pdu_primitives import P_DATA

from dicom_gateway.data_pdus import read_streamed_data
from dicom_gateway.dimse_bytes import (
    NO_DATA_SET,
    StoreRequest,
    file_meta,
    store_request,
    store_response,
)

log = logging.getLogger(__name__)

TICK_S = 0.05  # how often an idle loop looks at its timers (ARTIM, network timeout, kill)


class Receiving(Protocol):
    """Where a streamed data set is written: the spool's temporary file."""

    name: str
    file: object  # pynetdicom calls file.flush() after each fragment

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def discard(self) -> None: ...


class _Signalling(queue.Queue):
    """A queue that calls `wake` when another thread puts into it."""

    def __init__(self, wake: Callable[[], None], owner: threading.Thread | None = None) -> None:
        super().__init__()
        self._wake = wake
        self._owner = owner

    def put(self, item, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        if threading.current_thread() is not self._owner:
            self._wake()


class _ServedHere(queue.Queue):
    """The DIMSE message queue, except that a C-STORE or C-ECHO request is served as soon as it
    is complete, in the DUL's thread: no hand-over to the association's thread and back for
    its response (two thread wake-ups an instance, each a wait for a core on a busy machine).
    The peer waits for that response anyway; everything else still goes through the queue."""

    def __init__(self, assoc: StreamingAssociation) -> None:
        super().__init__()
        self._assoc = assoc

    def put(self, item, block: bool = True, timeout: float | None = None) -> None:
        context_id, primitive = item
        if (
            isinstance(primitive, (C_STORE, C_ECHO))
            and primitive.is_valid_request
            and self._assoc.is_established  # else the association's thread, once it is
            and self._assoc.dimse.syntax(context_id) is not None  # else aborted, not here
        ):
            self._assoc.serve(primitive, context_id)
            return
        super().put(item, block, timeout)
        self._assoc.arrived.set()


class WakingDUL(DULServiceProvider):
    """The DUL reactor, waiting in select instead of sleeping 1 ms per idle turn."""

    def __init__(self, assoc: Association) -> None:
        self._stopping = False
        self._peer_sent = False  # the last wait saw the peer's bytes arrive
        super().__init__(assoc)
        self._waker, self._woken = socket.socketpair()
        self._waker.setblocking(False)
        self._woken.setblocking(False)
        self.to_provider_queue = _Signalling(self.wake, self)
        self.event_queue = _Signalling(self.wake, self)

    @property
    def _kill_thread(self) -> bool:  # set by stop_dul and kill_dul: the reactor ends at once
        return self._stopping

    @_kill_thread.setter
    def _kill_thread(self, value: bool) -> None:
        self._stopping = value
        if value and hasattr(self, "_waker"):
            self.wake()

    def wake(self) -> None:
        with contextlib.suppress(OSError):  # full (already woken) or closed (reactor ended)
            self._waker.send(b"\0")

    def run_reactor(self) -> None:
        """pynetdicom's DULServiceProvider.run_reactor, waiting for work instead of polling."""
        try:
            self._run()
        finally:
            self._waker.close()
            self._woken.close()

    def _run(self) -> None:
        self._idle_timer.start()
        while True:
            if not self.assoc._dul_ready.is_set():
                self.assoc._dul_ready.set()
            if self._kill_thread:
                return
            if self.artim_timer.expired:
                self.event_queue.put("Evt18")
            try:
                self._turn()
            except Exception:
                # Our bug or a handler's (served in this thread): pynetdicom's state machine
                # re-raises after stopping this reactor; the peer hears an abort, not silence.
                log.exception("DUL reactor failed, aborting the association")
                self._abort()
                return

    def _turn(self) -> None:
        """Send what is queued, or read a PDU, then act on one event, or wait."""
        if self._process_recv_primitive():  # encode (sent by state machine)
            pass
        elif self._is_transport_event():  # receive and decode PDU
            self._idle_timer.restart()
        try:
            event = self.event_queue.get(block=False)
        except queue.Empty:
            if self.to_provider_queue.empty():  # else a response this thread queued: send it
                self._wait()
            return
        self.state_machine.do_action(event)

    def _is_transport_event(self) -> bool:
        """pynetdicom's, except right after a wait that saw the peer's bytes arrive: those are
        read without asking the socket a second time (a select of its own, for each PDU)."""
        peer_sent, self._peer_sent = self._peer_sent, False
        connection = self.socket
        if (
            peer_sent
            and self.state_machine.current_state != "Sta13"
            and connection is not None
            and connection.socket is not None  # as `ready` requires: still connected
            and connection._is_connected
        ):
            self._read_pdu_data()  # closed by the peer meanwhile: it reads as closed (Evt17)
            return True
        return super()._is_transport_event()

    def _read_pdu_data(self) -> None:
        """pynetdicom's, except for a PDU that only continues a streamed data set: written to
        its file from the received bytes (data_pdus.py)."""
        if not read_streamed_data(self):
            super()._read_pdu_data()

    def _abort(self) -> None:
        """As pynetdicom does: bypass the state machine and send an A-ABORT."""
        abort_pdu = A_ABORT_RQ()
        abort_pdu.source = 0x02
        abort_pdu.reason_diagnostic = 0x00
        self.socket.send(abort_pdu.encode())
        self.assoc.is_aborted = True
        self.assoc.is_established = False
        self.assoc._kill = True
        self._stopping = True

    def _wait(self) -> None:
        """Until the peer sends, a primitive is queued, or TICK_S passes."""
        watched = [self._woken]
        raw = self.socket.socket if self.socket is not None else None
        if raw is not None and self.socket._is_connected:
            if isinstance(raw, ssl.SSLSocket) and raw.pending():
                return
            watched.append(raw)
        try:
            readable, _, _ = select.select(watched, [], [], TICK_S)
        except (OSError, ValueError):  # closed meanwhile: the next turn sees it
            return
        self._peer_sent = raw is not None and raw in readable
        if self._woken in readable:  # drained only when woken: most wake-ups are the peer's
            with contextlib.suppress(OSError):
                self._woken.recv(4096)


class StreamingDIMSE(DIMSEServiceProvider):
    """Streams a C-STORE's data set into a file taken from the files created ahead (spares.py):
    a file create costs as much as its data, so none waits in an association's thread."""

    def __init__(self, assoc: StreamingAssociation, open_file: Callable[[], Receiving]) -> None:
        super().__init__(assoc)
        self._open_file = open_file
        self._syntaxes: dict[int, str] = {}  # accepted context ID -> its transfer syntax

    def receive_primitive(self, primitive) -> None:
        super().receive_primitive(primitive)
        message = self.message
        if (
            isinstance(message, C_STORE_RQ)
            and message._data_set_file is None
            and message.command_set.CommandDataSetType != NO_DATA_SET
        ):
            if self.syntax(message.context_id) is None:
                # pynetdicom would gather the whole data set in memory, then abort.
                log.error(
                    "association %s from %s: C-STORE on presentation context %s, which was not "
                    "accepted: aborted",
                    self.assoc.native_id,
                    self.assoc.requestor.ae_title,
                    message.context_id,
                )
                self.dul.event_queue.put("Evt19")  # as pynetdicom answers an invalid message
                return
            self._stream(message)

    def send_msg(self, primitive, context_id: int) -> None:
        """A plain C-STORE response goes out packed directly (dimse_bytes.py); every other
        message, or any message while something listens to EVT_DIMSE_SENT, as pynetdicom
        encodes it."""
        encoded = store_response(primitive)
        limit = self.maximum_pdu_size
        if (
            encoded is None
            or (limit and len(encoded) + 5 > limit)  # a PDV item: length, context ID, then it
            or self.assoc.get_handlers(evt.EVT_DIMSE_SENT)
        ):
            super().send_msg(primitive, context_id)
            return
        pdata = P_DATA()
        pdata.presentation_data_value_list = [[context_id, encoded]]
        self.dul.send_pdu(pdata)

    def syntax(self, context_id: int | None) -> str | None:
        """The transfer syntax of an accepted presentation context; None for any other."""
        if not self._syntaxes:  # fixed once the association is accepted; sorted on each access
            self._syntaxes = {
                c.context_id: c.transfer_syntax[0] for c in self.assoc.accepted_contexts
            }
        return self._syntaxes.get(context_id)

    def _take_file(self) -> Receiving:
        target = self._open_file()
        self.assoc.receiving[target.name] = target  # discarded if the association ends first
        return target

    def _stream(self, message: C_STORE_RQ) -> None:
        """File meta as pynetdicom writes it, then whatever of the data set already arrived.
        A plain request's command is read once from its bytes (dimse_bytes.store_request), and
        its primitive made from that when the data set is complete."""
        request = store_request(message.encoded_command_set.getvalue())
        if request is None:
            command = message.command_set
            sop_class, sop_instance = command.AffectedSOPClassUID, command.AffectedSOPInstanceUID
        else:
            sop_class, sop_instance = request.sop_class, request.sop_instance
            message.message_to_primitive = functools.partial(_store_primitive, message, request)
        target = self._take_file()
        meta = file_meta(sop_class, sop_instance, self.syntax(message.context_id))
        target.write(meta + message.data_set.getvalue())  # one write: little or nothing came yet
        message._data_set_file = target
        message._data_set_path = Path(target.name)


def _store_primitive(message: C_STORE_RQ, request: StoreRequest) -> C_STORE:
    """pynetdicom's message_to_primitive for a plain C-STORE request, from its command as read:
    the same parameters, set in the same order through the same validating setters."""
    vars(message).pop("message_to_primitive", None)  # it refers to the message: no cycle left
    primitive = C_STORE()
    primitive.AffectedSOPClassUID = request.sop_class
    primitive.MessageID = request.message_id
    primitive.Priority = request.priority
    primitive.AffectedSOPInstanceUID = request.sop_instance
    primitive.DataSet = message.data_set
    primitive._context_id = message.context_id
    primitive._dataset_path = message._data_set_path
    primitive._dataset_file = message._data_set_file
    return primitive


class StreamingAssociation(Association):
    """An acceptor with the waking loops and C-STORE data sets streamed to `open_file()`."""

    def __init__(self, ae, mode: str, open_file: Callable[[], Receiving]) -> None:
        super().__init__(ae, mode)
        self.arrived = threading.Event()
        # Data sets being written or handled, by file name; the C-STORE handler takes its own.
        self.receiving: dict[str, Receiving] = {}
        self.dul = WakingDUL(self)
        # Association.__init__ gave the replaced DUL its timers: the new one takes them too.
        self.acse_timeout, self.network_timeout = self.acse_timeout, self.network_timeout
        self.dul.to_user_queue = _Signalling(self.arrived.set)
        self.dimse = StreamingDIMSE(self, open_file)
        self.dimse.msg_queue = _ServedHere(self)

    def discard_unfinished(self) -> None:
        """A data set cut off by an abort or a closed connection: its file goes."""
        while self.receiving:
            _, unfinished = self.receiving.popitem()
            unfinished.close()
            Path(unfinished.name).unlink(missing_ok=True)

    def serve(self, msg, context_id: int) -> None:
        """pynetdicom's service for the request; its data set's file is the handler's now."""
        self._serve_request(msg, context_id)
        self.receiving.pop(str(getattr(msg, "_dataset_path", None)), None)

    def _run_reactor(self) -> None:
        """pynetdicom's Association._run_reactor, waiting for a message instead of polling."""
        self._is_paused = False
        while not self._kill:
            self.arrived.clear()
            if self.dimse.msg_queue.empty() and self.dul.to_user_queue.empty():
                self.arrived.wait(TICK_S)
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False
            context_id, msg = self.dimse.get_msg(block=False)
            if msg:
                self.serve(msg, context_id)
            if self._ended():
                return

    def _ended(self) -> bool:
        """Release, abort, a dead DUL or the network timeout: as pynetdicom ends each."""
        if self.is_established and self.acse.is_release_requested():
            self.discard_unfinished()  # a cut-off data set: gone before the peer hears we are done
            self.acse.send_release(is_response=True)
            self.is_released = True
            self.is_established = False
            evt.trigger(self, evt.EVT_RELEASED, {})
            self.kill()
            return True
        if self.acse.is_aborted():
            self.dul.receive_pdu(wait=False)  # so that EVT_ACSE_RECV fires for subscribers
            self.is_aborted = True
            self.is_established = False
            evt.trigger(self, evt.EVT_ABORTED, {})
            self.kill()
            return True
        if not self.dul.is_alive():
            self.kill()
            return True
        if self.dul.idle_timer_expired():
            log.error("Network timeout reached")
            self.abort()
            self.kill()
            return True
        return False
