"""Where the outbox sends: only to configured destinations, in a transfer syntax they accept;
against real dcmtk `storescp` peers."""

from __future__ import annotations

import json
import logging

from dicom_gateway.audit import Audit
from dicom_gateway.index import SqliteIndex
from dicom_gateway.outbox import Outbox, undelivered
from dicom_gateway.settings import GatewaySettings
from tests.dicom_gateway.storescp import StoreScp
from tests.support import ct_copies, run_cli


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
        again = Outbox(index, GatewaySettings(destinations=(removed.node,)), audit)
        assert again.send_due() == 3  # nothing was lost while it was held
        assert len(removed.received()) == 3 and kept.received() == []
    finally:
        removed.stop()
        kept.stop()
