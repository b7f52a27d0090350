"""What an operator asks of a running site: how much waits, who is reading, how fast it goes.
Read from the shared index, on its clock, so it holds for every node at once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dicom_gateway.index import Index
from dicom_gateway.nodes import ALIVE_S
from dicom_gateway.outbox import held_destinations

WINDOW_S = 3600.0  # "the last hour": the jobs counted and the nodes shown


@dataclass(frozen=True)
class NodeSeen:
    name: str  # host:pid
    role: str
    state: str  # idle, reading, stopped
    job_id: int | None
    seen_s_ago: float

    @property
    def alive(self) -> bool:
        return self.state != "stopped" and self.seen_s_ago <= ALIVE_S


@dataclass(frozen=True)
class Overview:
    receiving: int  # studies still arriving
    queued: int  # read jobs waiting for a worker
    running: int
    reads_last_hour: int  # jobs done in the last hour
    failed_last_hour: int
    oldest_waiting: str | None  # Study Instance UID of the oldest queued job
    oldest_waiting_s: float  # how long it has waited
    outbox_pending: int  # to be sent (or retried)
    outbox_held: int  # kept, not sent: their destination is no longer configured
    nodes: tuple[NodeSeen, ...]  # seen in the last hour, by role then name

    @property
    def workers_alive(self) -> int:
        return sum(n.alive and n.role in ("all", "worker") for n in self.nodes)


def overview(index: Index, configured: Iterable[str]) -> Overview:
    """`configured`: the destinations the outbox sends to; rows for any other are held."""
    held = sum(held_destinations(index, configured).values())
    with index.write() as db:
        now = db.now()
        since = now - WINDOW_S

        def count(sql: str, *args) -> int:
            return int(db.execute(sql, args).fetchone()[0])

        oldest = db.execute(
            "SELECT study_uid, created FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 1"
        ).fetchone()
        nodes = db.execute(
            "SELECT name, role, state, job_id, last_seen FROM nodes WHERE last_seen >= ? "
            "ORDER BY role, name",
            (since,),
        ).fetchall()
        return Overview(
            receiving=count("SELECT COUNT(*) FROM studies WHERE state = 'receiving'"),
            queued=count("SELECT COUNT(*) FROM jobs WHERE state = 'queued'"),
            running=count("SELECT COUNT(*) FROM jobs WHERE state = 'running'"),
            reads_last_hour=count(
                "SELECT COUNT(*) FROM jobs WHERE state = 'done' AND finished >= ?", since
            ),
            failed_last_hour=count(
                "SELECT COUNT(*) FROM jobs WHERE state = 'failed' AND finished >= ?", since
            ),
            oldest_waiting=oldest["study_uid"] if oldest else None,
            oldest_waiting_s=now - oldest["created"] if oldest else 0.0,
            outbox_pending=count("SELECT COUNT(*) FROM outbox WHERE state = 'pending'") - held,
            outbox_held=held,
            nodes=tuple(
                NodeSeen(r["name"], r["role"], r["state"], r["job_id"], now - r["last_seen"])
                for r in nodes
            ),
        )
