"""The worker against the gateway's own `Reader` contract: a real spool, index (on both engines),
queue and outbox, and readers that stand in for the agent."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import pytest

from dicom_gateway.audit import Audit
from dicom_gateway.engines import open_index
from dicom_gateway.index import Index
from dicom_gateway.jobs import IndexJobQueue
from dicom_gateway.outbox import Outbox
from dicom_gateway.reader import ReadOutcome, ReadRequest
from dicom_gateway.settings import GatewaySettings
from dicom_gateway.spool import Spool
from dicom_gateway.worker import Worker
from imaging.errors import BadInput, ModelLoadError
from tests.dicom_gateway.relay import CuttingRelay
from tests.support import ct_copies


class Reader:
    """Answers every read with what it is given: an outcome, or an exception to raise."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.read_dirs: list[Path] = []
        self.requests: list[ReadRequest] = []
        self.closed = False

    def read(self, study_dir: Path, out_dir: Path, request: ReadRequest) -> ReadOutcome:
        self.read_dirs.append(study_dir)
        self.requests.append(request)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def index(open_store) -> Index:
    return open_store()


def _gateway(tmp_path: Path, reader: Reader, index: Index) -> tuple[Worker, Index, str]:
    """One study of two CT slices in the spool, its read queued; the worker to take it."""
    spool = Spool(tmp_path / "spool", index, min_free_mb=1)
    study = [spool.store(p.read_bytes(), "PACS") for p in ct_copies(tmp_path / "ct", 2, "w")]
    queue = IndexJobQueue(index, max_attempts=3)
    queue.enqueue(study[0].study_uid)
    settings = GatewaySettings(destinations=("PACS@127.0.0.1:104",))
    audit = Audit(tmp_path / "audit.jsonl")
    outbox = Outbox(index, settings, audit)
    return Worker("w", queue, spool, outbox, reader, audit, 60), index, study[0].study_uid


def _job(index: Index):
    [row] = index.read("SELECT state, error FROM jobs")
    return row["state"], row["error"]


def _queued_results(index: Index) -> int:
    return index.read("SELECT COUNT(*) FROM outbox")[0][0]


def test_a_read_of_another_study_fails_the_job_for_good_and_sends_nothing(tmp_path, index):
    sr = tmp_path / "sr.dcm"
    reader = Reader(ReadOutcome("1.2.3.999", (sr,), findings=1, end_reason="answer"))
    worker, index, study_uid = _gateway(tmp_path, reader, index)
    assert worker.run_once()
    state, error = _job(index)
    assert state == "failed"
    assert error == f"the files read are study 1.2.3.999, not the job's {study_uid}"
    assert _queued_results(index) == 0
    assert not worker.run_once()  # not retried
    assert len(reader.read_dirs) == 1 and reader.read_dirs[0].name == study_uid


def test_bad_input_fails_the_job_for_good(tmp_path, index):
    worker, index, _ = _gateway(tmp_path, Reader(BadInput("no readable images")), index)
    assert worker.run_once()
    assert _job(index) == ("failed", "bad input: no readable images")
    assert not worker.run_once()


def test_a_model_that_cannot_be_used_keeps_the_study_for_a_retry(tmp_path, index):
    # a ModelLoadError is bad input to `read`, but in the service it is the service's fault, not
    # the study's: the study must not be failed for good
    reader = Reader(ModelLoadError("model.gguf: no room on the GPU"))
    worker, index, study_uid = _gateway(tmp_path, reader, index)
    assert not worker.run_once()  # given back: nothing read
    assert _job(index) == ("queued", "model: model.gguf: no room on the GPU")
    assert not worker.run_once() and len(reader.read_dirs) == 1  # it holds off: no spinning
    worker._hold_off_until = 0.0  # what MODEL_RETRY_S later brings
    for _ in range(5):  # more times than max_attempts: the study's attempts are not used up
        assert not worker.run_once()
        worker._hold_off_until = 0.0
    assert _job(index)[0] == "queued" and index.read("SELECT attempts FROM jobs")[0][0] == 0
    reader.answer = ReadOutcome(study_uid, (), findings=0, end_reason="answer")  # GPU free again
    assert worker.run_once() and _job(index) == ("done", None)


def test_another_error_is_retried_until_the_attempts_run_out(tmp_path, index):
    reader = Reader(RuntimeError("GPU out of memory"))
    worker, index, _ = _gateway(tmp_path, reader, index)
    assert worker.run_once()
    assert _job(index) == ("queued", "RuntimeError: GPU out of memory")
    assert not worker.run_once()  # the study waits before its next attempt: not three at once
    for _ in range(2):
        with index.write() as db:  # what RETRY_S later brings
            db.execute("UPDATE jobs SET lease_expires = 0")
        assert worker.run_once()
    assert _job(index) == ("failed", "RuntimeError: GPU out of memory")
    assert len(reader.read_dirs) == 3 and not worker.run_once()


def test_the_results_of_the_jobs_study_are_queued_in_the_readers_order(tmp_path, index):
    results = [tmp_path / "ct" / f"000{i}.dcm" for i in range(2)]  # any DICOM files will do
    reader = Reader(None)
    worker, index, study_uid = _gateway(tmp_path, reader, index)
    reader.answer = ReadOutcome(study_uid, tuple(results), findings=2, end_reason="answer")
    assert worker.run_once()
    assert _job(index) == ("done", None)
    rows = index.read("SELECT path FROM outbox ORDER BY id")
    assert [row["path"] for row in rows] == [str(p) for p in results]


def test_a_read_again_of_the_study_is_given_the_last_reads_results(tmp_path, index):
    """Late instances read the study again: the reader is told where the last read's results
    are (its SR is the one the new SR replaces); a first read is told of none."""
    reader = Reader(None)
    worker, index, study_uid = _gateway(tmp_path, reader, index)
    reader.answer = ReadOutcome(study_uid, (), findings=0, end_reason="answer")
    assert worker.run_once()
    [first] = index.read("SELECT out_dir FROM jobs")
    IndexJobQueue(index, max_attempts=3).enqueue(study_uid)
    assert worker.run_once()
    assert [r.replaces for r in reader.requests] == ["", first["out_dir"]]


@contextlib.contextmanager
def _behind_a_cutting_relay(tmp_path: Path, postgres):
    """An index on a real PostgreSQL reached through a relay that can drop a COMMIT's answer."""
    relay = CuttingRelay(postgres.port)
    url = postgres.database().replace(f":{postgres.port}/", f":{relay.port}/")
    index = open_index(url, tmp_path)
    try:
        yield relay, index
    finally:
        index.close()
        relay.close()


def _audited(worker: Worker, tmp_path: Path, event: str) -> int:
    worker._audit.close()
    return (tmp_path / "audit.jsonl").read_text().count(f'"event": "{event}"')


def test_a_completion_whose_commit_acknowledgement_was_lost_is_read_and_queued_once(
    tmp_path, postgres
):
    """PostgreSQL commits the completion, then the connection drops before its answer arrives:
    the worker's retry finds the job done by itself into its own folder, a success."""
    with _behind_a_cutting_relay(tmp_path, postgres) as (relay, index):
        results = [tmp_path / "ct" / f"000{i}.dcm" for i in range(2)]
        reader = Reader(None)
        worker, index, study_uid = _gateway(tmp_path, reader, index)
        reader.answer = ReadOutcome(study_uid, tuple(results), findings=2, end_reason="answer")
        queue_results = worker._outbox.add_in

        def add_in(db, job_id, objects):  # inside the completion's transaction: cut its COMMIT
            relay.cut_next_commit.set()
            return queue_results(db, job_id, objects)

        worker._outbox.add_in = add_in
        assert worker.run_once()
        assert relay.cuts == 1
        assert _job(index) == ("done", None)
        assert _queued_results(index) == 2  # one per result, not two
        assert _audited(worker, tmp_path, "study_read") == 1


@pytest.mark.parametrize(
    ("error", "state"),
    [(RuntimeError("GPU out of memory"), "queued"), (BadInput("no readable images"), "failed")],
)
def test_a_failure_whose_commit_acknowledgement_was_lost_is_recorded_and_audited_once(
    tmp_path, postgres, error, state
):
    """PostgreSQL commits the failure (a retry queued, or the job failed for good), then the
    connection drops before its answer arrives: the worker's retry finds it recorded by itself
    for this attempt and audits it, instead of taking it for a lease another worker holds."""
    with _behind_a_cutting_relay(tmp_path, postgres) as (relay, index):
        reader = Reader(error)
        worker, index, _ = _gateway(tmp_path, reader, index)
        read = reader.read

        def read_then_cut(*args):  # the next commit is the failure's
            relay.cut_next_commit.set()
            return read(*args)

        reader.read = read_then_cut
        assert worker.run_once()
        assert relay.cuts == 1
        assert _job(index)[0] == state
        assert _audited(worker, tmp_path, "study_failed") == 1


def test_closing_the_worker_closes_its_reader(tmp_path, index):
    reader = Reader(None)
    worker, _, _ = _gateway(tmp_path, reader, index)
    worker.close()
    assert reader.closed


@pytest.mark.parametrize(
    "module", ["reader", "worker", "service", "retrieve", "outbox", "postgres_index", "overview"]
)
def test_the_gateway_imports_nothing_from_the_agent(module):
    import subprocess
    import sys

    probe = (
        f"import sys, dicom_gateway.{module}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('edge_agent', 'tools')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


class _QuotingReader(Reader):
    """Fails as pydicom or highdicom do on a header value they cannot take."""

    def read(self, study_dir: Path, out_dir: Path, request: ReadRequest) -> ReadOutcome:
        import highdicom as hd
        from pydicom.valuerep import DA

        if self.answer == "pydicom":
            DA(BIRTH_DATE)  # raised in pydicom itself
        hd.SOPClass(  # raised in the standard library, below highdicom
            study_instance_uid="1.2",
            series_instance_uid="1.2.3",
            series_number=1,
            sop_instance_uid="1.2.3.4",
            sop_class_uid="1.2.840.10008.5.1.4.1.1.7",
            instance_number=1,
            modality="OT",
            manufacturer="edge-agent",
            patient_sex=SEX,
        )
        raise AssertionError("the header value was taken")


BIRTH_DATE, SEX = "03.02.1951", "Masculine"  # a header's values, as a read meets them


@pytest.mark.parametrize(
    ("library", "said"),
    [("pydicom", "ValueError in pydicom (valuerep.py:"), ("highdicom", "ValueError in highdicom")],
)
def test_an_error_that_quotes_the_header_keeps_the_value_out_of_the_job_audit_and_log(
    tmp_path, index, caplog, library, said
):
    worker, index, study_uid = _gateway(tmp_path, _QuotingReader(library), index)
    with caplog.at_level(logging.DEBUG):
        assert worker.run_once()
    state, error = _job(index)
    assert state == "queued" and error.startswith(said)
    audit = (tmp_path / "audit.jsonl").read_text()
    assert f'"study_uid": "{study_uid}"' in audit and "study_failed" in audit
    for text in (error, audit, caplog.text):
        assert BIRTH_DATE not in text and SEX not in text
    assert "Traceback" not in caplog.text and "File " in caplog.text  # frames, not the text
