"""DICOM bytes the receive path packs or reads itself instead of through pydicom: the file meta
of a streamed data set, the response to a C-STORE, and the command of a C-STORE request.

pynetdicom builds both as pydicom datasets, validated element by element (a response is written
twice to learn its group length): ~0.3 ms of the DUL thread per instance for the response alone,
as much as checking the whole received data set. Both carry the same few elements every time;
here they are packed directly, byte for byte what pynetdicom makes (tests/dicom_gateway/
test_pdu_guard.py compares them with pynetdicom's own). A response with anything more (a
comment, an offending element), a UID that is not plain ASCII (pydicom decodes a received one
as Latin-1) and every other message are left to pynetdicom.

A C-STORE request's command is read the same way: pynetdicom converts each element of the decoded
command set to its value, validating each UID three times on the way (~60 us an instance); a
plain request carries the same seven elements every time, read here with one unpack each
(`store_request`). A request with anything more (a C-MOVE originator), an element twice, a value
of another length or a UID that is not plain ASCII is left to pynetdicom."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import create_file_meta, encode_file_meta

STORE_RESPONSE = 0x8001  # (0000,0100) Command Field of a C-STORE-RSP
NO_DATA_SET = 0x0101  # (0000,0800) Command Data Set Type: no data set follows
LAST_COMMAND_FRAGMENT = b"\x03"  # message control header: command, last fragment
# A plain response sets none of these (its MessageID, set by pynetdicom, is not encoded): with
# any of them, pynetdicom encodes it.
UNSET = (
    "OffendingElement",
    "ErrorComment",
    "DataSet",
    "MoveOriginatorApplicationEntityTitle",
    "MoveOriginatorMessageID",
)
PREFIX = b"\x00" * 128 + b"DICM"  # a DICOM file's preamble and prefix
STORE_REQUEST = 0x0001  # (0000,0100) Command Field of a C-STORE-RQ
COMMAND_ELEMENT = struct.Struct("<HHL")  # group, element, value length (implicit VR LE)
# The elements of a plain C-STORE-RQ, each once, by element number in group 0000: group length
# (UL), Affected SOP Class UID, Command Field, Message ID, Priority, Command Data Set Type (US),
# Affected SOP Instance UID.
PLAIN_STORE_REQUEST = (0x0000, 0x0002, 0x0100, 0x0110, 0x0700, 0x0800, 0x1000)
US = struct.Struct("<H")  # an unsigned short value (Command Field, Message ID, Status, …)


@dataclass(frozen=True)
class StoreRequest:
    """A plain C-STORE request's command, each value as pydicom would decode it."""

    sop_class: str
    sop_instance: str
    message_id: int
    priority: int


def file_meta(sop_class: str, sop_instance: str, transfer_syntax: str) -> bytes:
    """Preamble, prefix and File Meta Information, byte for byte what pynetdicom's
    `encode_file_meta(create_file_meta(...))` gives, without building a pydicom dataset."""
    if not _plain(sop_class, sop_instance, transfer_syntax):
        return PREFIX + encode_file_meta(
            create_file_meta(
                sop_class_uid=sop_class,
                sop_instance_uid=sop_instance,
                transfer_syntax=transfer_syntax,
            )
        )
    elements = b"".join(
        (
            _explicit(0x0001, b"OB", b"\x00\x01"),
            _explicit(0x0002, b"UI", _uid(sop_class)),
            _explicit(0x0003, b"UI", _uid(sop_instance)),
            _explicit(0x0010, b"UI", _uid(transfer_syntax)),
            _explicit(0x0012, b"UI", _uid(PYNETDICOM_IMPLEMENTATION_UID)),
            _explicit(0x0013, b"SH", _padded(PYNETDICOM_IMPLEMENTATION_VERSION.encode(), b" ")),
        )
    )
    group_length = _explicit(0x0000, b"UL", struct.pack("<L", len(elements)))
    return PREFIX + group_length + elements


def _explicit(element: int, vr: bytes, value: bytes) -> bytes:
    if vr == b"OB":
        return struct.pack("<HH2sHL", 2, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", 2, element, vr, len(value)) + value


def _plain(*uids: object) -> bool:
    """Whether every UID is plain ASCII, as packed here."""
    return all(str(uid).isascii() for uid in uids)


def _uid(value: str) -> bytes:
    return _padded(str(value).encode("ascii"), b"\x00")


def _padded(value: bytes, pad: bytes) -> bytes:
    return value + pad if len(value) % 2 else value


def store_response(primitive) -> bytes | None:
    """The presentation data value (message control header and command set) of a C-STORE
    response that carries a status and nothing else; None for every other message."""
    if type(primitive) is not C_STORE or primitive.MessageIDBeingRespondedTo is None:
        return None
    sop_class, sop_instance = primitive.AffectedSOPClassUID, primitive.AffectedSOPInstanceUID
    status = primitive.Status
    if sop_class is None or sop_instance is None or type(status) is not int:
        return None
    if not _plain(sop_class, sop_instance):
        return None
    if not 0 <= status <= 0xFFFF:
        return None
    if any(getattr(primitive, keyword) is not None for keyword in UNSET):
        return None
    elements = b"".join(
        (
            _command(0x0002, _uid(sop_class)),
            _command(0x0100, US.pack(STORE_RESPONSE)),
            _command(0x0120, US.pack(primitive.MessageIDBeingRespondedTo)),
            _command(0x0800, US.pack(NO_DATA_SET)),
            _command(0x0900, US.pack(status)),
            _command(0x1000, _uid(sop_instance)),
        )
    )
    return LAST_COMMAND_FRAGMENT + _command(0x0000, struct.pack("<L", len(elements))) + elements


def _command(element: int, value: bytes) -> bytes:
    """Group 0000, implicit VR little endian, as every command set is encoded."""
    return COMMAND_ELEMENT.pack(0x0000, element, len(value)) + value


def store_request(command: bytes) -> StoreRequest | None:
    """The command of a plain C-STORE request (its encoded command set); None for any other
    command, which pynetdicom decodes as it always does."""
    values: dict[int, bytes] = {}
    position = 0
    while position < len(command):
        if position + COMMAND_ELEMENT.size > len(command):
            return None
        group, element, length = COMMAND_ELEMENT.unpack_from(command, position)
        position += COMMAND_ELEMENT.size
        if group != 0 or element in values or position + length > len(command):
            return None
        values[element] = command[position : position + length]
        position += length
    if tuple(sorted(values)) != PLAIN_STORE_REQUEST or len(values[0x0000]) != 4:
        return None
    # Command Data Set Type is checked for its length only: its value is read by the reactor
    # from pynetdicom's command set.
    numbers = [values[element] for element in (0x0100, 0x0110, 0x0700, 0x0800)]
    if any(len(value) != US.size for value in numbers):
        return None
    field, message_id, priority = (US.unpack(value)[0] for value in numbers[:3])
    sop_class, sop_instance = _received_uid(values[0x0002]), _received_uid(values[0x1000])
    if field != STORE_REQUEST or not sop_class or not sop_instance:
        return None
    return StoreRequest(sop_class, sop_instance, message_id, priority)


def _received_uid(value: bytes) -> str | None:
    """A received UID as pydicom decodes one (trailing NULs and spaces dropped, then the
    surrounding whitespace); None when it is not plain ASCII or holds several values."""
    if not value.isascii() or b"\\" in value:
        return None
    return value.decode("ascii").rstrip("\0 ").strip()
