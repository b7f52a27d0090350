"""`edge-agent serve`: listener, assembler, worker and outbox, one thread each; in one process
(role "all"), or one role per process, on as many machines as share the index and the spool.

Stopping (SIGTERM) closes the listener, lets the read in progress finish (a worker drains), then
returns. The read itself is the `Reader` the caller opens (`open_reader`), after everything else
is in place, and only where a worker runs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from dicom_gateway import nodes
from dicom_gateway.assembler import listening_again, promote_stable_studies
from dicom_gateway.audit import Audit, audit_path, keep_phi_out_of_logs
from dicom_gateway.dicomweb_extra import require, web_listener
from dicom_gateway.engines import open_index
from dicom_gateway.jobs import IndexJobQueue
from dicom_gateway.listener import Listener, freeze_startup
from dicom_gateway.listeners import ListenerProcesses
from dicom_gateway.outbox import Outbox, held_destinations
from dicom_gateway.reader import Reader
from dicom_gateway.settings import GatewaySettings, StartError
from dicom_gateway.spool import Spool
from dicom_gateway.web_settings import is_web
from dicom_gateway.worker import Worker

log = logging.getLogger(__name__)

STORES_WAIT_S = 120  # how long a stop waits for the instances being stored


class Service:
    def __init__(
        self, settings: GatewaySettings, open_reader: Callable[[], Reader], role: str = "all"
    ) -> None:
        keep_phi_out_of_logs()
        if role in ("all", "outbox") and any(is_web(text) for text in settings.destinations):
            require("a dicomweb+ destination")  # the sending node: refused at start, not at send
        self.settings = settings
        self.node = nodes.Node.this_process(role)
        root = Path(settings.spool_dir)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartError(f"spool_dir {root}: {exc.strerror}") from None
        self.index = open_index(settings.database, root)
        self.audit = Audit(audit_path(root, self.index.dialect.shared), node=self.node.name)
        self.spool = Spool(root, self.index, settings.min_free_mb)
        self.queue = IndexJobQueue(self.index, settings.max_attempts)
        self.outbox = Outbox(self.index, settings, self.audit, node=self.node.name)
        self.listener = self.worker = self.web = self.more_listeners = None
        if role in ("all", "listener"):
            self.listener = Listener(settings, self.spool, self.audit)
            self.more_listeners = ListenerProcesses(settings, settings.listener_processes - 1)
            self.web = web_listener(settings, self.spool, self.audit)  # STOW-RS, when configured
        if role in ("all", "worker"):
            self.worker = Worker(
                self.node.name,
                self.queue,
                self.spool,
                self.outbox,
                open_reader(),  # models load once, here, before anything listens
                self.audit,
                settings.lease_s,
                settings.routing,
            )

    def run(self, stop: threading.Event, on_tick=None) -> None:
        """Serve until `stop` is set; `on_tick(status)` is called every second meanwhile."""
        try:
            self._start_listening()
        except BaseException:  # nothing listens: the reader's models and the index let go
            self._close()
            raise
        if self.listener is not None:
            listening_again(self.index, self.node.name)
        freeze_startup()  # the reader, warmed up, and the listeners are ready
        poll = self.settings.poll_s
        steps = {}
        if self.worker is not None:
            steps["reader"] = (self._read_step, poll)
        if self.node.role in ("all", "outbox"):
            self.outbox.warn_held()
            steps["outbox"] = (self.outbox.send_due, poll)
        threads = [
            threading.Thread(target=self._loop, args=(stop, *step), name=name)
            for name, step in steps.items()
        ]
        drained = threading.Event()  # the node beats on while its last read finishes
        beat = threading.Thread(
            target=self._loop, args=(drained, self._beat, nodes.BEAT_S), name="beat"
        )
        for thread in [*threads, beat]:
            thread.start()
        self.audit(
            "service_started",
            role=self.node.role,
            ae_title=self.settings.ae_title,
            port=self.settings.port,
        )
        while not stop.wait(1.0):
            if on_tick:
                on_tick(self.status())
        if self.listener is not None:
            self.listener.stop()
            self.more_listeners.stop()
        if self.web is not None:
            self.web.stop()  # a STOW request past GRACE_S is cancelled, its store goes on
        if not self.spool.wait_idle(STORES_WAIT_S):
            log.warning("instances still being stored after %d s; stopping anyway", STORES_WAIT_S)
        for thread in threads:
            thread.join()
        drained.set()
        beat.join()
        self.index.retrying(lambda: nodes.beat(self.index, self.node, "stopped"), "last beat", 10)
        self.audit("service_stopped", role=self.node.role)
        self._close()

    def _close(self) -> None:
        if self.worker is not None:
            self.worker.close()
        self.audit.close()
        self.index.close()

    def _start_listening(self) -> None:
        """STOW-RS beside C-STORE, then every listener process: all listening before the service
        answers. One that cannot start stops those started and ends the start (StartError)."""
        started = []
        try:
            for part in (self.web, self.more_listeners, self.listener):
                if part is not None:
                    part.start()
                    started.append(part)
        except BaseException:
            for part in reversed(started):
                part.stop()
            raise

    def status(self) -> dict[str, int]:
        """Counts for the status panel: studies, jobs and outbox rows by state."""
        counts = {}
        for table in ("studies", "jobs", "outbox"):
            for row in self.index.read(f"SELECT state, COUNT(*) FROM {table} GROUP BY state"):
                counts[f"{table} {row[0]}"] = row[1]
        held = held_destinations(self.index, self.settings.destination_names)
        if held:  # pending rows the outbox keeps and does not send
            counts["outbox held"] = sum(held.values())
            counts["outbox pending"] -= counts["outbox held"]
        counts["instances"] = self.index.read("SELECT COUNT(*) FROM instances")[0][0]
        return counts

    def _beat(self) -> bool:
        """This node is alive, and reading which job; then a pause of BEAT_S."""
        job = self.worker.current if self.worker is not None else None
        state = "reading" if job is not None else "idle"
        nodes.beat(self.index, self.node, state, job.id if job else None)
        return False

    def _read_step(self) -> bool:
        promote_stable_studies(
            self.index, self.settings.stable_after_s, self.settings.late_instances
        )
        return self.worker.run_once()

    def _loop(self, stop: threading.Event, step, pause: float) -> None:
        """Run `step` until stopped, `pause` seconds apart while it finds nothing to do; an error
        is logged and the loop goes on."""
        while not stop.is_set():
            try:
                busy = step()
            except Exception:
                log.exception("%s step failed; continuing", threading.current_thread().name)
                busy = False
            if not busy:
                stop.wait(pause)
