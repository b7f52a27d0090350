"""The agent's read as the gateway's Reader, composed as `serve` composes it."""

from __future__ import annotations

import shutil

import pydicom

from dicom_gateway.audit import Audit
from dicom_gateway.index import SqliteIndex
from dicom_gateway.jobs import IndexJobQueue
from dicom_gateway.outbox import Outbox
from dicom_gateway.settings import GatewaySettings
from dicom_gateway.spool import Spool
from dicom_gateway.worker import Worker
from edge_agent import read as read_module
from edge_agent.cli.config import FileConfig
from edge_agent.cli.gateway_reader import AgentReader
from tests.support import ct_copies


def test_the_reader_reports_the_study_it_read_and_its_dicom_results_sr_first(tmp_path):
    files = ct_copies(tmp_path / "study", 3, "reader")
    reader = AgentReader(FileConfig())
    try:
        outcome = reader.read(tmp_path / "study", tmp_path / "out")
    finally:
        reader.close()
    assert outcome.study_uid == str(pydicom.dcmread(files[0]).StudyInstanceUID)
    assert outcome.dicom[0] == tmp_path / "out" / "dicom" / "sr.dcm"
    assert pydicom.dcmread(outcome.dicom[0]).Modality == "SR"
    assert outcome.findings > 0 and outcome.end_reason == "answer"


def test_a_spool_folder_holding_another_studys_files_is_not_read_as_the_job(tmp_path):
    index = SqliteIndex(tmp_path / "index.sqlite")
    spool = Spool(tmp_path / "spool", index, min_free_mb=1)
    job_study = spool.store(ct_copies(tmp_path / "a", 1, "job")[0].read_bytes(), "PACS")
    folder = spool.study_dir(job_study.study_uid)
    job_study.path.unlink()  # the folder now holds another study's files only
    for path in ct_copies(tmp_path / "b", 3, "other"):
        shutil.copy(path, folder)
    other_uid = str(pydicom.dcmread(next(folder.iterdir())).StudyInstanceUID)
    queue = IndexJobQueue(index, max_attempts=3)
    queue.enqueue(job_study.study_uid)
    settings = GatewaySettings(destinations=("PACS@127.0.0.1:104",))
    audit = Audit(tmp_path / "audit.jsonl")
    worker = Worker(
        "w", queue, spool, Outbox(index, settings, audit), AgentReader(FileConfig()), audit, 60
    )
    try:
        assert worker.run_once()
    finally:
        worker.close()
    [job] = index.read("SELECT state, error FROM jobs")
    assert job["state"] == "failed"
    assert job["error"] == (
        f"the files read are study {other_uid}, not the job's {job_study.study_uid}"
    )
    assert index.read("SELECT COUNT(*) FROM outbox")[0][0] == 0  # nothing goes to the PACS


def test_a_study_whose_files_are_damaged_during_its_read_fails_and_the_next_is_read(
    tmp_path, monkeypatch
):
    index = SqliteIndex(tmp_path / "index.sqlite")
    spool = Spool(tmp_path / "spool", index, min_free_mb=1)
    studies = []
    for seed in ("damaged", "next"):
        for path in ct_copies(tmp_path / seed, 3, seed):
            stored = spool.store(path.read_bytes(), "PACS")
        studies.append(stored.study_uid)
    damaged_dir = spool.study_dir(studies[0])
    written = read_module.write_evidence

    def damage_then_write(*args, **kwargs):  # the first study's files, once its tools have run
        for file in damaged_dir.rglob("*.dcm"):
            file.write_bytes(b"not DICOM " * 64)
        return written(*args, **kwargs)

    queue = IndexJobQueue(index, max_attempts=3)
    for uid in studies:
        queue.enqueue(uid)
    settings = GatewaySettings(destinations=("PACS@127.0.0.1:104",))
    audit = Audit(tmp_path / "audit.jsonl")
    worker = Worker(
        "w", queue, spool, Outbox(index, settings, audit), AgentReader(FileConfig()), audit, 60
    )
    try:  # the reader is open (its warm-up read done): the next read meets the damage
        monkeypatch.setattr(read_module, "write_evidence", damage_then_write)
        assert worker.run_once()
        monkeypatch.setattr(read_module, "write_evidence", written)
        assert worker.run_once()
    finally:
        worker.close()
    failed, done = index.read("SELECT state, error FROM jobs ORDER BY id")
    assert failed["state"] == "failed" and failed["error"].startswith(f"bad input: {damaged_dir}")
    assert "changed since it was loaded: not a DICOM Part 10 file" in failed["error"]
    assert done["state"] == "done" and done["error"] is None
