"""Temporary files created ahead, by a thread of their own, for data sets about to arrive.

Creating a file costs as much as writing a CT's data into it, and more while other associations'
fsyncs commit the file system's journal. An association takes a file that is already there, so
its thread never waits for a create between one instance's response and the next's first PDU.

A file waiting here is empty and would keep its creation time; a service starting on another
machine that shares the spool removes temporary files untouched for LEFTOVER_AGE_S (spool.py).
So the files waiting are touched every REFRESH_S, a twelfth of that, and one that was removed
anyway is never handed out: it is dropped and the next one (or a new one) is taken. The filler
is woken once half of them were taken, and creates the other half in one go: not once per
instance, each wake-up a thread switch (and a handover of the interpreter's lock) while an
association is being served."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from dicom_gateway.spool import LEFTOVER_AGE_S

log = logging.getLogger(__name__)

AHEAD = 8  # files kept ready: a burst on every association of a busy listener finds one each
RETRY_S = 1.0  # after a create failed (disk full, folder gone), before the next attempt
REFRESH_S = LEFTOVER_AGE_S / 12  # files waiting are touched this often: never taken for leftovers


class Spare(Protocol):
    def refresh(self) -> bool: ...
    def present(self) -> bool: ...
    def discard(self) -> None: ...


class SpareFiles:
    """`take()` a file created ahead; `close()` removes those never taken."""

    def __init__(
        self, create: Callable[[], Spare], ahead: int = AHEAD, refresh_s: float = REFRESH_S
    ) -> None:
        self._create = create
        self._ahead = ahead
        self._low = ahead // 2  # the filler is woken when no more than this many are left
        self._filling = True
        self._refresh_s = refresh_s
        self._ready: deque[Spare] = deque()
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._fill, name="spare-files", daemon=True)
        self._thread.start()

    def take(self) -> Spare:
        """One created ahead that is still there, or, when the filler fell behind or failed, one
        created now (so its error, a full disk, is the caller's to answer)."""
        while True:
            with self._changed:
                spare = self._ready.popleft() if self._ready else None
                if len(self._ready) <= self._low:
                    self._changed.notify_all()
            if spare is None:
                return self._create()
            # Touched at most REFRESH_S ago, and written to as soon as it is taken: its time
            # needs no update here, only its name must still be there.
            if spare.present():
                return spare
            spare.discard()  # removed under us: its name is gone, its descriptor goes too

    def _fill(self) -> None:
        failing = False
        refreshed = time.monotonic()
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._closed or self._wanted(), self._refresh_s)
                if self._closed:
                    return
                resting = not self._wanted()
            if time.monotonic() - refreshed >= self._refresh_s:
                self._refresh()
                refreshed = time.monotonic()
            if resting:
                continue
            try:
                spare = self._create()
            except OSError as exc:
                if not failing:  # once per streak, not once per attempt
                    log.warning("cannot create spare temporary files: %s", exc)
                failing = True
                with self._changed:
                    self._changed.wait_for(lambda: self._closed, RETRY_S)
                continue
            if failing:
                log.warning("spare temporary files can be created again")
                failing = False
            with self._changed:
                self._ready.append(spare)

    def _wanted(self) -> bool:
        """Under the lock: whether the filler creates one now. Once all are there it rests
        until half of them were taken (or some were found removed), then refills them all."""
        if len(self._ready) >= self._ahead:
            self._filling = False
        elif len(self._ready) <= self._low:
            self._filling = True
        return self._filling

    def _refresh(self) -> None:
        """Touch the files waiting; drop those removed meanwhile (the filler replaces them)."""
        with self._changed:
            waiting = list(self._ready)
        gone = [spare for spare in waiting if not spare.refresh()]
        with self._changed:
            for spare in gone:
                if spare in self._ready:  # not taken meanwhile
                    self._ready.remove(spare)
                    spare.discard()
                    self._filling = True  # replaced now, whatever is left

    def close(self) -> None:
        """Stop creating; what was created and never taken is removed."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._thread.join()
        with self._changed:
            while self._ready:
                self._ready.popleft().discard()
