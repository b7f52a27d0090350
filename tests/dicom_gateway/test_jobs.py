"""The read queue's rules on a real SQLite index: leases, retries, late instances."""

from __future__ import annotations

import pytest

from dicom_gateway import index as index_module
from dicom_gateway.assembler import promote_stable_studies
from dicom_gateway.index import Index
from dicom_gateway.jobs import LeaseLost, SqliteJobQueue


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    for module in ("dicom_gateway.index", "dicom_gateway.jobs", "dicom_gateway.assembler"):
        monkeypatch.setattr(f"{module}.now", clock)
    return clock


@pytest.fixture
def index(tmp_path) -> Index:
    return Index(tmp_path / "index.sqlite")


def receive(index: Index, study: str, at: float, state: str = "receiving") -> None:
    with index.write() as db:
        db.execute(
            "INSERT INTO studies (study_uid, first_received, last_received, state) "
            "VALUES (?, ?, ?, ?) ON CONFLICT(study_uid) DO UPDATE SET "
            "last_received = excluded.last_received",
            (study, at, at, state),
        )


def test_a_study_is_queued_only_once_it_has_been_quiet(index, clock):
    receive(index, "1.2.3", clock.t)
    assert promote_stable_studies(index, 30, "ignore") == []
    clock.t += 31
    assert promote_stable_studies(index, 30, "ignore") == ["1.2.3"]
    assert promote_stable_studies(index, 30, "ignore") == []  # never twice


def test_an_expired_lease_is_taken_over_and_the_old_worker_cannot_finish(index, clock):
    queue = SqliteJobQueue(index, max_attempts=3)
    receive(index, "1.2.3", clock.t)
    queue.enqueue("1.2.3")
    first = queue.claim("a", lease_s=10)
    assert queue.claim("b", lease_s=10) is None  # leased
    clock.t += 11  # worker a died
    second = queue.claim("b", lease_s=10)
    assert (second.id, second.attempt) == (first.id, 2)
    with pytest.raises(LeaseLost):
        queue.complete(first, "a", "/out")
    queue.complete(second, "b", "/out")
    assert index.read("SELECT state FROM jobs")[0]["state"] == "done"
    assert queue.claim("c", lease_s=10) is None  # a finished job is never read again


def test_a_job_whose_worker_keeps_dying_fails_with_the_reason(index, clock):
    queue = SqliteJobQueue(index, max_attempts=2)
    receive(index, "1.2.3", clock.t)
    queue.enqueue("1.2.3")
    for _ in range(2):
        assert queue.claim("w", lease_s=5) is not None
        clock.t += 6
    assert queue.claim("w", lease_s=5) is None
    [job] = index.read("SELECT state, error FROM jobs")
    assert job["state"] == "failed" and "lease expired 2 times" in job["error"]
    assert index.read("SELECT state FROM studies")[0]["state"] == "failed"


def test_a_read_error_is_retried_then_failed(index, clock):
    queue = SqliteJobQueue(index, max_attempts=2)
    receive(index, "1.2.3", clock.t)
    queue.enqueue("1.2.3")
    queue.fail(queue.claim("w", 60), "w", "MemoryError")
    queue.fail(queue.claim("w", 60), "w", "MemoryError")
    [job] = index.read("SELECT state, error, attempts FROM jobs")
    assert (job["state"], job["error"], job["attempts"]) == ("failed", "MemoryError", 2)


def test_late_instances_trigger_one_reread_under_that_policy(index, clock):
    queue = SqliteJobQueue(index, max_attempts=2)
    receive(index, "1.2.3", clock.t)
    clock.t += 31
    promote_stable_studies(index, 30, "reread")
    queue.complete(queue.claim("w", 60), "w", "/out")
    with index.write() as db:  # what the spool records for an instance after the read
        db.execute("UPDATE studies SET late_instances = 1, last_received = ?", (clock.t,))
    clock.t += 31
    assert promote_stable_studies(index, 30, "ignore") == []
    assert promote_stable_studies(index, 30, "reread") == ["1.2.3"]
    queue.complete(queue.claim("w", 60), "w", "/out")
    with index.write() as db:
        db.execute("UPDATE studies SET late_instances = 2, last_received = ?", (clock.t,))
    clock.t += 31
    assert promote_stable_studies(index, 30, "reread") == []  # once only
    assert len(index.read("SELECT id FROM jobs")) == 2


def test_migrations_run_once(tmp_path):
    Index(tmp_path / "i.sqlite")
    again = Index(tmp_path / "i.sqlite")
    assert again.read("PRAGMA user_version")[0][0] == len(index_module.MIGRATIONS)
