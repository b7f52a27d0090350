"""The guard's slot counting, and the pynetdicom members it and reactor.py override or rely on,
pinned."""

from __future__ import annotations

import hashlib
import inspect
import operator
import struct

import pytest

from dicom_gateway import pdu_guard
from dicom_gateway.settings import GatewaySettings

# Each member dicom_gateway/pdu_guard.py replaces, copies or depends on, with the SHA-256 (first
# 16 hex digits) of its source in pynetdicom 3.0.4. A new pynetdicom that changes one fails here:
# re-read that member, adapt pdu_guard.py, then record the new hash.
PINNED = {
    "transport.RequestHandler.handle": "034823fb4df3a874",  # replaced: holds the slot
    "transport.RequestHandler._create_association": "05c8d12b79863cdb",  # copied
    "transport.AssociationServer.get_request": "925a4f3a3042f6e4",  # replaced: TLS off accept
    "transport.AssociationServer.shutdown": "e8e2c3a41009886d",  # bypassed: AE bookkeeping
    "transport.AssociationSocket.recv": "6bc20a33b1b7cfe7",  # replaced: timeouts, PDU caps
    "transport.AssociationSocket.ready": "3eb58e3d39dc076d",  # relied on before reactor's select
    "dul.DULServiceProvider._read_pdu_data": "19f2d4e38c13c835",  # recv(6), then the body
    "association.Association.run_reactor": "ed8bbbe3b3d6ddae",  # a None request ends the wait
    "association.ServiceUser.writeable": "23590ca1ce9969c3",  # contexts set at EVT_REQUESTED
    # Reads our contexts, builds new ones for its results: one list serves every association.
    "presentation.negotiate_as_acceptor": "d5413f08f0ac7b32",
}
# The same for dicom_gateway/reactor.py (the waking loops and the streamed C-STORE data set),
# data_pdus.py and dimse_bytes.py.
PINNED.update(
    {
        "dul.DULServiceProvider.__init__": "c82dafa9438ddf70",  # its queues, replaced
        "dul.DULServiceProvider.run_reactor": "e3a10eb3a0931e48",  # copied, select for sleep
        "dul.DULServiceProvider.stop_dul": "28a7e0be126e7b30",  # sets _kill_thread: wakes us
        "dul.DULServiceProvider.kill_dul": "5ceccf8dd01c2072",  # sets _kill_thread: wakes us
        # reads when ready; overridden: right after our wait saw the peer's bytes, reads them
        "dul.DULServiceProvider._is_transport_event": "8725ed03bb8fbdef",
        "association.Association.__init__": "eb07516b8009ad8f",  # dul and dimse, replaced
        "association.Association._run_reactor": "f28838c5559e462a",  # copied, wait for sleep
        "dimse.DIMSEServiceProvider.receive_primitive": "5f99c86b14a15cef",  # wrapped
        "dimse_messages.DIMSEMessage.decode_msg": "f51c777e841a76be",  # writes _data_set_file
        "dimse_messages.DIMSEMessage.message_to_primitive": "f8f43d34e43450ef",  # path handed on
        "service_class.StorageServiceClass.SCP": "63afca7fc6c6e7ee",  # closes, unlinks after
        "events.Event.dataset_path": "7eba7552ff800249",  # where the handler finds the file
        # C-STORE and C-ECHO are served in the DUL's thread: neither may wait for the DUL.
        "association.Association._serve_request": "2f24c1759cdf6c8c",
        "service_class.VerificationServiceClass.SCP": "d30d511f87d0268d",
        # data_pdus.py: a PDU that only continues a streamed data set bypasses DT_2 (in Sta6 it
        # only hands the primitive to DIMSE); any other it decodes as _read_pdu_data does.
        "fsm.DT_2": "9ec543394e0b49eb",
        "dul.DULServiceProvider._decode_pdu": "fc71dd1bf853e1ce",
        # listener.py: its standard log handlers are bound, or not, when the server is made.
        "transport.AssociationServer._bind_defaults": "4cada43c3a193724",
        # A plain C-STORE response is packed by dimse_bytes.py, within the peer's PDU size;
        # everything else goes through send_msg.
        "dimse.DIMSEServiceProvider.maximum_pdu_size": "600fc7073d35ccd6",
        "dimse.DIMSEServiceProvider.send_msg": "a839cf2fb46976d9",
        # DIMSEServiceProvider.message (set there) is the message data_pdus.py continues; it
        # reads and builds P_DATA.presentation_data_value_list.
        "dimse.DIMSEServiceProvider.__init__": "bbecd186810e7700",
        "pdu_primitives.P_DATA.presentation_data_value_list": "9f2d171cdd1e929b",
        # reactor.py: an action's error is re-raised after kill_dul, into the reactor's guard;
        # an invalid message (Evt19 in Sta6) is answered with an A-ABORT.
        "fsm.StateMachine.do_action": "9a883f44c7f31641",
        "fsm.AA_8": "06c83317f08831fd",
    }
)


@pytest.mark.parametrize(("member", "digest"), PINNED.items())
def test_the_pynetdicom_members_the_guard_relies_on_are_unchanged(member, digest):
    import importlib

    module, path = member.split(".", 1)
    owner = importlib.import_module(f"pynetdicom.{module}")
    found = operator.attrgetter(path)(owner)
    source = inspect.getsource(found.fget if isinstance(found, property) else found)
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == digest, (
        f"pynetdicom's {member} changed: re-check dicom_gateway/pdu_guard.py against it"
    )


def test_the_state_machine_hands_a_data_pdu_in_sta6_to_dimse_and_an_invalid_one_aborts():
    from pynetdicom import fsm

    # data_pdus.py stands in for exactly this transition; Evt19 is its abort.
    assert fsm.TRANSITION_TABLE[("Evt10", "Sta6")] == "DT-2"
    assert fsm.TRANSITION_TABLE[("Evt19", "Sta6")] == "AA-8"


def test_a_store_response_has_no_element_the_packed_one_leaves_out():
    from pynetdicom.dimse_messages import _COMMAND_SET_KEYWORDS

    from dicom_gateway.dimse_bytes import UNSET

    packed = {
        "CommandGroupLength",
        "AffectedSOPClassUID",
        "CommandField",
        "MessageIDBeingRespondedTo",
        "CommandDataSetType",
        "Status",
        "AffectedSOPInstanceUID",
    }
    assert set(_COMMAND_SET_KEYWORDS["C-STORE-RSP"]) - packed <= set(UNSET)


def _guard(refused: list, pending: int = 2, associations: int = 1) -> pdu_guard.Guard:
    limits = pdu_guard.Limits(pending, pending, associations, 1.0, 5.0, 65536)
    return pdu_guard.Guard(limits, on_refused=lambda reason, address: refused.append(reason))


def test_pending_and_association_slots_are_counted_apart():
    refused: list[str] = []
    guard = _guard(refused)
    address = ("10.0.0.9", 4000)
    assert guard.admit(address) and guard.admit(address)
    assert not guard.admit(address) and refused == ["pending connection limit reached"]
    first, second = pdu_guard.Connection(guard, address), pdu_guard.Connection(guard, address)
    assert first.promote() and (guard.pending, guard.associations) == (1, 1)
    assert guard.admit(address)  # an association leaves its pending slot free
    assert not second.promote()  # the association limit, not the pending cap
    for connection in (first, second, first):  # closing twice frees once
        connection.close()
    assert (guard.pending, guard.associations) == (1, 0)


def test_one_address_cannot_take_every_pending_slot():
    refused: list[str] = []
    limits = pdu_guard.Limits(4, 2, 4, 1.0, 5.0, 65536)
    guard = pdu_guard.Guard(limits, on_refused=lambda reason, address: refused.append(reason))
    scanner, pacs = ("10.0.0.66", 5000), ("10.0.0.2", 104)
    assert [guard.admit(scanner) for _ in range(3)] == [True, True, False]
    assert refused == ["pending connection limit for this address reached"]
    assert guard.admit(pacs) and guard.admit(pacs) and guard.pending == 4


def test_a_pending_connection_reads_no_later_than_its_handshake_deadline():
    guard = _guard([])
    connection = pdu_guard.Connection(guard, ("10.0.0.9", 4000))
    assert 0 < connection.timeout() <= 1.0
    guard.admit(("10.0.0.9", 4000))
    assert connection.promote() and connection.timeout() == 5.0


@pytest.mark.parametrize(
    "values",
    [
        {"max_pdu": 0},  # "unlimited" would turn the length check off
        {"max_associations": 0},
        {"max_pending": 0},
        {"max_pending": 8, "max_pending_per_address": 9},
        {"handshake_timeout_s": 0},
        {"handshake_timeout_s": 90.0, "network_timeout_s": 60.0},
    ],
)
def test_limits_that_would_lock_out_or_disarm_the_guard_are_refused(values):
    with pytest.raises(ValueError):
        GatewaySettings(**values)


@pytest.mark.parametrize(
    ("sop_class", "sop_instance", "transfer_syntax"),
    [
        ("1.2.840.10008.5.1.4.1.1.2", "1.2.3.45", "1.2.840.10008.1.2.1"),  # odd: padded
        ("1.2.840.10008.5.1.4.1.1.77.1.1.1", "1.2.3.4", "1.2.840.10008.1.2.4.50"),
        ("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4\xe9", "1.2.840.10008.1.2.1"),  # not ASCII
    ],
)
def test_the_streamed_file_meta_is_pynetdicoms_byte_for_byte(
    sop_class, sop_instance, transfer_syntax
):
    import warnings

    from pynetdicom.dsutils import create_file_meta, encode_file_meta

    from dicom_gateway.dimse_bytes import file_meta

    with warnings.catch_warnings():  # pydicom warns of a UID that is not valid, and keeps it
        warnings.simplefilter("ignore")
        theirs = encode_file_meta(
            create_file_meta(
                sop_class_uid=sop_class,
                sop_instance_uid=sop_instance,
                transfer_syntax=transfer_syntax,
            )
        )
        ours = file_meta(sop_class, sop_instance, transfer_syntax)
    assert ours == b"\x00" * 128 + b"DICM" + theirs


def _store_response(status: int, sop_instance: str, comment: str | None = None):
    import warnings

    from pynetdicom.dimse_primitives import C_STORE

    response = C_STORE()  # as pynetdicom's StorageServiceClass.SCP makes it
    response.MessageID = response.MessageIDBeingRespondedTo = 7
    response.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    with warnings.catch_warnings():  # pydicom warns of a UID that is not valid, and keeps it
        warnings.simplefilter("ignore")
        response.AffectedSOPInstanceUID = sop_instance
    response.Status = status
    if comment is not None:
        response.ErrorComment = comment
    return response


@pytest.mark.parametrize(
    ("status", "sop_instance"),
    [
        (0x0000, "1.2.3.45"),
        (0xA700, "1.2.3.4"),
        (0xC000, "1.2.826.0.1.3680043.8.498.1"),
        (0x0110, "9"),
    ],
)
def test_a_packed_store_response_is_pynetdicoms_byte_for_byte(status, sop_instance):
    from pynetdicom.dimse_messages import C_STORE_RSP

    from dicom_gateway.dimse_bytes import store_response

    response = _store_response(status, sop_instance)
    message = C_STORE_RSP()
    message.primitive_to_message(response)
    [pdata] = message.encode_msg(1, 16384)
    [(context_id, theirs)] = pdata.presentation_data_value_list
    assert store_response(response) == theirs and context_id == 1


def test_a_response_with_more_than_a_status_is_left_to_pynetdicom():
    from pynetdicom.dimse_primitives import C_ECHO

    from dicom_gateway.dimse_bytes import store_response

    assert store_response(_store_response(0xC000, "1.2.3", comment="disk full")) is None
    # A received UID pydicom decoded as Latin-1, not ASCII: encoded as pynetdicom encodes it.
    assert store_response(_store_response(0x0000, "1.2.3.4\xe9")) is None
    echo = C_ECHO()
    echo.MessageIDBeingRespondedTo, echo.Status = 1, 0
    assert store_response(echo) is None


def _received_store_request(elements: dict[str, object]):
    """A C-STORE-RQ as pynetdicom decodes it off the wire: its command set encoded from
    `elements` (keyword: value), then a data set fragment."""
    import warnings

    from pydicom.dataset import Dataset
    from pynetdicom.dimse_messages import DIMSEMessage
    from pynetdicom.dsutils import encode
    from pynetdicom.pdu_primitives import P_DATA

    command = Dataset()
    command.CommandGroupLength = 0
    with warnings.catch_warnings():  # pydicom warns of a UID that is not valid, and keeps it
        warnings.simplefilter("ignore")
        for keyword, value in elements.items():
            setattr(command, keyword, value)
    command.CommandGroupLength = len(encode(command, True, True)) - 12
    message = DIMSEMessage()
    for control, value in ((b"\x03", encode(command, True, True)), (b"\x02", b"\x08\x00")):
        pdata = P_DATA()
        pdata.presentation_data_value_list = [[3, control + value]]
        message.decode_msg(pdata)
    return message


PLAIN = {
    "AffectedSOPClassUID": "1.2.840.10008.5.1.4.1.1.2",
    "CommandField": 0x0001,
    "MessageID": 7,
    "Priority": 2,
    "CommandDataSetType": 0x0000,
    "AffectedSOPInstanceUID": "1.2.826.0.1.3680043.8.498.1",
}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"AffectedSOPInstanceUID": "1.2.3.45", "Priority": 0},  # odd: padded with a NUL
        {"AffectedSOPInstanceUID": "1.2.3.4 ", "MessageID": 65535, "Priority": 1},  # a space
        {"CommandDataSetType": 0x0102},  # any value but 0x0101: a data set follows
    ],
)
def test_a_plain_store_request_becomes_pynetdicoms_primitive(changes):
    from dicom_gateway.dimse_bytes import store_request
    from dicom_gateway.reactor import _store_primitive

    message = _received_store_request(PLAIN | changes)
    encoded = message.encoded_command_set.getvalue()
    request = store_request(encoded)
    assert request is not None
    # The same plain command, spoilt: each is left to pynetdicom.
    assert store_request(encoded[:-1]) is None  # cut short
    priority_again = struct.pack("<HHLH", 0x0000, 0x0700, 2, 2)
    assert store_request(encoded + priority_again) is None  # an element twice
    assert store_request(encoded + b"\x00" * 4) is None  # junk after the last element
    ours, theirs = _store_primitive(message, request), message.message_to_primitive()
    assert type(ours) is type(theirs)
    for name in (
        "MessageID",
        "AffectedSOPClassUID",
        "AffectedSOPInstanceUID",
        "Priority",
        "MoveOriginatorApplicationEntityTitle",
        "MoveOriginatorMessageID",
        "DataSet",
        "_context_id",
        "_dataset_path",
        "_dataset_file",
    ):
        assert getattr(ours, name) == getattr(theirs, name), name


@pytest.mark.parametrize(
    "changes",
    [
        {"MoveOriginatorApplicationEntityTitle": "MOVESCU", "MoveOriginatorMessageID": 3},
        {"AffectedSOPInstanceUID": "1.2.3.4\xe9"},  # pydicom decodes it as Latin-1
        {"AffectedSOPInstanceUID": "1.2.3\\4.5"},  # two values: pynetdicom warns, takes one
        {"CommandField": 0x0030},  # a C-ECHO-RQ
    ],
)
def test_a_store_request_with_more_than_the_plain_command_is_left_to_pynetdicom(changes):
    from dicom_gateway.dimse_bytes import store_request

    message = _received_store_request(PLAIN | changes)
    encoded = message.encoded_command_set.getvalue()
    assert store_request(encoded) is None
