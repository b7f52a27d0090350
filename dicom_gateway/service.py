"""`edge-agent serve`: listener, assembler, worker and outbox in one process, one thread each.

Stopping (SIGTERM) closes the listener, lets the read in progress finish, then returns. The read
itself is the `Reader` the caller opens (`open_reader`), after everything else is in place."""

from __future__ import annotations

import logging
import platform
import threading
from collections.abc import Callable
from pathlib import Path

from dicom_gateway.assembler import promote_stable_studies
from dicom_gateway.audit import Audit, keep_phi_out_of_logs
from dicom_gateway.index import Index, index_path
from dicom_gateway.jobs import SqliteJobQueue
from dicom_gateway.listener import Listener
from dicom_gateway.listeners import ListenerProcesses
from dicom_gateway.outbox import Outbox
from dicom_gateway.reader import Reader
from dicom_gateway.settings import GatewaySettings
from dicom_gateway.spool import Spool
from dicom_gateway.worker import Worker

log = logging.getLogger(__name__)


class Service:
    def __init__(self, settings: GatewaySettings, open_reader: Callable[[], Reader]) -> None:
        keep_phi_out_of_logs()
        self.settings = settings
        root = Path(settings.spool_dir)
        root.mkdir(parents=True, exist_ok=True)
        self.index = Index(index_path(root))
        self.audit = Audit(root / "audit.jsonl")
        self.spool = Spool(root, self.index, settings.min_free_mb)
        self.queue = SqliteJobQueue(self.index, settings.max_attempts)
        self.outbox = Outbox(self.index, settings, self.audit)
        self.listener = Listener(settings, self.spool, self.audit)
        self.more_listeners = ListenerProcesses(settings, settings.listener_processes - 1)
        self.worker = Worker(
            f"{platform.node()}-worker",
            self.queue,
            self.spool,
            self.outbox,
            open_reader(),  # models load once, here, before anything listens
            self.audit,
            settings.lease_s,
        )

    def run(self, stop: threading.Event, on_tick=None) -> None:
        """Serve until `stop` is set; `on_tick(status)` is called every second meanwhile."""
        self.more_listeners.start()  # all listening before the service answers
        self.listener.start()
        threads = [
            threading.Thread(target=self._loop, args=(stop, self._read_step), name="reader"),
            threading.Thread(target=self._loop, args=(stop, self.outbox.send_due), name="outbox"),
        ]
        for thread in threads:
            thread.start()
        self.audit("service_started", ae_title=self.settings.ae_title, port=self.settings.port)
        while not stop.wait(1.0):
            if on_tick:
                on_tick(self.status())
        self.listener.stop()
        self.more_listeners.stop()
        for thread in threads:
            thread.join()
        self.worker.close()
        self.audit("service_stopped")
        self.audit.close()

    def status(self) -> dict[str, int]:
        """Counts for the status panel: studies, jobs and outbox rows by state."""
        counts = {}
        for table in ("studies", "jobs", "outbox"):
            for row in self.index.read(f"SELECT state, COUNT(*) FROM {table} GROUP BY state"):
                counts[f"{table} {row[0]}"] = row[1]
        counts["instances"] = self.index.read("SELECT COUNT(*) FROM instances")[0][0]
        return counts

    def _read_step(self) -> bool:
        promote_stable_studies(
            self.index, self.settings.stable_after_s, self.settings.late_instances
        )
        return self.worker.run_once()

    def _loop(self, stop: threading.Event, step) -> None:
        """Run `step` until stopped; an error is logged and the loop goes on."""
        while not stop.is_set():
            try:
                busy = step()
            except Exception:
                log.exception("%s step failed; continuing", threading.current_thread().name)
                busy = False
            if not busy:
                stop.wait(self.settings.poll_s)
