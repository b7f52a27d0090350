"""The write-out of a received file's pages, started while the rest of it arrives."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from dicom_gateway.spool import ReceivedFile
from dicom_gateway.writeback import MIN_RANGE, PAGE, Writeback


@pytest.mark.skipif(sys.platform != "linux", reason="sync_file_range is Linux's")
def test_whole_pages_are_sent_to_the_disk_as_they_are_written(tmp_path):
    received = ReceivedFile(tmp_path)
    data = os.urandom(9 * 131072 + 777)
    follow = []
    for start in range(0, len(data), 131072):  # as a C-STORE's PDUs arrive
        received.write(data[start : start + 131072])
        follow.append(received._writeback.started)
    # Whole pages only, once MIN_RANGE of them is waiting (one submission per 512 KiB, not
    # one per PDU); never a page still being filled.
    assert MIN_RANGE == 4 * 131072
    assert follow == [0, 0, 0, 524288, 524288, 524288, 524288, 1048576, 1048576, 1048576]
    received.complete()  # the data set is whole: the rest, its last page too, goes now
    assert received._writeback.started == len(data)
    received.sync()
    received.close()
    assert Path(received.name).read_bytes() == data


@pytest.mark.skipif(sys.platform != "linux", reason="sync_file_range is Linux's")
def test_a_file_the_call_refuses_only_loses_the_head_start():
    read_end, write_end = os.pipe()  # sync_file_range refuses a pipe (ESPIPE)
    try:
        writeback = Writeback(write_end)
        writeback.advance(MIN_RANGE + PAGE)
        assert writeback.started == 0 and not writeback._enabled  # not tried again
        writeback.advance(2 * MIN_RANGE + PAGE)
        assert writeback.started == 0
    finally:
        os.close(read_end)
        os.close(write_end)
