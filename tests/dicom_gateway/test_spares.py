"""Temporary files created ahead for the data sets about to arrive."""

from __future__ import annotations

import errno

import pytest

from dicom_gateway.spares import AHEAD, SpareFiles
from dicom_gateway.spool import ReceivedFile
from tests.peers import wait_for


def test_files_are_created_ahead_and_those_never_taken_are_removed_at_close(tmp_path):
    spares = SpareFiles(lambda: ReceivedFile(tmp_path))
    try:
        # AHEAD ready, and one more made that waits for a place among them.
        ready = AHEAD + 1
        wait_for(lambda: len(list(tmp_path.iterdir())) == ready, 10, "the files created ahead")
        ahead = {p.name for p in tmp_path.iterdir()}
        taken = spares.take()
        assert taken.name.rsplit("/", 1)[-1] in ahead  # one that was there, not a new one
        taken.write(b"a data set")
        wait_for(lambda: len(list(tmp_path.iterdir())) == ready + 1, 10, "the filler to refill")
    finally:
        spares.close()
    assert [p.name for p in tmp_path.iterdir()] == [taken.name.rsplit("/", 1)[-1]]
    taken.discard()


def test_when_no_file_can_be_created_the_taker_hears_why():
    def full_disk():
        raise OSError(errno.ENOSPC, "No space left on device")

    spares = SpareFiles(full_disk)
    try:
        with pytest.raises(OSError, match="No space left"):
            spares.take()
    finally:
        spares.close()
