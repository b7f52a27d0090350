"""Routing rules: which studies are read, with which question and policy, and which are only
stored; the rules themselves, the worker that applies them, and `edge-agent serve` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
import requests

from dicom_gateway.audit import Audit
from dicom_gateway.jobs import IndexJobQueue
from dicom_gateway.outbox import Outbox
from dicom_gateway.reader import ReadOutcome, ReadRequest
from dicom_gateway.routing import (
    STOW_SENDER,
    InstanceFacts,
    Routing,
    decide,
    study_instances,
)
from dicom_gateway.settings import GatewaySettings
from dicom_gateway.spool import Spool
from dicom_gateway.worker import Worker
from edge_agent.cli.config import load_config
from imaging.errors import ConfigError
from tests.dicom_gateway.test_dicomweb import multipart
from tests.dicomweb_peers import TOKEN, web_gateway
from tests.peers import wait_for
from tests.support import bundled, c_store, ct_copies, run_cli

CT, MR = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"
RULES = """
[[gateway.routing.rule]]
name = "chest-ct"
calling_ae = ["CTSCANNER"]
modality = ["CT"]
body_part = ["CHEST"]
question = "Is there a hypodense lesion?"

[[gateway.routing.rule]]
name = "knee-mr"
action = "store"
stow_client = ["orthanc"]
modality = ["MR"]
series_description = "knee"
"""


def _facts(sender="CTSCANNER", modality="CT", sop=CT, body="CHEST", description="Thorax"):
    return InstanceFacts(sender, modality, sop, body, description)


def _routing(tmp_path: Path, rules: str = RULES) -> Routing:
    (tmp_path / "rules.toml").write_text(rules)
    return load_config(tmp_path / "rules.toml").gateway.routing


def test_rules_from_toml_pick_exactly_the_intended_studies(tmp_path):
    routing = _routing(tmp_path)
    chest = decide(routing, [_facts()])
    assert (chest.read, chest.rule) == (True, "chest-ct")
    assert chest.request == ReadRequest("Is there a hypodense lesion?", "", "chest-ct")
    knee = decide(routing, [_facts(STOW_SENDER + "orthanc", "MR", MR, "KNEE", "Right KNEE sag PD")])
    assert (knee.read, knee.rule, knee.reason) == (False, "knee-mr", "rule knee-mr: store only")
    for other in (
        _facts(sender="OTHERCT"),  # another sender
        _facts(body="ABDOMEN"),  # another body part
        _facts(
            STOW_SENDER + "orthanc", "MR", MR, "KNEE", "Lumbar spine"
        ),  # another series description
        _facts("CTSCANNER", "MR", MR, "CHEST"),  # another modality
        _facts(STOW_SENDER + "CTSCANNER"),  # a STOW client is not the DIMSE AE of the same name
        _facts("orthanc", "MR", MR, "KNEE", "knee"),  # nor a DIMSE AE the STOW client's namesake
    ):
        missed = decide(routing, [other])
        assert (missed.read, missed.rule) == (False, "")
        assert missed.reason.startswith("no routing rule matched (senders ")
        assert other.series_description not in missed.reason  # free text stays out of the audit
    mixed = decide(routing, [_facts(body="ABDOMEN"), _facts(body="chest")])  # one series is enough
    assert mixed.rule == "chest-ct"


def test_without_rules_every_study_is_read(tmp_path):
    decision = decide(Routing(), [_facts(sender="ANYONE")])
    assert decision.read and decision.request == ReadRequest()


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ('name = "x"\naction = "delete"', "action must be 'read' or 'store'"),
        ('name = "x"\naction = "store"\nquestion = "Why?"', "store-only rule takes no question"),
        ('name = "x"\nseries_description = "knee("', "series_description"),
        ('name = "x"\nmodalty = ["CT"]', "unknown key(s) modalty"),
    ],
)
def test_a_bad_rule_is_refused_when_the_config_is_read(tmp_path, rule, says):
    with pytest.raises(ConfigError, match=r".*") as refused:
        _routing(tmp_path, f"[[gateway.routing.rule]]\n{rule}\n")
    assert says in str(refused.value)


class Recorder:
    """A reader that records what it was asked and writes nothing."""

    def __init__(self) -> None:
        self.requests: list[ReadRequest] = []

    def read(self, study_dir: Path, out_dir: Path, request: ReadRequest) -> ReadOutcome:
        self.requests.append(request)
        uid = str(pydicom.dcmread(next(study_dir.iterdir())).StudyInstanceUID)
        return ReadOutcome(uid, (), 0, "answer")

    def close(self) -> None:
        pass


def test_the_worker_reads_what_a_rule_picks_with_its_question_and_stores_the_rest(
    tmp_path, open_store
):
    routing = _routing(tmp_path, RULES.replace('question = "', 'policy = "protocol"\nquestion = "'))
    index = open_store()
    spool = Spool(tmp_path / "spool", index, min_free_mb=1)
    queue, audit, reader = IndexJobQueue(index, 3), Audit(tmp_path / "audit.jsonl"), Recorder()
    outbox = Outbox(index, GatewaySettings(), audit)
    worker = Worker("w", queue, spool, outbox, reader, audit, 60, routing)
    studies = {}
    for name, body_part in (("chest", "CHEST"), ("abdomen", "ABDOMEN")):
        for path in ct_copies(tmp_path / name, 2, name):
            ds = pydicom.dcmread(path)
            ds.BodyPartExamined = body_part
            ds.save_as(path)
            studies[name] = spool.store(path.read_bytes(), "CTSCANNER").study_uid
        queue.enqueue(studies[name])
    assert worker.run_once() and worker.run_once() and not worker.run_once()
    assert reader.requests == [ReadRequest("Is there a hypodense lesion?", "protocol", "chest-ct")]
    events = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    [read] = [e for e in events if e["event"] == "study_read"]
    [skipped] = [e for e in events if e["event"] == "study_not_read"]
    assert (read["study_uid"], read["rule"]) == (studies["chest"], "chest-ct")
    assert skipped["study_uid"] == studies["abdomen"] and "body parts ABDOMEN" in skipped["reason"]
    assert {r["state"] for r in index.read("SELECT state FROM jobs")} == {"done"}
    assert len(study_instances(index, studies["abdomen"])) == 2  # kept in the spool


def test_serve_routes_dimse_and_stow_studies_by_rule(tmp_path):
    gateway, web_port = web_gateway(tmp_path / "gw", None, None, rules=RULES, stable_after_s=1.0)
    try:
        sent = {}
        for name, body_part, caller in (
            ("chest", "CHEST", "CTSCANNER"),
            ("abdomen", "ABDOMEN", "CTSCANNER"),
            ("elsewhere", "CHEST", "OTHERCT"),
        ):
            datasets = [pydicom.dcmread(p) for p in ct_copies(tmp_path / name, 2, name)]
            for ds in datasets:
                ds.BodyPartExamined = body_part
            assert [s for _, s in c_store(gateway.port, datasets, calling=caller)] == [0, 0]
            sent[name] = str(datasets[0].StudyInstanceUID)
        knee = pydicom.dcmread(bundled("MR_small.dcm"))
        knee.SeriesDescription, knee.StudyInstanceUID = "KNEE PD sag", pydicom.uid.generate_uid()
        path = tmp_path / "knee.dcm"
        knee.save_as(path, enforce_file_format=True)
        body, content_type = multipart([("application/dicom", path.read_bytes())])
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type}
        posted = requests.post(
            f"http://127.0.0.1:{web_port}/studies", data=body, headers=headers, timeout=30
        )
        assert posted.status_code == 200
        sent["knee"] = str(knee.StudyInstanceUID)

        def settled():
            jobs = gateway.jobs()
            return len(jobs) == 4 and all(j["state"] == "done" for j in jobs) and jobs

        jobs = {j["study_uid"]: j for j in wait_for(settled, 120, "four studies settled")}
        assert [uid for uid, j in jobs.items() if j["out_dir"]] == [sent["chest"]]
        report = json.loads((Path(jobs[sent["chest"]]["out_dir"]) / "report.json").read_text())
        assert report["question"] == "Is there a hypodense lesion?"
        audit = gateway.audit()
        skipped = {e["study_uid"]: e for e in audit if e["event"] == "study_not_read"}
        assert set(skipped) == {sent["abdomen"], sent["elsewhere"], sent["knee"]}
        assert skipped[sent["knee"]]["rule"] == "knee-mr"
        assert "senders OTHERCT" in skipped[sent["elsewhere"]]["reason"]
        assert "body parts ABDOMEN" in skipped[sent["abdomen"]]["reason"]
    finally:
        gateway.stop()


def test_serve_refuses_to_start_when_a_rule_names_a_policy_it_does_not_have(tmp_path):
    config = tmp_path / "edge-agent.toml"
    config.write_text(
        f'[gateway]\nspool_dir = "{tmp_path / "spool"}"\n'
        '[[gateway.routing.rule]]\nname = "x"\npolicy = "no-such-policy"\n'
    )
    refused = run_cli("serve", "--config", config)
    assert refused.returncode == 2 and "policy 'no-such-policy' is not available" in refused.stderr


def test_the_agent_reader_asks_the_rules_question_with_a_policy_opened_at_start(tmp_path):
    from edge_agent.cli.config import FileConfig
    from edge_agent.cli.gateway_reader import AgentReader

    ct_copies(tmp_path / "study", 2, "agent-reader")
    reader = AgentReader(FileConfig(), ["protocol"])
    try:
        asked = ReadRequest("Is there a hyperdense lesion?", "protocol", "chest-ct")
        reader.read(tmp_path / "study", tmp_path / "out", asked)
        with pytest.raises(ConfigError, match="'llama-cpp' was not opened at start"):
            reader.read(tmp_path / "study", tmp_path / "other", ReadRequest(policy="llama-cpp"))
    finally:
        reader.close()
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["question"] == "Is there a hyperdense lesion?"
