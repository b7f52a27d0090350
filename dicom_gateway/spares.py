"""Temporary files created ahead, by a thread of their own, for data sets about to arrive.

Creating a file costs as much as writing a CT's data into it, and more while other associations'
fsyncs commit the file system's journal. An association takes a file that is already there, so
its thread never waits for a create between one instance's response and the next's first PDU."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

AHEAD = 8  # files kept ready: a burst on every association of a busy listener finds one each
RETRY_S = 1.0  # after a create failed (disk full, folder gone), before the next attempt


class Spare(Protocol):
    def discard(self) -> None: ...


class SpareFiles:
    """`take()` a file created ahead; `close()` removes those never taken."""

    def __init__(self, create: Callable[[], Spare], ahead: int = AHEAD) -> None:
        self._create = create
        self._ready: queue.Queue[Spare] = queue.Queue(maxsize=ahead)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._fill, name="spare-files", daemon=True)
        self._thread.start()

    def take(self) -> Spare:
        """One created ahead, or, when the filler fell behind or failed, one created now (so
        its error, a full disk, is the caller's to answer)."""
        try:
            return self._ready.get_nowait()
        except queue.Empty:
            return self._create()

    def _fill(self) -> None:
        while not self._closed.is_set():
            try:
                spare = self._create()
            except OSError as exc:
                log.warning("cannot create a spare temporary file: %s", exc)
                self._closed.wait(RETRY_S)
                continue
            self._ready.put(spare)  # waits while enough are ready

    def close(self) -> None:
        """Stop creating; what was created and never taken is removed."""
        self._closed.set()
        while self._thread.is_alive():
            self._discard_ready()  # the filler may wait to put one more
            self._thread.join(0.05)
        self._discard_ready()

    def _discard_ready(self) -> None:
        while True:
            try:
                self._ready.get_nowait().discard()
            except queue.Empty:
                return
