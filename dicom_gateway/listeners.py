"""More listener processes on the service's port: associations received truly in parallel.

pynetdicom parses every PDU in Python, so one process receives at most one core's worth however
many associations are open. With `[gateway] listener_processes = N` the service starts N - 1
more processes, each with its own listener, spool writer and index connection on the same port
(SO_REUSEPORT: the kernel spreads new connections over them). Their index writes take turns
through the spool's lock file, and each instance is still acknowledged only once its own bytes
and row are durable. A process started with `spawn` carries nothing of the service's models or
threads; it ends when told to, or when the service's end of its pipe closes (the service died)."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path

from dicom_gateway.audit import Audit, audit_path, keep_phi_out_of_logs
from dicom_gateway.engines import open_index
from dicom_gateway.listener import Listener, freeze_startup
from dicom_gateway.nodes import Node
from dicom_gateway.settings import GatewaySettings, StartError
from dicom_gateway.spool import Spool

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0  # a fresh interpreter imports pynetdicom and pydicom first
STOP_TIMEOUT_S = 30.0


class ListenerFailed(RuntimeError):
    """A listener process failed to start for a reason that is not the settings' (those are
    StartError): the service does not start, and the reason is ours to look into."""


@dataclass(frozen=True)
class _Logging:
    """The service's log level and line format, for a process that starts with neither."""

    level: int
    formatter: logging.Formatter | None

    @classmethod
    def current(cls) -> _Logging:
        root = logging.getLogger()
        formatter = root.handlers[0].formatter if root.handlers else None
        return cls(root.level, formatter)

    def apply(self) -> None:
        handler = logging.StreamHandler()
        if self.formatter is not None:
            handler.setFormatter(self.formatter)
        logging.basicConfig(level=self.level, handlers=[handler], force=True)


class ListenerProcesses:
    """The extra listener processes of one service: started together, stopped together."""

    def __init__(self, settings: GatewaySettings, count: int) -> None:
        self._settings = settings
        self._count = count
        self._running: list[tuple[multiprocessing.Process, object]] = []

    def start(self) -> list[int]:
        """Start them all, each listening before this returns; their process ids."""
        context = multiprocessing.get_context("spawn")
        for _ in range(self._count):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=_serve,
                args=(self._settings, theirs, _Logging.current()),
                name="dicom-listener",
                daemon=True,
            )
            process.start()
            theirs.close()
            self._running.append((process, ours))
        for process, pipe in self._running:
            if not pipe.poll(START_TIMEOUT_S):
                self.stop()
                raise ListenerFailed(f"listener process {process.pid} did not start in time")
            answer = pipe.recv()
            if answer != "listening":
                self.stop()
                why, text = answer
                error = StartError if why == "cannot start" else ListenerFailed
                raise error(f"listener process {process.pid}: {text}")
        return [process.pid for process, _ in self._running]

    def stop(self) -> None:
        """Each finishes the associations in flight, then exits."""
        for _, pipe in self._running:
            with contextlib.suppress(OSError):  # already gone
                pipe.send("stop")
        for process, pipe in self._running:
            process.join(STOP_TIMEOUT_S)
            if process.is_alive():
                log.error("listener process %d did not stop; terminating it", process.pid)
                process.terminate()
                process.join()
            pipe.close()
        self._running = []


def _serve(settings: GatewaySettings, pipe, logging_setup: _Logging) -> None:
    """A listener process: the service's listener, on the shared port, until told to stop."""
    logging_setup.apply()
    keep_phi_out_of_logs()
    root = Path(settings.spool_dir)
    try:
        index = open_index(settings.database, root)
        node = Node.this_process("listener").name
        audit = Audit(audit_path(root, index.dialect.shared), node=node)
        listener = Listener(settings, Spool(root, index, settings.min_free_mb, clean=False), audit)
        listener.start()
    except StartError as exc:  # the port, the address, the TLS files: the settings' to mend
        pipe.send(("cannot start", str(exc)))
        return
    except Exception as exc:  # reported to the service, which refuses to start
        pipe.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    freeze_startup()
    pipe.send("listening")
    log.info("listener process %d on port %d", os.getpid(), settings.port)
    with contextlib.suppress(EOFError):  # EOF: the service is gone, take nothing more
        pipe.recv()  # "stop"
    listener.stop()
    audit.close()
    index.close()
