"""The read queue's rules on both engines of the index (SQLite, a real PostgreSQL): leases,
retries, late instances, one claim per job however many workers ask at once."""

from __future__ import annotations

import threading
import time

import pytest

from dicom_gateway import index as index_module
from dicom_gateway import nodes
from dicom_gateway.assembler import listening_again, promote_stable_studies
from dicom_gateway.engines import open_index
from dicom_gateway.index import Index
from dicom_gateway.jobs import RETRY_S, IndexJobQueue, LeaseLost
from dicom_gateway.nodes import ALIVE_S, Node
from dicom_gateway.spool import Spool
from tests.support import ct_copies


@pytest.fixture
def index(open_store, clock) -> Index:
    return open_store(clock=clock)


def database_now(index: Index) -> float:
    """The index's clock: the database server's when shared."""
    with index.write() as db:
        return db.now()


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
    queue = IndexJobQueue(index, max_attempts=3)
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


def test_a_job_of_a_worker_whose_node_stopped_beating_is_taken_long_before_its_lease_ends(
    index, clock
):
    """A service killed mid-read (its node silent) loses its study ALIVE_S later, not lease_s
    (900 s) later; a worker that beats keeps its lease, and one that never beat keeps it too."""
    queue = IndexJobQueue(index, max_attempts=3)
    for study in ("1.2.3", "1.2.4", "1.2.5"):
        receive(index, study, clock.t)
        queue.enqueue(study)
    killed, beating = Node("here:1", "all"), Node("there:2", "worker")
    for node in (killed, beating):
        nodes.beat(index, node, "reading")
    dead = queue.claim(killed.name, lease_s=900)
    alive = queue.claim(beating.name, lease_s=900)
    silent = queue.claim("unregistered", lease_s=900)  # no node row: its lease decides
    clock.t += ALIVE_S + 1
    nodes.beat(index, beating, "reading")
    again = queue.claim("here:3", lease_s=900)
    assert (again.id, again.attempt) == (dead.id, 2)
    assert queue.claim("here:3", lease_s=900) is None  # neither the beating nor the silent one
    assert len({dead.id, alive.id, silent.id}) == 3


def test_a_job_whose_worker_keeps_dying_fails_with_the_reason(index, clock):
    queue = IndexJobQueue(index, max_attempts=2)
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
    queue = IndexJobQueue(index, max_attempts=2)
    receive(index, "1.2.3", clock.t)
    queue.enqueue("1.2.3")
    queue.fail(queue.claim("w", 60), "w", "MemoryError")
    assert queue.claim("v", 60) is None  # not at once, by any worker: a site's problem passes
    clock.t += RETRY_S
    queue.fail(queue.claim("v", 60), "v", "MemoryError")
    [job] = index.read("SELECT state, error, attempts FROM jobs")
    assert (job["state"], job["error"], job["attempts"]) == ("failed", "MemoryError", 2)


def test_late_instances_trigger_one_reread_under_that_policy(index, clock):
    queue = IndexJobQueue(index, max_attempts=2)
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


def test_migrations_run_once(open_store):
    open_store()
    again = open_store()
    with again.write() as db:
        assert again.dialect.version(db) == len(index_module.MIGRATIONS)


def test_each_job_is_claimed_by_exactly_one_of_many_workers(open_store):
    index = open_store()
    queue = IndexJobQueue(index, max_attempts=3)
    for number in range(40):
        receive(index, f"1.2.{number}", 0.0)
        queue.enqueue(f"1.2.{number}")
    claimed: dict[str, list[int]] = {}
    start = threading.Barrier(4)

    def work(name: str) -> None:
        mine = claimed.setdefault(name, [])
        start.wait()
        while (job := queue.claim(name, lease_s=60)) is not None:
            mine.append(job.id)
            queue.complete(job, name, "/out")

    workers = [threading.Thread(target=work, args=(f"w{n}",)) for n in range(4)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    every = sorted(j for ids in claimed.values() for j in ids)
    assert every == sorted(r["id"] for r in index.read("SELECT id FROM jobs"))
    assert len(every) == 40 == len(set(every))


def test_a_study_is_judged_quiet_on_the_databases_clock_not_the_nodes(postgres, monkeypatch):
    index = open_index(postgres.database(), "unused")
    try:
        receive(index, "1.2.3", database_now(index))
        # A node an hour ahead of the database:
        monkeypatch.setattr(time, "time", lambda: database_now(index) + 3600)
        assert promote_stable_studies(index, 30, "ignore") == []
    finally:
        index.close()


def test_a_completion_cut_by_a_lost_connection_is_committed_once_on_a_new_one(postgres):
    index = open_index(postgres.database(), "unused")
    try:
        queue = IndexJobQueue(index, max_attempts=3)
        receive(index, "1.2.3", database_now(index))
        queue.enqueue("1.2.3")
        job = queue.claim("w", lease_s=60)
        cuts = []

        def outbox_rows(db) -> None:
            if not cuts:  # the server ends this session mid-transaction, as a restart does
                cuts.append(1)
                db.execute("SELECT pg_terminate_backend(pg_backend_pid())")
            db.execute(
                "INSERT INTO outbox (job_id, destination, path, sop_uid, next_try) "
                "VALUES (?, 'PACS@h:104', '/r.dcm', '1.2.3.4', 0)",
                (job.id,),
            )

        queue.complete(job, "w", "/out", then=outbox_rows)
        assert index.read("SELECT state FROM jobs")[0]["state"] == "done"
        assert index.read("SELECT COUNT(*) FROM outbox")[0][0] == 1
    finally:
        index.close()


def test_a_study_still_arriving_on_another_listener_is_not_read_early(tmp_path, open_store, clock):
    first, second = (p.read_bytes() for p in ct_copies(tmp_path / "ct", 2, "two-listeners"))
    listeners = [Spool(tmp_path / "spool", open_store(clock=clock), 1) for _ in range(2)]
    worker = open_store(clock=clock)
    study = listeners[0].store(first, "PACS").study_uid
    clock.t += 20
    listeners[1].store(second, "PACS")  # the same study, through the other listener
    clock.t += 11  # 31 s after the first instance, 11 s after the last
    assert promote_stable_studies(worker, 30, "ignore") == []
    clock.t += 20
    assert promote_stable_studies(worker, 30, "ignore") == [study]


def test_a_completion_asked_again_by_its_worker_is_a_success_that_adds_nothing(index, clock):
    queue = IndexJobQueue(index, max_attempts=3)
    receive(index, "1.2.3", clock.t)
    queue.enqueue("1.2.3")
    job = queue.claim("w", lease_s=10)

    def queue_result(db) -> None:
        db.execute(
            "INSERT INTO outbox (job_id, destination, path, sop_uid, next_try) "
            "VALUES (?, 'PACS@h:104', '/out/sr.dcm', '1.9', 0)",
            (job.id,),
        )

    queue.complete(job, "w", "/out/job1-try1", then=queue_result)
    queue.complete(job, "w", "/out/job1-try1", then=queue_result)  # its answer had been lost
    assert index.read("SELECT COUNT(*) FROM outbox")[0][0] == 1
    for worker, out_dir in (("w", "/out/elsewhere"), ("x", "/out/job1-try1")):
        with pytest.raises(LeaseLost):  # not this worker's completion
            queue.complete(job, worker, out_dir, then=queue_result)
    with pytest.raises(LeaseLost):  # a done job cannot be failed
        queue.fail(job, "w", "late error")
    assert [tuple(r) for r in index.read("SELECT state, out_dir FROM jobs")] == [
        ("done", "/out/job1-try1")
    ]


def test_a_restarted_listener_restarts_the_quiet_clock_unless_another_one_was_listening(
    index, clock
):
    """Nothing could be sent while nothing listened: that time is no quiet. On a shared index,
    another listener that stayed up was receiving all along: its studies keep their clock."""
    receive(index, "1.2.3", clock.t)
    clock.t += 100
    if index.dialect.shared:
        nodes.beat(index, Node("other:7", "listener"), "idle")
        listening_again(index, "here:1")
        assert promote_stable_studies(index, 30, "ignore") == ["1.2.3"]  # its clock ran on
        receive(index, "1.2.4", clock.t - 100)
        clock.t += ALIVE_S + 1  # the other listener is gone too now
    listening_again(index, "here:1")
    waiting = index.read("SELECT study_uid FROM studies WHERE state = 'receiving'")
    assert promote_stable_studies(index, 30, "ignore") == []  # quiet from the restart on
    clock.t += 31
    assert promote_stable_studies(index, 30, "ignore") == [row[0] for row in waiting]
