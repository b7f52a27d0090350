"""The running roles of a site (listeners, workers, outboxes), each named host:pid: on the leases
it holds, in the audit, and in the index's `nodes` table that `pacs status` reads."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

from dicom_gateway.index import Index

ROLES = ("all", "listener", "worker", "outbox")
BEAT_S = 5.0  # how often a node says it is alive
ALIVE_S = 30.0  # a node silent for longer than this is listed as gone


@dataclass(frozen=True)
class Node:
    name: str  # host:pid
    role: str

    @classmethod
    def this_process(cls, role: str) -> Node:
        if role not in ROLES:
            raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
        return cls(f"{platform.node()}:{os.getpid()}", role)


def beat(index: Index, node: Node, state: str, job_id: int | None = None) -> None:
    """Record that `node` is alive, what it is doing, on the index's clock."""
    with index.write() as db:
        now = db.now()
        db.execute(
            "INSERT INTO nodes (name, role, state, job_id, started, last_seen) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET state = excluded.state, "
            "job_id = excluded.job_id, last_seen = excluded.last_seen",
            (node.name, node.role, state, job_id, now, now),
        )
