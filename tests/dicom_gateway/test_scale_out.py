"""A site of several machines, as separate processes on one: 2 listeners, 3 workers and 1 outbox
sharing one real PostgreSQL and one spool folder, Orthanc as the PACS that sends the studies and
receives the results. A worker is killed mid-read, another drained with SIGTERM, and PostgreSQL
restarted in the middle; every study is still read exactly once and every result delivered once.

The workers' read is a stand-in of fixed duration (tests/gateway_node.py); everything else is the
real service."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from dicom_gateway.nodes import ALIVE_S
from tests.gateway_node import RESULT_SERIES_NUMBER
from tests.peers import Orthanc, echo, free_port, wait_for
from tests.support import ct_copies, run_cli

EDGE_AGENT = str(Path(sys.executable).parent / "edge-agent")


class Site:
    """The processes of one site; each logs to its own file in `folder`."""

    def __init__(
        self, folder: Path, database: str, orthanc: Orthanc, ports: tuple[int, int]
    ) -> None:
        self.folder, self.database = folder, database
        self.spool = folder / "spool"
        self.processes: dict[str, subprocess.Popen] = {}
        common = {
            "spool_dir": str(self.spool),
            "database": database,
            "stable_after_s": 2.0,
            "poll_s": 0.2,
            "lease_s": 6.0,
            "retry_first_s": 0.5,
            "retry_max_s": 2.0,
            "destinations": [f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"],
        }
        self.configs = [
            self._config(f"node{n}", {**common, "port": port}) for n, port in enumerate(ports)
        ]  # fmt: skip

    def _config(self, name: str, settings: dict) -> Path:
        path = self.folder / f"{name}.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["[gateway]"] + [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, name: str, command: list[str]) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "ab")  # noqa: SIM115 - the child holds it
        self.processes[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self.processes[name]

    def serve(self, name: str, role: str, config: Path) -> None:
        self.start(name, [EDGE_AGENT, "serve", "--role", role, "--config", str(config)])

    def worker(self, name: str, read_s: float) -> None:
        module = [sys.executable, "-m", "tests.gateway_node", "--config", str(self.configs[0])]
        self.start(name, [*module, "--read-s", str(read_s)])

    def node(self, name: str) -> str:
        return f"{platform.node()}:{self.processes[name].pid}"

    def rows(self, sql: str, *args) -> list[tuple]:
        with psycopg.connect(self.database) as db:
            return db.execute(sql, args).fetchall()

    def audit(self) -> list[dict]:
        """Every machine's trail (one here: this host's file), whole lines only."""
        [trail] = (self.spool / "audit").glob("*.jsonl")
        assert not (self.spool / "audit.jsonl").exists()
        return [json.loads(line) for line in trail.read_text().splitlines()]

    def stop(self) -> dict[str, int]:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        return {name: process.wait(timeout=60) for name, process in self.processes.items()}


def _push_all(orthanc: Orthanc, pushes: list[tuple[str, list[str]]]) -> None:
    """One association from Orthanc to each listener named, all at once, carrying its studies."""
    threads = [
        threading.Thread(target=orthanc.send, args=(studies, modality))
        for modality, studies in pushes
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)


def _running_job_of(site: Site, names: list[str]) -> tuple[str, int, str] | None:
    """(process name, job id, study) of a job one of these workers is reading now."""
    owners = {site.node(name): name for name in names}
    for job_id, study_uid, owner in site.rows(
        "SELECT id, study_uid, lease_owner FROM jobs WHERE state = 'running'"
    ):
        if owner in owners:
            return owners[owner], job_id, study_uid
    return None


def test_two_listeners_three_workers_one_outbox_read_and_deliver_each_study_once(
    tmp_path, postgres
):
    sources = [ct_copies(tmp_path / "ct" / f"s{n}", 2, f"site-{n}") for n in range(20)]
    site_folder = tmp_path / "site"
    site_folder.mkdir()
    ports = (free_port(), free_port())
    orthanc = Orthanc(
        tmp_path / "orthanc",
        {f"edge{n}": ["EDGEAGENT", "127.0.0.1", port] for n, port in enumerate(ports)},
    )
    site = Site(site_folder, postgres.database(), orthanc, ports)
    try:
        ids = [
            orthanc.post("/instances", p.read_bytes())["ParentStudy"] for s in sources for p in s
        ]
        studies = list(dict.fromkeys(ids))
        assert len(studies) == 20
        for n in range(2):
            site.serve(f"listener{n}", "listener", site.configs[n])
        site.serve("outbox", "outbox", site.configs[0])
        workers = [f"worker{n}" for n in range(3)]
        for name in workers:
            site.worker(name, read_s=1.5)
        for port in ports:
            wait_for(lambda p=port: echo(p, "EDGEAGENT", "ECHOSCU") == 0, 60, "a listener")

        # First wave: two associations, one per listener, five studies each.
        _push_all(orthanc, [("edge0", studies[0:5]), ("edge1", studies[5:10])])
        victim, killed_job, killed_study = wait_for(
            lambda: _running_job_of(site, workers), 60, "a worker reading"
        )
        os.kill(site.processes[victim].pid, signal.SIGKILL)
        site.processes[victim].wait()
        done_before = site.rows("SELECT COUNT(*) FROM jobs WHERE state = 'done'")[0][0]
        sent_before = sum(e["event"] == "object_sent" for e in site.audit())
        postgres.restart()  # every role loses its connections mid-run
        assert done_before < 10 and sent_before < 10  # reads and sends were left to do

        # Second wave, after the restart: the listeners reconnected.
        _push_all(orthanc, [("edge0", studies[10:15]), ("edge1", studies[15:20])])
        alive = [w for w in workers if w != victim]
        drained, drained_job, _ = wait_for(
            lambda: _running_job_of(site, alive), 60, "a worker reading after the restart"
        )
        site.processes[drained].terminate()  # SIGTERM: finish this read, take no more
        assert site.processes[drained].wait(timeout=60) == 0

        def all_delivered() -> bool:
            states = site.rows("SELECT state, COUNT(*) FROM jobs GROUP BY state")
            pending = site.rows("SELECT COUNT(*) FROM outbox WHERE state != 'sent'")[0][0]
            return dict(states) == {"done": 20} and pending == 0

        wait_for(all_delivered, 180, "20 reads done and every result sent")
        jobs = site.rows("SELECT id, study_uid, attempts, state FROM jobs ORDER BY id")
        assert len({study for _, study, _, _ in jobs}) == 20  # one job per study
        reads = [e for e in site.audit() if e["event"] == "study_read"]
        assert sorted(Counter(e["study_uid"] for e in reads).values()) == [1] * 20
        [takeover] = [e for e in reads if e["job"] == killed_job]
        assert takeover["attempt"] == 2 and takeover["node"] != site.node(victim)
        assert takeover["study_uid"] == killed_study
        [last_read] = [e for e in reads if e["job"] == drained_job]
        assert last_read["node"] == site.node(drained)  # the drained worker finished its read
        sent = [e for e in site.audit() if e["event"] == "object_sent"]
        assert len(sent) == 20 and len({e["sop_uid"] for e in sent}) == 20
        number = str(RESULT_SERIES_NUMBER)
        for study in studies:
            series = [
                orthanc.get(f"/series/{s}") for s in orthanc.get(f"/studies/{study}")["Series"]
            ]
            results = [s for s in series if s["MainDicomTags"].get("SeriesNumber") == number]
            assert [len(s["Instances"]) for s in results] == [1], "one result per study"

        def victim_listed_as_gone() -> bool:  # on the database's clock, as the status is
            [(silent,)] = site.rows(
                "SELECT extract(epoch FROM now())::float8 - last_seen FROM nodes WHERE name = %s",
                site.node(victim),
            )
            return silent > ALIVE_S

        wait_for(victim_listed_as_gone, ALIVE_S + 10, "the killed worker to be listed as gone")
        status = run_cli("pacs", "status", "--config", site.configs[0])
        assert status.returncode == 0, status.stderr
        assert "reads in the last hour: 20 (0 failed)" in status.stdout
        assert "workers alive: 1" in status.stdout  # one killed, one drained
        assert "queue depth: 0 queued, 0 reading" in status.stdout
    finally:
        codes = site.stop()
        orthanc.stop()
    del codes[victim]
    assert set(codes.values()) == {0}, codes


@pytest.mark.parametrize("role", ["worker", "outbox", "listener"])
def test_a_role_without_a_shared_index_is_refused_in_one_line(tmp_path, role):
    config = tmp_path / "edge-agent.toml"
    config.write_text(f'[gateway]\nspool_dir = "{tmp_path / "spool"}"\n')
    done = run_cli("serve", "--role", role, "--config", config)
    assert done.returncode == 2
    assert "needs the shared index" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_an_index_database_that_does_not_answer_is_one_line(tmp_path):
    port = free_port()  # nothing listens there
    config = tmp_path / "edge-agent.toml"
    config.write_text(f'[gateway]\ndatabase = "postgresql://edge@127.0.0.1:{port}/site"\n')
    done = run_cli("pacs", "status", "--config", config)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: the index database site on 127.0.0.1:{port} did not answer within 10 s"
    ]
