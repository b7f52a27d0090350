"""Errors while a C-STORE is received in the DUL's thread: the peer hears an answer or an
A-ABORT, never silence, and the listener serves the next association."""

from __future__ import annotations

import shutil
import struct
import warnings

import pydicom
from pynetdicom import AE, evt
from pynetdicom.pdu import A_ABORT_RQ

from dicom_gateway.status import SUCCESS
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


def test_a_sop_instance_uid_that_is_not_ascii_is_still_answered(tmp_path):
    # pydicom decodes a received UID as Latin-1: the packed response leaves it to pynetdicom.
    listener, spool, port = listening(tmp_path / "spool")
    [path] = ct_copies(tmp_path / "ct", 1, "not-ascii")
    assoc, fragments = associated(port, path)
    assoc.dimse_timeout = 10
    try:
        with warnings.catch_warnings():  # pydicom warns of the UID that is not valid
            warnings.simplefilter("ignore")
            command, data = fragments(2**20, sop_instance="1.2.3.4\xe9")
        command.presentation_data_value_list = [
            list(pdv) for pdv in command.presentation_data_value_list
        ] + [list(pdv) for pdv in data.presentation_data_value_list]
        assert send_and_answer(assoc, [command]) == SUCCESS
        assert assoc.is_established
    finally:
        assoc.release()
        listener.stop()
    stored_as_sent(spool, path)  # under the data set's own UID, as sent


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
