"""Write-out of a file's pages started while the rest of it is still arriving (Linux).

A received data set is made durable by one fsync once its last byte is written; left alone,
the kernel writes all of it then, and the C-STORE waits for the whole write. Starting the
write-out of whole pages once MIN_RANGE of them were written (sync_file_range,
SYNC_FILE_RANGE_WRITE: asynchronous, no metadata, no durability promise) leaves that fsync
little more than the last pages and the metadata, and those start too once the data set is
complete, while it is checked (`finish`). The fsync stays the one durable point; where the call
does not exist (not Linux) or fails, nothing changes but the speed."""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
SYNC_FILE_RANGE_WRITE = 2
# Pages are started in pieces of at least this much: each call is one submission to the disk
# (~35 us of this thread on a virtio disk, most of it the notification), and a 128 KiB piece
# per PDU cost more of the receiving thread than its head start saved the fsync (fewer, larger
# pieces: ~6 % faster per CT instance at 1 association, benchmarks/ingest.py).
MIN_RANGE = 512 * 1024


def _sync_file_range():
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call


_CALL = _sync_file_range()


class Writeback:
    """Follows one file being appended to; `advance(size)` after each write."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.started = 0  # pages before this offset are on their way to the disk
        self._enabled = _CALL is not None

    def advance(self, size: int) -> None:
        end = size - size % PAGE  # whole pages only: a page still being filled waits
        if end - self.started >= MIN_RANGE:
            self._start(end)

    def finish(self, size: int) -> None:
        """The file is complete: the rest (its last page too) starts on its way now, while the
        data set is checked, so the fsync after the check finds it written or under way."""
        if size > self.started:
            self._start(size)

    def _start(self, end: int) -> None:
        if not self._enabled:
            return
        if _CALL(self._fd, self.started, end - self.started, SYNC_FILE_RANGE_WRITE) != 0:
            # The fsync still writes everything and reports a real I/O error; only the head
            # start is lost (a file system that does not support the call).
            log.debug("sync_file_range: %s", os.strerror(ctypes.get_errno()))
            self._enabled = False
            return
        self.started = end
