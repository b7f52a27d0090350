"""Scale-out: reads per hour with 1, 2 and 4 workers sharing one PostgreSQL index, and the
queue's own cost per job (claim + complete) on PostgreSQL against SQLite, in one run.

    .venv/bin/python benchmarks/scale.py [--read-s 0.5] [--jobs-per-worker 12]

The read is a stand-in of fixed duration for GPU time (tests/gateway_node.py: it sleeps, then
writes one result), so the two CPU cores of a test machine do not hide the scaling; everything
else is the real worker: its own process, the lease, the heartbeat thread, the result queued for
sending in the job's completing transaction. Efficiency is thr(N) / (N x thr(1)). PostgreSQL (a
throw-away server from tests/postgres.py) and SQLite both fsync every commit. Not a test."""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dicom_gateway.audit import Audit
from dicom_gateway.engines import open_index
from dicom_gateway.index import Index, SqliteIndex
from dicom_gateway.jobs import IndexJobQueue
from dicom_gateway.outbox import Outbox
from dicom_gateway.settings import GatewaySettings
from dicom_gateway.spool import Spool
from dicom_gateway.worker import Worker
from tests.gateway_node import FixedTimeReader
from tests.postgres import Postgres
from tests.support import ct_copies

SETTINGS = GatewaySettings(destinations=("PACS@127.0.0.1:104",), lease_s=60)


def fill(index: Index, spool_dir: Path, studies: int, folder: Path) -> None:
    """`studies` one-slice CT studies in the spool, each queued for reading."""
    spool = Spool(spool_dir, index, min_free_mb=1)
    queue = IndexJobQueue(index, SETTINGS.max_attempts)
    for number in range(studies):
        [path] = ct_copies(folder / str(number), 1, f"scale-{folder.name}-{number}")
        queue.enqueue(spool.store(path.read_bytes(), "BENCH").study_uid)


def work(url: str, spool_dir: Path, read_s: float, ready, go, done) -> None:
    """One worker process: read until the queue is empty; report when the last read ended."""
    index = open_index(url, spool_dir)
    spool = Spool(spool_dir, index, min_free_mb=1)
    audit = Audit(spool_dir / "audit.jsonl")
    outbox = Outbox(index, SETTINGS, audit)
    queue = IndexJobQueue(index, SETTINGS.max_attempts)
    name = f"bench:{multiprocessing.current_process().pid}"
    worker = Worker(name, queue, spool, outbox, FixedTimeReader(read_s), audit, SETTINGS.lease_s)
    ready.wait()
    go.wait()
    reads = 0
    while worker.run_once():
        reads += 1
    done.put((reads, time.time()))
    index.close()


def throughput(postgres: Postgres, workers: int, jobs: int, read_s: float, root: Path) -> float:
    url = postgres.database()
    spool_dir = root / f"spool-{workers}"
    fill(open_index(url, spool_dir), spool_dir, jobs, root / f"ct-{workers}")
    context = multiprocessing.get_context("spawn")
    ready, go, done = context.Barrier(workers + 1), context.Event(), context.Queue()
    processes = [
        context.Process(target=work, args=(url, spool_dir, read_s, ready, go, done))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    ready.wait()  # every worker has its connections and its imports: timing starts here
    start = time.time()
    go.set()
    results = [done.get(timeout=600) for _ in processes]
    for process in processes:
        process.join()
    assert sum(reads for reads, _ in results) == jobs, results
    print(f"        reads per worker: {sorted(reads for reads, _ in results)}")
    return jobs / (max(end for _, end in results) - start) * 3600


def queue_cost_us(index: Index, jobs: int) -> float:
    """Mean time of claim + complete (one outbox row), one worker, nothing else running."""
    queue = IndexJobQueue(index, 3)
    with index.write() as db:
        for number in range(jobs):
            db.execute(
                "INSERT INTO studies (study_uid, first_received, last_received) VALUES (?, 0, 0)",
                (f"1.2.{number}",),
            )
    for number in range(jobs):
        queue.enqueue(f"1.2.{number}")

    def row(db, job_id: int) -> None:
        db.execute(
            "INSERT INTO outbox (job_id, destination, path, sop_uid, next_try) "
            "VALUES (?, 'PACS@h:104', '/r.dcm', '1.2', 0)",
            (job_id,),
        )

    start = time.perf_counter()
    while (job := queue.claim("bench", 60)) is not None:
        queue.complete(job, "bench", "/out", then=lambda db, j=job: row(db, j.id))
    return (time.perf_counter() - start) / jobs * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--read-s", type=float, default=2.0, help="stand-in read time")
    parser.add_argument("--jobs-per-worker", type=int, default=12)
    parser.add_argument("--queue-jobs", type=int, default=500)
    args = parser.parse_args()
    postgres = Postgres(fsync=True)
    try:
        with tempfile.TemporaryDirectory(prefix="edge-agent-scale-") as folder:
            root = Path(folder)
            print(f"stand-in read (for GPU time): {args.read_s:g} s per study")
            print(f"{'workers':>7} {'reads/hour':>11} {'efficiency':>10}")
            base = None
            for workers in (1, 2, 4):
                rate = throughput(
                    postgres, workers, workers * args.jobs_per_worker, args.read_s, root
                )
                base = base or rate
                print(f"{workers:>7} {rate:>11.0f} {rate / (workers * base):>10.2f}")
            sqlite = queue_cost_us(SqliteIndex(root / "queue.sqlite"), args.queue_jobs)
            pg = queue_cost_us(open_index(postgres.database(), root), args.queue_jobs)
            print(f"queue overhead per job (claim + complete with one outbox row), "
                  f"{args.queue_jobs} jobs:")  # fmt: skip
            print(f"  SQLite     {sqlite:8.0f} us")
            print(f"  PostgreSQL {pg:8.0f} us   ({pg / sqlite:.2f}x SQLite)")
            ceiling = 3600 / args.read_s
            print(f"one worker's ceiling at {args.read_s:g} s per read: {ceiling:.0f} reads/hour")
    finally:
        postgres.close()


if __name__ == "__main__":
    main()
