"""Where the outbox sends: only to configured destinations, in a transfer syntax they accept;
against real dcmtk `storescp` peers."""

from __future__ import annotations

import json
import logging
import shutil

import pydicom

from dicom_gateway.audit import Audit
from dicom_gateway.index import SqliteIndex
from dicom_gateway.outbox import Outbox, undelivered
from dicom_gateway.settings import GatewaySettings
from edge_agent.config import Config
from edge_agent.read import read_study
from edge_agent.sample import write_sample_study
from tests.dicom_gateway.storescp import StoreScp
from tests.support import bundled, ct_copies, run_cli


def test_results_for_a_removed_destination_are_held_and_sent_once_it_is_configured_again(
    tmp_path, caplog
):
    removed, kept = StoreScp(tmp_path / "removed"), StoreScp(tmp_path / "kept")
    try:
        (tmp_path / "spool").mkdir()
        index = SqliteIndex(tmp_path / "spool" / "index.sqlite")
        audit = Audit(tmp_path / "audit.jsonl")
        before = Outbox(index, GatewaySettings(destinations=(removed.node,)), audit)
        with index.write() as db:
            before.add_in(db, None, before.identify(ct_copies(tmp_path / "ct", 3, "removed")))
        now = GatewaySettings(destinations=(kept.node,), spool_dir=str(tmp_path / "spool"))
        outbox = Outbox(index, now, audit)
        with caplog.at_level(logging.WARNING, logger="dicom_gateway.outbox"):
            outbox.warn_held()
        [warning] = caplog.messages
        assert f"3 result(s) queued for {removed.node} are held" in warning
        assert [outbox.send_due() for _ in range(2)] == [0, 0]
        assert removed.received() == [] and kept.received() == []  # neither was contacted
        assert {row.state for row in undelivered(index, [kept.node])} == {"held"}
        config = tmp_path / "edge-agent.toml"
        config.write_text(
            f"[gateway]\nspool_dir = {json.dumps(now.spool_dir)}\n"
            f"destinations = [{json.dumps(kept.node)}]\n"
        )
        listed = run_cli("pacs", "outbox", "--config", config)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.count("held") == 3 and removed.node in listed.stdout
        status = run_cli("pacs", "status", "--config", config)
        assert status.returncode == 0, status.stderr
        assert "results waiting to be sent: 0\n" in status.stdout
        assert "results held (destination no longer configured): 3\n" in status.stdout
        again = Outbox(index, GatewaySettings(destinations=(removed.node,)), audit)
        assert again.send_due() == 3  # nothing was lost while it was held
        assert len(removed.received()) == 3 and kept.received() == []
    finally:
        removed.stop()
        kept.stop()


def test_every_result_reaches_a_pacs_that_takes_implicit_vr_little_endian_only(tmp_path):
    """The objects of a real read (SR, SEG, KO in Explicit VR, captures in Implicit VR) reach
    `storescp +xi`; a JPEG file, which is not re-encoded, waits with the reason."""
    result = read_study(write_sample_study(tmp_path / "study"), tmp_path / "out", Config())
    compressed = tmp_path / "jpeg.dcm"
    shutil.copy(bundled("SC_rgb_jpeg_dcmtk.dcm"), compressed)
    pacs = StoreScp(tmp_path / "pacs", "+xi")
    try:
        (tmp_path / "spool").mkdir()
        index = SqliteIndex(tmp_path / "spool" / "index.sqlite")
        outbox = Outbox(
            index, GatewaySettings(destinations=(pacs.node,)), Audit(tmp_path / "audit.jsonl")
        )
        with index.write() as db:
            outbox.add_in(db, None, outbox.identify([*result.dicom, compressed]))
        assert outbox.send_due() == len(result.dicom)
        received = {str(pydicom.dcmread(p).SOPInstanceUID) for p in pacs.received()}
        assert received == {str(pydicom.dcmread(p).SOPInstanceUID) for p in result.dicom}
        [waiting] = undelivered(index)
        assert waiting.last_error == (
            f"{pacs.node} accepted the association but no presentation context for "
            "Secondary Capture Image Storage in JPEG Baseline (Process 1)"
        )
        with index.write() as db:  # alone in its association: the peer accepts no context
            db.execute("UPDATE outbox SET next_try = 0")
        assert outbox.send_due() == 0
        [waiting] = undelivered(index)
        assert waiting.attempts == 2 and "accepted the association but" in waiting.last_error
    finally:
        pacs.stop()
