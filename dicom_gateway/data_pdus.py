"""P-DATA-TF PDUs that only carry more of a data set being streamed to its file: written there
straight from the received bytes.

pynetdicom turns each such PDU into a PDU object, a P-DATA primitive and a state machine turn,
and copies its data four times on the way (the read buffer, bytes of it, each PDV's value, the
value less its control header) before writing it: ~0.1 ms of the DUL thread per 128 KiB PDU.
Here, while the association is established (Sta6, where pynetdicom's DT_2 only hands the
primitive to DIMSE) and a C-STORE's data set is being streamed, each PDU over plain TCP is read
here (a TLS connection's go through pynetdicom). One that only carries data fragments has them
written from views of the read buffer. The last fragment is followed by an empty one handed to
pynetdicom, which completes the message as it always does. A data fragment on another
presentation context than its message's aborts the association (pynetdicom would append it to
the data set). Any other PDU, or one whose framing is not plain, is decoded and queued whole, as
read, the way pynetdicom's _read_pdu_data ends (an unknown PDU type refused before its body is
read, as there). Every pynetdicom member relied on is pinned in
tests/dicom_gateway/test_pdu_guard.py."""

from __future__ import annotations

import logging
import ssl
import struct

from pynetdicom import evt
from pynetdicom.pdu_primitives import P_DATA

log = logging.getLogger(__name__)

P_DATA_TF = 0x04
PDU_HEADER = struct.Struct(">BBL")  # type, reserved, length
PDV_HEADER = struct.Struct(">LBB")  # item length, context ID, message control header
PDU_TYPES = range(0x01, 0x08)  # A-ASSOCIATE-RQ to A-ABORT: the PDU types pynetdicom decodes
COMMAND, LAST = 0x01, 0x02  # message control header bits
END_OF_DATA_SET = LAST.to_bytes(1, "big")  # an empty last data fragment


def read_streamed_data(dul) -> bool:
    """Read the next PDU here when it only continues a streamed data set; False (nothing read)
    when pynetdicom is to read it."""
    message = dul.assoc.dimse.message
    if (
        message is None
        or getattr(message, "_data_set_file", None) is None
        or dul.state_machine.current_state != "Sta6"
        or not dul.event_queue.empty()  # an earlier PDU's event first: order is kept
        or dul.assoc.get_handlers(evt.EVT_DATA_RECV)
        or dul.assoc.get_handlers(evt.EVT_PDU_RECV)
        or dul.assoc.get_handlers(evt.EVT_FSM_TRANSITION)  # DT-2 would fire it per PDU
    ):
        return False
    raw = dul.socket.socket
    if raw is None or isinstance(raw, ssl.SSLSocket):
        return False
    # The header first: the guard checks its length against our maximum PDU before the body.
    header = dul.socket.recv(PDU_HEADER.size)
    pdu_type, _, length = (
        PDU_HEADER.unpack(header) if len(header) == PDU_HEADER.size else (0, 0, -1)
    )
    if length >= 0 and pdu_type not in PDU_TYPES:
        log.error("unknown PDU type received 0x%02X", pdu_type)
        dul.event_queue.put("Evt19")  # as pynetdicom answers it
        return True
    body = dul.socket.recv(length) if length >= 0 else b""
    if length < 0 or len(body) != length:  # closed, or refused by the guard: as pynetdicom
        log.error("connection closed before the entire PDU was received")
        dul.event_queue.put("Evt17")
        return True
    fragments = _data_fragments(body) if pdu_type == P_DATA_TF else None
    if fragments is None:
        _hand_on(dul, header + body)
        return True
    if any(context_id != message.context_id for context_id, _, _ in fragments):
        log.error(
            "association %s from %s: a data fragment on another presentation context than its "
            "message's (%s): aborted",
            dul.assoc.native_id,
            dul.assoc.requestor.ae_title,
            message.context_id,
        )
        dul.event_queue.put("Evt19")  # as pynetdicom answers an invalid PDU
        return True
    target = message._data_set_file
    for context_id, data, last in fragments:
        target.write(data)
        if last:
            end = P_DATA()
            end.presentation_data_value_list = [[context_id, END_OF_DATA_SET]]
            dul.assoc.dimse.receive_primitive(end)
    return True


def _data_fragments(body: bytearray) -> list[tuple[int, memoryview, bool]] | None:
    """Each PDV as (context ID, data, last), when all are data fragments, framed exactly, with
    nothing after a last one; otherwise None."""
    view, position, found = memoryview(body), 0, []
    while position < len(view):
        if (found and found[-1][2]) or position + PDV_HEADER.size > len(view):
            return None
        item_length, context_id, control = PDV_HEADER.unpack_from(view, position)
        end = position + 4 + item_length
        if item_length < 2 or end > len(view) or control & COMMAND:
            return None
        found.append((context_id, view[position + PDV_HEADER.size : end], bool(control & LAST)))
        position = end
    return found or None


def _hand_on(dul, pdu: bytes) -> None:
    """A PDU already read, decoded and queued as the end of pynetdicom's _read_pdu_data does."""
    try:
        decoded, event = dul._decode_pdu(bytearray(pdu))
        dul.event_queue.put(event)
    except Exception:
        log.exception("unable to decode the received PDU")
        dul.event_queue.put("Evt19")
        return
    dul._recv_pdu.put(decoded)
