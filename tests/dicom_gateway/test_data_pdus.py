"""The PDUs that only continue a streamed data set are written from the received bytes, past
pynetdicom's decoding, and only while nothing listens for what that bypass skips."""

from __future__ import annotations

from pynetdicom import evt

from dicom_gateway.reactor import WakingDUL
from dicom_gateway.status import SUCCESS
from tests.dicom_gateway.scp import associated, listening, send_and_answer, stored_as_sent
from tests.support import ct_copies

P_DATA_TF = 0x04


def _store_in_pdus(tmp_path, before_sending=lambda listener: None) -> tuple[int, int]:
    """One CT in data PDUs of 2 KiB; (data PDUs sent, P-DATA PDUs the listener decoded)."""
    decoded: list[int] = []
    original = WakingDUL._decode_pdu

    def counting(dul, data):
        decoded.append(data[0])
        return original(dul, data)

    listener, spool, port = listening(tmp_path / "spool")
    [path] = ct_copies(tmp_path / "ct", 1, "fast-path")
    assoc, fragments = associated(port, path)
    WakingDUL._decode_pdu = counting
    try:
        command, *data = fragments(2048)
        before_sending(listener)
        assert send_and_answer(assoc, [command, *data]) == SUCCESS
    finally:
        WakingDUL._decode_pdu = original
        assoc.release()
        listener.stop()
    stored_as_sent(spool, path)
    return len(data), decoded.count(P_DATA_TF)


def test_data_pdus_that_continue_a_data_set_bypass_pynetdicoms_decoding(tmp_path):
    sent, decoded = _store_in_pdus(tmp_path)
    # The command's PDU is decoded; a data PDU only when it raced ahead of the command's turn.
    assert sent > 15 and decoded <= 3


def test_a_handler_of_state_machine_transitions_sees_every_data_pdu(tmp_path):
    transitions: list[str] = []

    def bind(listener) -> None:
        listener._server.bind(
            evt.EVT_FSM_TRANSITION, lambda event: transitions.append(event.fsm_event)
        )

    sent, decoded = _store_in_pdus(tmp_path, bind)
    assert decoded == sent + 1  # the command's PDU, then each data PDU: pynetdicom's way
    assert transitions.count("Evt10") == sent + 1
