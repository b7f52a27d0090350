"""No slot without an association: the listener's sockets, as pynetdicom accepts them, guarded.

pynetdicom 3.0 accepts a connection into a blocking socket, reads a PDU's declared length without
checking it, and counts a connection that never sends an A-ASSOCIATE-RQ against its association
limit until the ACSE timeout. Here every accepted connection
- takes one of `max_pending` slots at accept time, at most `max_pending_per_address` of them
  from one address (over either cap: closed at once, no thread),
- must complete A-ASSOCIATE within `handshake_timeout_s` (TLS handshake included),
- reads with a timeout, and has every PDU's declared length checked before its body is read:
  the A-ASSOCIATE-RQ against FIRST_PDU_CAP, later PDUs against the maximum PDU size we
  negotiated; a PDU over its cap is answered with A-ABORT and the connection closed (dcmtk's way),
- leaves its pending slot for one of `max_associations` only when its association is accepted.
Junk costs no look at our presentation contexts (offered only once an A-ASSOCIATE-RQ arrived) and
no CPU while it waits (its reactor waits in select: reactor.py). Every pynetdicom member
overridden or copied here is named in tests/dicom_gateway/test_pdu_guard.py, which fails when
pynetdicom changes one."""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pynetdicom import evt
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from dicom_gateway.reactor import StreamingAssociation

FIRST_PDU_CAP = 512 * 1024  # an A-ASSOCIATE-RQ with 128 contexts of many transfer syntaxes fits
# A-ABORT PDU: type 7, length 4, source 2 (service provider), reason 6 (invalid PDU parameter).
ABORT_INVALID_PDU = struct.pack(">BBLBBBB", 0x07, 0, 4, 0, 0, 0x02, 0x06)
PDU_HEADER = struct.Struct(">BBL")
HANDSHAKE_TIMEOUT = "A-ASSOCIATE not completed within the handshake timeout"
READ_CHUNK = 1 << 20  # the most one recv asks for (a PDU body is read in a few such reads)


@dataclass(frozen=True)
class Limits:
    max_pending: int  # TCP connections not (yet) associated
    max_pending_per_address: int  # of those, from one source address
    max_associations: int
    handshake_timeout_s: float  # connect to A-ASSOCIATE-AC
    network_timeout_s: float  # silence in the middle of a PDU, or on an idle association
    max_pdu: int  # what we tell peers we receive: the cap on every PDU after the first


class Guard:
    """The slots: pending connections (in all, and per source address) and associations."""

    def __init__(self, limits: Limits, on_refused: Callable[[str, str], None]) -> None:
        self.limits = limits
        self._on_refused = on_refused  # (reason, "ip:port"): the listener audits it
        self._lock = threading.Lock()
        self.pending = 0
        self.associations = 0
        self._pending_from: Counter[str] = Counter()

    def admit(self, address: tuple) -> bool:
        """A pending slot for a new TCP connection, or a refusal that costs no thread."""
        host, reason = address[0], None
        with self._lock:
            if self.pending >= self.limits.max_pending:
                reason = "pending connection limit reached"
            elif self._pending_from[host] >= self.limits.max_pending_per_address:
                reason = "pending connection limit for this address reached"
            else:
                self.pending += 1
                self._pending_from[host] += 1
        if reason:
            self.refused(reason, address)
        return reason is None

    def promote(self, host: str) -> bool:
        """Pending -> associated, when an association slot is free."""
        with self._lock:
            if self.associations >= self.limits.max_associations:
                return False
            self._leave_pending(host)
            self.associations += 1
            return True

    def release(self, associated: bool, host: str) -> None:
        with self._lock:
            if associated:
                self.associations -= 1
            else:
                self._leave_pending(host)

    def _leave_pending(self, host: str) -> None:
        self.pending -= 1
        self._pending_from[host] -= 1
        if not self._pending_from[host]:
            del self._pending_from[host]

    def refused(self, reason: str, address: tuple) -> None:
        self._on_refused(reason, f"{address[0]}:{address[1]}")


class Connection:
    """One accepted socket's standing: pending until its association is accepted."""

    def __init__(self, guard: Guard, address: tuple) -> None:
        self.guard = guard
        self.address = address
        self.deadline = time.monotonic() + guard.limits.handshake_timeout_s
        self.associated = False
        self.refused = False
        self._closed = False

    def promote(self) -> bool:
        self.associated = self.guard.promote(self.address[0])
        return self.associated

    def timeout(self) -> float:
        """How long the next read may wait: never past the handshake deadline while pending."""
        if self.associated:
            return self.guard.limits.network_timeout_s
        return min(self.guard.limits.network_timeout_s, self.deadline - time.monotonic())

    def refuse(self, reason: str) -> None:
        self.refused = True
        self.guard.refused(reason, self.address)

    def close(self) -> None:
        """The connection ended: its slot is free; a silent one that ran out of time is audited."""
        if not (self.associated or self.refused) and time.monotonic() >= self.deadline:
            self.refuse(HANDSHAKE_TIMEOUT)
        if not self._closed:
            self._closed = True
            self.guard.release(self.associated, self.address[0])


class GuardedSocket(AssociationSocket):
    """pynetdicom's socket wrapper with read timeouts and PDU lengths checked on arrival."""

    def __init__(self, assoc, client_socket: socket.socket, connection: Connection) -> None:
        super().__init__(assoc, client_socket=client_socket)
        self.connection = connection
        self._header = bytearray()
        self._body_left = 0
        self._pdus = 0

    def recv(self, nr_bytes: int) -> bytearray:
        """pynetdicom reads a PDU header (6 bytes), then its body: the header is checked
        before a byte of the body is read; the body arrives in as few reads as the kernel allows."""
        data = bytearray(nr_bytes)
        view, got = memoryview(data), 0
        while got < nr_bytes:
            count = self._read_into(view[got : got + READ_CHUNK])
            if not count:
                return data[:got]  # closed: pynetdicom sees a short read and ends the connection
            try:
                self._track(view[got : got + count])
            except ValueError as exc:
                self._refuse(str(exc), ABORT_INVALID_PDU)
                return bytearray()
            got += count
        return data

    def _read_into(self, buffer: memoryview) -> int:
        timeout = self.connection.timeout()
        if timeout <= 0:
            self._refuse(HANDSHAKE_TIMEOUT)
            return 0
        try:
            if self.socket.gettimeout() != timeout:  # a call that lets go of the GIL: when needed
                self.socket.settimeout(timeout)
            if type(self.socket) is socket.socket:  # plain TCP (not TLS): what has arrived, now
                # A socket with a timeout polls before every read: a second system call, the GIL
                # let go twice, while the bytes are usually there already. With a timeout its
                # descriptor never blocks (Python emulates the wait): nothing there yet raises,
                # and the timed read below waits for them.
                with contextlib.suppress(BlockingIOError):
                    return os.readv(self.socket.fileno(), [buffer])
            return self.socket.recv_into(buffer)
        except TimeoutError:
            if self.connection.associated:
                self._refuse("no data within the network timeout in the middle of a PDU")
            else:
                self._refuse(HANDSHAKE_TIMEOUT)
        except (OSError, AttributeError):  # reset by the peer, or closed by pynetdicom meanwhile
            pass
        return 0

    def _track(self, chunk: bytes) -> None:
        """Follow the PDU framing of everything read; raise before a PDU over its cap is read."""
        view = memoryview(chunk)
        while view:
            if self._body_left:
                step = min(len(view), self._body_left)
                self._body_left -= step
                view = view[step:]
                continue
            need = PDU_HEADER.size - len(self._header)
            self._header += view[:need]
            view = view[need:]
            if len(self._header) == PDU_HEADER.size:
                _, _, length = PDU_HEADER.unpack(self._header)
                self._header.clear()
                cap = FIRST_PDU_CAP if self._pdus == 0 else self.connection.guard.limits.max_pdu
                if length > cap:
                    raise ValueError(f"PDU too large: {length} bytes declared, at most {cap}")
                self._body_left = length
                self._pdus += 1

    def _refuse(self, reason: str, farewell: bytes = b"") -> None:
        self.connection.refuse(reason)
        raw = self.socket
        if raw is None:
            return
        try:
            if farewell:
                raw.settimeout(1.0)
                raw.sendall(farewell)
            raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class GuardedHandler(RequestHandler):
    """One accepted connection: TLS handshake, association, slot released when it ends."""

    server: GuardedServer

    def handle(self) -> None:
        connection = Connection(self.server.guard, self.client_address)
        assoc = None
        try:
            if not self._tls_handshake(connection):
                return
            assoc = self._create_association(connection)
            evt.trigger(assoc, evt.EVT_CONN_OPEN, {"address": self.client_address})
            assoc.start()
            assoc.join()  # this thread holds the slot until the association's threads are gone
        finally:
            if assoc is not None:
                assoc.discard_unfinished()
            connection.close()

    def _tls_handshake(self, connection: Connection) -> bool:
        if not isinstance(self.request, ssl.SSLSocket):
            return True
        try:
            self.request.settimeout(max(connection.timeout(), 0.001))
            self.request.do_handshake()
            return True
        except (OSError, ssl.SSLError) as exc:
            connection.refuse(f"TLS handshake failed: {exc}")
            self.server.shutdown_request(self.request)
            return False

    def _create_association(self, connection: Connection):
        """pynetdicom's RequestHandler._create_association, with a GuardedSocket and the
        waking, streaming association of reactor.py."""
        assoc = StreamingAssociation(self.ae, "acceptor", self.server.open_file)
        assoc._server = self.server
        assoc.name = f"AcceptorThread@{datetime.now():%Y%m%d%H%M%S}"
        assoc.set_socket(GuardedSocket(assoc, self.request, connection))
        assoc.acceptor.maximum_length = self.ae.maximum_pdu_size
        assoc.acceptor.ae_title = self.server.ae_title
        assoc.acceptor.address_info = self.local
        assoc.acceptor.implementation_class_uid = self.ae.implementation_class_uid
        assoc.acceptor.implementation_version_name = self.ae.implementation_version_name
        assoc.requestor.address_info = self.remote
        for event, handlers in self.server._handlers.items():
            if event.is_intervention and handlers:
                assoc.bind(event, *handlers)
            elif isinstance(event, evt.NotificationEvent):
                for handler, args in handlers:
                    assoc.bind(event, handler, args)
        assoc.bind(evt.EVT_REQUESTED, _offer_contexts, [self.server.contexts])
        assoc.bind(evt.EVT_CONN_CLOSE, _stop_waiting_for_request)
        return assoc


class GuardedServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with a pending cap at accept and no blocking TLS accept."""

    def __init__(self, *args, guard: Guard, open_file, reuse_port: bool, **kwargs) -> None:
        self.guard = guard
        self.open_file = open_file  # where a C-STORE's data set is written as it arrives
        self.reuse_port = reuse_port
        # The kernel's accept queue: a burst of connections waits there, not in SYN retries.
        self.request_queue_size = guard.limits.max_pending + guard.limits.max_associations
        super().__init__(*args, request_handler=GuardedHandler, **kwargs)

    def server_bind(self) -> None:
        """SO_REUSEPORT when several listener processes share the port (the kernel spreads
        new connections over them)."""
        if self.reuse_port:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def get_request(self) -> tuple[socket.socket, tuple]:
        client, address = self.socket.accept()
        # Every PDU goes out in one write: Nagle's algorithm could only hold a response back
        # until the peer's delayed ACK (~40 ms on Linux).
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.settimeout(self.guard.limits.handshake_timeout_s)
        if self.ssl_context:  # the handshake happens in the connection's thread, with a deadline
            client = self.ssl_context.wrap_socket(
                client, server_side=True, do_handshake_on_connect=False
            )
        return client, address

    def verify_request(self, request, client_address) -> bool:
        return self.guard.admit(client_address)

    def shutdown(self) -> None:
        """Stop accepting, then wait for the connections in flight (start() never registered
        this server with its AE, so none of AE.shutdown's bookkeeping applies)."""
        socketserver.BaseServer.shutdown(self)
        self.server_close()


def start(
    ae, address: tuple, guard: Guard, ssl_context, evt_handlers, open_file, reuse_port=False
) -> GuardedServer:
    """`AE.start_server(..., block=False)` with the guarded server class; C-STORE data sets
    are written to `open_file()` as they arrive."""
    server = ae.make_server(
        address,
        ssl_context=ssl_context,
        evt_handlers=evt_handlers,
        server_class=GuardedServer,
        guard=guard,
        open_file=open_file,
        reuse_port=reuse_port,
    )
    thread = threading.Thread(target=server.serve_forever, name="dicom-listener", daemon=True)
    thread.start()
    return server


def connection_of(assoc) -> Connection:
    return assoc.dul.socket.connection


def reject(assoc, result: int, source: int, diagnostic: int) -> None:
    """A-ASSOCIATE-RJ from an EVT_REQUESTED handler, ended as pynetdicom ends its own rejects."""
    connection_of(assoc).refused = True  # audited by the caller: not a handshake timeout
    assoc.acse.send_reject(result, source, diagnostic)
    assoc.kill()  # waits until the reject went out and the connection closed


def _offer_contexts(event, contexts) -> None:
    """Our presentation contexts, offered once a request arrived (after the admission handlers).
    pynetdicom deep-copies them at accept for every connection, junk included: 1.3 MiB and
    ~30 ms of CPU (every UID validated again), as much as 20 CT instances cost to receive. The
    acceptor gets a list of the same contexts instead: negotiation only reads them (its results
    are new contexts, presentation.negotiate_as_acceptor, pinned) and nothing here changes one."""
    if not event.assoc.is_rejected and not event.assoc.is_aborted:
        event.assoc.acceptor.supported_contexts = list(contexts)


def _stop_waiting_for_request(event) -> None:
    """The connection closed before an A-ASSOCIATE-RQ arrived: pynetdicom's acceptor thread
    would wait for one until its ACSE timeout; a None in its queue ends that wait now."""
    assoc = event.assoc
    if assoc.requestor.primitive is None and assoc.dul.to_user_queue.empty():
        assoc.dul.to_user_queue.put(None)
