"""Errors while a C-STORE is received in the DUL's thread: the peer hears an answer or an
A-ABORT, never silence, and the listener serves the next association."""

from __future__ import annotations

import shutil
import struct
import warnings
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE, evt
from pynetdicom.pdu import A_ABORT_RQ

from dicom_gateway.spool import Spool
from dicom_gateway.status import DATA_SET_MISMATCH, SUCCESS
from tests.dicom_gateway.leftovers import holding_data
from tests.dicom_gateway.scp import (
    associated,
    cut_by,
    listening,
    send_and_answer,
    stored_as_sent,
)
from tests.peers import wait_for
from tests.support import c_store, ct_copies


def _heard(assoc) -> list:
    """The PDUs the peer receives on this association from now on."""
    heard: list = []
    assoc.bind(evt.EVT_PDU_RECV, lambda event: heard.append(event.pdu))
    return heard


def _sent_as(tmp_path, max_pdu: int, sop_instance: str) -> tuple[int, Path, Spool]:
    """A CT's C-STORE whose request names `sop_instance`, its command and data set in PDUs of
    at most `max_pdu` bytes (as one PDU when it is over the whole message); then the same CT
    sent as itself. The first status, the CT and the spool; the refusal is audited with its
    status and reason."""
    events: list[tuple[str, dict]] = []
    audit = lambda event, **fields: events.append((event, fields))  # noqa: E731
    listener, spool, port = listening(tmp_path / "spool", audit=audit)
    [path] = ct_copies(tmp_path / "ct", 1, "sent-as")
    assoc, fragments = associated(port, path)
    assoc.dimse_timeout = 10
    try:
        with warnings.catch_warnings():  # pydicom warns of a UID that is not valid
            warnings.simplefilter("ignore")
            pdus = fragments(max_pdu, sop_instance=sop_instance)
        if len(pdus) == 2:  # the data set in the command's PDU: it is not streamed
            command, data = pdus
            command.presentation_data_value_list = [
                list(pdv) for pdv in command.presentation_data_value_list
            ] + [list(pdv) for pdv in data.presentation_data_value_list]
            pdus = [command]
        status = send_and_answer(assoc, pdus)
        assert assoc.is_established
        assert not list((spool.root / "studies").rglob("*.dcm"))
        assert not holding_data(spool.root / "tmp")
        assert [status for _, status in c_store(port, [path])] == [SUCCESS]  # still serving
    finally:
        assoc.release()
        listener.stop()
    [refused] = [fields for event, fields in events if event == "instance_refused"]
    assert refused["status"] == f"0x{status:04X}" and "it was sent as" in refused["reason"]
    return status, path, spool


@pytest.mark.parametrize("max_pdu", [8192, 2**20], ids=["streamed", "one-pdu"])
def test_a_data_set_that_is_not_the_instance_its_request_names_is_refused(tmp_path, max_pdu):
    # dcmtk's storescp answers so: a file kept under the request's UID would not be the data
    # set's own (its file meta and its data set would name two instances)
    status, path, spool = _sent_as(tmp_path, max_pdu, "1.2.826.0.1.3680043.8.498.1")
    assert status == DATA_SET_MISMATCH
    stored_as_sent(spool, path)  # only the copy sent as itself


def test_a_sop_instance_uid_that_is_not_ascii_is_answered(tmp_path):
    # pydicom decodes a received UID as Latin-1: the packed response leaves it to pynetdicom.
    status, path, spool = _sent_as(tmp_path, 2**20, "1.2.3.4\xe9")
    assert status == DATA_SET_MISMATCH
    stored_as_sent(spool, path)


def test_a_c_store_on_a_context_that_was_not_accepted_is_aborted(tmp_path):
    listener, spool, port = listening(tmp_path / "spool")
    [path] = ct_copies(tmp_path / "ct", 1, "not-accepted")
    assoc, fragments = associated(port, path)
    heard = _heard(assoc)
    try:
        command, *data = fragments(8192)
        [[context_id, value]] = command.presentation_data_value_list
        command.presentation_data_value_list = [[context_id + 2, value]]  # never proposed
        for pdu in [command, *data[:2]]:
            assoc.dul.send_pdu(pdu)
        wait_for(lambda: not assoc.is_established, 10, "the association to be aborted")
        assert any(isinstance(pdu, A_ABORT_RQ) for pdu in heard)
        assert [status for _, status in c_store(port, [path])] == [SUCCESS]  # still serving
    finally:
        listener.stop()
    assert not list((spool.root / "tmp").iterdir())


def test_a_file_that_cannot_be_created_mid_association_aborts_it(tmp_path):
    # The temporary folder removed under a live listener: no file for the next data set.
    listener, spool, port = listening(tmp_path / "spool")
    files = ct_copies(tmp_path / "ct", 2, "no-file")
    ae = AE(ae_title="STORESCU")
    ae.add_requested_context(pydicom.dcmread(files[0]).SOPClassUID)
    ae.dimse_timeout = 30
    assoc = ae.associate("127.0.0.1", port, ae_title="EDGEAGENT")
    heard = _heard(assoc)
    try:
        assert assoc.send_c_store(files[0]).Status == SUCCESS
        shutil.rmtree(spool.root / "tmp")
        assoc.send_c_store(files[1])
        assert any(isinstance(pdu, A_ABORT_RQ) for pdu in heard)  # not its own timeout
        (spool.root / "tmp").mkdir()
        assert [status for _, status in c_store(port, files[1:])] == [SUCCESS]  # still serving
    finally:
        if assoc.is_established:
            assoc.abort()
        listener.stop()


def test_a_data_fragment_on_another_context_than_its_message_is_aborted(tmp_path):
    body = struct.pack(">LBB", 2 + 500, 3, 0x00) + b"\0" * 500  # context 3, not the message's 1
    cut_by(tmp_path, struct.pack(">BBL", 0x04, 0, len(body)) + body, data_pdus=2)
