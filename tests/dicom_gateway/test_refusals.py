"""Malformed data is refused, never acknowledged; every refusal is audited with its real reason."""

from __future__ import annotations

import socket
import struct
import subprocess
from pathlib import Path

import pydicom
from pydicom.filereader import read_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicom_gateway.status import CANNOT_UNDERSTAND, SUCCESS
from tests.dicom_gateway.leftovers import holding_data
from tests.peers import Gateway, echo, tool, wait_for
from tests.support import bundled, c_store, ct_copies


def _send_raw(port: int, files: list[Path]) -> list[int | None]:
    """pynetdicom as the SCU, sending each file's bytes as they are (no decode, no repair)."""
    from pynetdicom import AE, _config

    ae = AE(ae_title="STORESCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    metas = [read_file_meta_info(f) for f in files]
    for sop_class in dict.fromkeys(m.MediaStorageSOPClassUID for m in metas):
        ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="EDGEAGENT")
    assert assoc.is_established
    chunked, _config.STORE_SEND_CHUNKED_DATASET = _config.STORE_SEND_CHUNKED_DATASET, True
    try:
        statuses = [getattr(assoc.send_c_store(f), "Status", None) for f in files]
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = chunked
        assoc.release()
    return statuses


def _cut(source: Path, target: Path, keep: int) -> Path:
    target.write_bytes(source.read_bytes()[:keep])
    return target


def _after_series_uid(data: bytes) -> int:
    """Where the element after (0020,000E) Series Instance UID starts, + 5: mid-header."""
    at = data.index(b"\x20\x00\x0e\x00UI")
    length = struct.unpack_from("<H", data, at + 6)[0]
    return at + 8 + length + 5


def _deeply_nested(target: Path, depth: int) -> Path:
    """A CT whose last element is `depth` nested sequences of undefined length."""
    ds = pydicom.dcmread(bundled("CT_small.dcm"), stop_before_pixels=True)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(target, enforce_file_format=True)
    down = struct.pack("<HH2sHL", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF) + struct.pack(
        "<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF
    )
    up = struct.pack("<HHL", 0xFFFE, 0xE00D, 0) + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    with open(target, "ab") as handle:
        handle.write(down * depth + up * depth)
    return target


def test_cut_and_garbled_datasets_are_refused_and_nothing_is_kept(tmp_path):
    gateway = Gateway(tmp_path / "gw")
    try:
        [whole] = ct_copies(tmp_path / "ct", 1, "whole")
        data = whole.read_bytes()
        bad = [
            _cut(whole, tmp_path / "in-pixels.dcm", len(data) - 1000),
            _cut(whole, tmp_path / "after-series.dcm", _after_series_uid(data)),
            _deeply_nested(tmp_path / "nested.dcm", 5000),
        ]
        statuses = _send_raw(gateway.port, [*bad, whole])
        assert statuses == [CANNOT_UNDERSTAND] * 3 + [SUCCESS]
        kept = {p.stem for p in (gateway.spool / "studies").rglob("*.dcm")}
        assert kept == {pydicom.dcmread(whole, stop_before_pixels=True).SOPInstanceUID}
        assert not holding_data(gateway.spool / "tmp")  # only the empty files created ahead
        refused = [e for e in gateway.audit() if e["event"] == "instance_refused"]
        reasons = [e["reason"] for e in refused]
        assert len(reasons) == 3 and all(r.startswith("malformed dataset: ") for r in reasons)
        assert "(7FE0,0010) declares 32768 bytes" in reasons[0] and "nested deeper" in reasons[2]
        assert "Traceback" not in gateway.logs() and "RecursionError" not in gateway.logs()
        assert echo(gateway.port, "EDGEAGENT", "ECHOSCU") == 0
    finally:
        gateway.stop()
    assert not list(gateway.spool.rglob("*.part"))


def test_every_rejection_is_audited_with_its_real_reason(tmp_path):
    gateway = Gateway(
        tmp_path / "gw",
        allowed=["STORESCU", "PINNED@10.9.9.9"],
        max_associations=1,
        handshake_timeout_s=2.0,
    )
    try:
        assert echo(gateway.port, "EDGEAGENT", "INTRUDER") != 0
        assert echo(gateway.port, "EDGEAGENT", "PINNED") != 0
        held = _held_association(gateway.port)
        try:
            limited = _echoscu(gateway.port, "ECHOSCU")
            assert limited.returncode != 0 and "Local Limit Exceeded" in limited.stderr
        finally:
            held.release()
        raw = socket.create_connection(("127.0.0.1", gateway.port), timeout=30)
        raw.sendall(b"\x01\x00\x00\x00\x01\x00")  # a header, then nothing
        wait_for(lambda: raw.recv(1) == b"", 30, "the silent connection to be closed")
        raw.close()
        malformed = pydicom.dcmread(bundled("MR_truncated.dcm"))
        malformed.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        [(_, status)] = list(c_store(gateway.port, [malformed]))
        assert status == CANNOT_UNDERSTAND

        def reasons():
            return {(e["event"], e.get("calling_ae"), e.get("reason")) for e in gateway.audit()}

        expected = {
            ("association_rejected", "INTRUDER", "calling AE title not allowed"),
            ("association_rejected", "PINNED", "address not allowed for AE"),
            ("association_rejected", "ECHOSCU", "association limit reached"),
            ("connection_refused", None, "A-ASSOCIATE not completed within the handshake timeout"),
        }
        wait_for(lambda: expected <= reasons(), 30, f"{expected - reasons()} in the audit")
        [refused] = [e for e in gateway.audit() if e["event"] == "instance_refused"]
        assert (
            refused["reason"]
            == "malformed dataset: Pixel Data holds 8130 bytes, the image needs 8192"
        )
    finally:
        gateway.stop()


def _held_association(port: int):
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title="STORESCU")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="EDGEAGENT")
    assert assoc.is_established
    return assoc


def _echoscu(port: int, calling: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tool("echoscu", "dcmtk"), "-aet", calling, "-aec", "EDGEAGENT", "127.0.0.1", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_admission_fails_closed_when_the_audit_cannot_be_written(tmp_path):
    # pynetdicom logs and swallows an error in the admission handler and would go on to accept:
    # a caller that is not allowed must still be refused when the audit write fails
    from dicom_gateway.index import SqliteIndex
    from dicom_gateway.listener import Listener
    from dicom_gateway.settings import GatewaySettings
    from dicom_gateway.spool import Spool
    from tests.peers import free_port

    def broken_audit(event: str, **fields) -> None:
        raise OSError(28, "No space left on device")

    settings = GatewaySettings(port=free_port(), allowed=("STORESCU",))
    listener = Listener(
        settings, Spool(tmp_path, SqliteIndex(tmp_path / "i.sqlite"), 1), broken_audit
    )
    listener.start()
    try:
        assert _associate(settings.port, "INTRUDER") == "rejected"  # an A-ASSOCIATE-RJ
        assert echo(settings.port, "EDGEAGENT", "STORESCU") == 0  # an allowed caller gets in
    finally:
        listener.stop()


def _associate(port: int, calling: str) -> str:
    """How an association request from `calling` ends: established, rejected or aborted."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.network_timeout = 10
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="EDGEAGENT")
    if assoc.is_established:
        assoc.release()
        return "established"
    return "rejected" if assoc.is_rejected else "aborted"
