"""A listener on a loopback port, and a pynetdicom peer that sends a C-STORE PDU by PDU: what
the tests of the C-STORE path share."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pydicom

from dicom_gateway.index import Index, SqliteIndex
from dicom_gateway.listener import Listener
from dicom_gateway.settings import GatewaySettings
from dicom_gateway.spares import AHEAD
from dicom_gateway.spool import Spool
from dicom_gateway.status import SUCCESS
from tests.dicom_gateway.leftovers import holding_data
from tests.peers import free_port, wait_for
from tests.support import c_store, ct_copies


def listening(
    root: Path,
    index: Index | None = None,
    spool_class: type[Spool] = Spool,
    spares_ready: bool = False,
    audit=None,
    **settings,
) -> tuple[Listener, Spool, int]:
    """A started listener on a free port, its spool in `root` (indexed in SQLite there unless
    `index` is given); `spares_ready`: once its files created ahead are all there; `audit`: told
    each event (else none is kept). `settings`: GatewaySettings beside the port and spool."""
    root.mkdir(exist_ok=True)
    if index is None:
        index = SqliteIndex(root / "index.sqlite")
    spool = spool_class(root, index, min_free_mb=1)
    chosen = GatewaySettings(port=free_port(), spool_dir=str(root), **settings)
    listener = Listener(chosen, spool, audit or (lambda event, **fields: None))
    listener.start()
    if spares_ready:
        wait_for(lambda: len(list((root / "tmp").glob("*.part"))) == AHEAD, 10, "the spare files")
    return listener, spool, chosen.port


def associated(port: int, path: Path):
    """A pynetdicom association for the file's SOP class, and the P-DATA of its C-STORE
    (command first, then the data set) in PDUs of at most `max_pdu` bytes."""
    from pynetdicom import AE

    ds = pydicom.dcmread(path)
    ae = AE(ae_title="STORESCU")
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="EDGEAGENT")
    assert assoc.is_established

    def fragments(max_pdu: int, sop_instance: str | None = None) -> list:
        from pynetdicom.dimse_messages import C_STORE_RQ
        from pynetdicom.dimse_primitives import C_STORE

        request = C_STORE()
        request.MessageID, request.Priority = 1, 2
        request.AffectedSOPClassUID = ds.SOPClassUID
        request.AffectedSOPInstanceUID = sop_instance or ds.SOPInstanceUID
        whole = path.read_bytes()
        request.DataSet = BytesIO(whole[whole.index(b"\x08\x00\x05\x00") :])  # after the meta
        message = C_STORE_RQ()
        message.primitive_to_message(request)
        [context] = assoc.accepted_contexts
        return list(message.encode_msg(context.context_id, max_pdu))

    return assoc, fragments


def send_and_answer(assoc, pdus) -> int:
    """Send these P-DATA PDUs on the association; the status of the C-STORE response."""
    assoc._reactor_checkpoint.clear()  # the response is ours to read, as send_c_store does
    wait_for(lambda: assoc._is_paused, 10, "the requestor's reactor to pause", every=0.01)
    for pdu in pdus:
        assoc.dul.send_pdu(pdu)
    _, response = assoc.dimse.get_msg(block=True)
    assoc._reactor_checkpoint.set()
    return response.Status


def stored_as_sent(spool: Spool, *paths: Path) -> None:
    """Exactly the instances of `paths` are indexed, each file as it was sent."""
    rows = spool.index.read("SELECT path FROM instances")
    stored = {ds.SOPInstanceUID: ds for ds in (pydicom.dcmread(row["path"]) for row in rows)}
    sent = {ds.SOPInstanceUID: ds for ds in map(pydicom.dcmread, paths)}
    assert stored.keys() == sent.keys()
    assert all(stored[uid].PixelData == sent[uid].PixelData for uid in sent)


def cut_by(tmp_path: Path, bad_pdu: bytes, data_pdus: int) -> None:
    """A CT's C-STORE command and first `data_pdus` data PDUs, then, once they are on disk,
    `bad_pdu`: the data set must go, nothing be stored, the listener serve on (the same
    instance sent again is stored, once, as sent)."""
    listener, spool, port = listening(tmp_path / "spool")
    [path] = ct_copies(tmp_path / "ct", 1, "cut-by-a-bad-pdu")
    assoc, fragments = associated(port, path)
    try:
        command, *data = fragments(8192)
        for pdu in [command, *data[:data_pdus]]:
            assoc.dul.send_pdu(pdu)
        sent = sum(
            len(v) - 1 for pdu in data[:data_pdus] for _, v in pdu.presentation_data_value_list
        )

        def streamed() -> bool:  # all of them in: the bad one comes after them
            return any(p.stat().st_size > sent for p in holding_data(spool.root / "tmp"))

        wait_for(streamed, 10, "the data PDUs on disk")
        assoc.dul.socket.send(bad_pdu)
        wait_for(lambda: not assoc.is_established, 10, "the association to be aborted")
        wait_for(lambda: not holding_data(spool.root / "tmp"), 10, "the cut data set to go")
        assert not list((spool.root / "studies").rglob("*.dcm"))
        assert [status for _, status in c_store(port, [path])] == [SUCCESS]  # still serving
    finally:
        listener.stop()
    stored_as_sent(spool, path)  # the good copy alone
