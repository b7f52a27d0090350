"""The audit trail: one file per machine when several machines share the spool."""

from __future__ import annotations

import json
import socket

from dicom_gateway.audit import Audit, audit_path


def test_machines_sharing_a_spool_each_keep_their_own_trail(tmp_path):
    assert audit_path(tmp_path, shared=False) == tmp_path / "audit.jsonl"
    shared = audit_path(tmp_path, shared=True)
    assert shared == tmp_path / "audit" / f"{socket.gethostname()}.jsonl"
    audit = Audit(shared, node="h:1")
    audit("association_accepted", calling_ae="PACS")
    audit.close()
    [record] = [json.loads(line) for line in shared.read_text().splitlines()]
    assert record["event"] == "association_accepted" and record["node"] == "h:1"
