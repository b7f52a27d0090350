"""Temporary files created ahead for the data sets about to arrive."""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path

import pytest

from dicom_gateway.engines import open_index
from dicom_gateway.spares import AHEAD, SpareFiles
from dicom_gateway.spool import LEFTOVER_AGE_S, ReceivedFile, Spool
from dicom_gateway.status import SUCCESS
from tests.dicom_gateway.scp import listening, stored_as_sent
from tests.peers import wait_for
from tests.support import c_store, ct_copies


def test_files_are_created_ahead_and_those_never_taken_are_removed_at_close(tmp_path):
    spares = SpareFiles(lambda: ReceivedFile(tmp_path))
    try:
        ready = AHEAD
        wait_for(lambda: len(list(tmp_path.iterdir())) == ready, 10, "the files created ahead")
        ahead = {p.name for p in tmp_path.iterdir()}
        # The filler rests until half of them were taken, then refills them all.
        taken = [spares.take() for _ in range(AHEAD // 2)]
        names = {t.name.rsplit("/", 1)[-1] for t in taken}
        assert names <= ahead  # ones that were there, not new ones
        for t in taken:
            t.write(b"a data set")
        wait_for(
            lambda: len(list(tmp_path.iterdir())) == ready + len(taken), 10, "the filler to refill"
        )
    finally:
        spares.close()
    assert {p.name for p in tmp_path.iterdir()} == names
    for t in taken:
        t.discard()


def test_when_no_file_can_be_created_the_taker_hears_why():
    def full_disk():
        raise OSError(errno.ENOSPC, "No space left on device")

    spares = SpareFiles(full_disk)
    try:
        with pytest.raises(OSError, match="No space left"):
            spares.take()
    finally:
        spares.close()


def test_spares_removed_by_another_services_start_never_refuse_an_instance(tmp_path, postgres):
    # A service starting on another machine sharing the spool removes temporary files untouched
    # for LEFTOVER_AGE_S: the empty files a listener idle that long created ahead among them.
    root, url = tmp_path / "spool", postgres.database()
    root.mkdir()
    listener, spool, port = listening(root, open_index(url, root), spares_ready=True)
    try:
        long_ago = time.time() - 2 * LEFTOVER_AGE_S
        for spare in (root / "tmp").glob("*.part"):
            os.utime(spare, (long_ago, long_ago))
        other = open_index(url, root)
        Spool(root, other, min_free_mb=1, clean=True)
        other.close()
        assert len(list((root / "tmp").glob("*.part"))) < AHEAD  # the filler may have refilled
        sent = ct_copies(tmp_path / "ct", 3, "spares-removed")
        assert [status for _, status in c_store(port, sent)] == [SUCCESS] * 3
        stored_as_sent(spool, *sent)
    finally:
        listener.stop()
        listener._spool.index.close()


def test_a_file_taken_ahead_by_an_association_and_removed_is_replaced(tmp_path):
    root = tmp_path / "spool"
    listener, spool, port = listening(root, spares_ready=True)
    sent = ct_copies(tmp_path / "ct", 3, "held-spare-removed")
    try:
        stores = c_store(port, sent)
        assert next(stores)[1] == SUCCESS
        for spare in (root / "tmp").glob("*.part"):  # the files created ahead for the next two
            spare.unlink()
        assert [status for _, status in stores] == [SUCCESS] * 2
    finally:
        listener.stop()
    assert not list((root / "tmp").iterdir())
    stored_as_sent(spool, *sent)


def test_files_waiting_are_kept_fresh_and_those_removed_are_replaced(tmp_path):
    spares = SpareFiles(lambda: ReceivedFile(tmp_path), refresh_s=0.2)
    try:
        wait_for(lambda: len(list(tmp_path.iterdir())) == AHEAD, 10, "the files created ahead")
        first = sorted(tmp_path.iterdir())
        long_ago = time.time() - 2 * LEFTOVER_AGE_S
        for path in first:
            os.utime(path, (long_ago, long_ago))
        first[0].unlink()

        def refreshed() -> bool:
            paths = list(tmp_path.iterdir())
            return len(paths) == AHEAD and all(
                p.stat().st_mtime > long_ago + LEFTOVER_AGE_S for p in paths
            )

        wait_for(refreshed, 10, "the files to be touched and the removed one replaced")
        assert all(Path(spares.take().name).exists() for _ in range(AHEAD + 2))
    finally:
        spares.close()


def test_a_streak_of_failed_creates_is_logged_once_and_so_is_its_end(tmp_path, caplog):
    failed = []

    def create() -> ReceivedFile:  # a disk full for three attempts
        if len(failed) < 3:
            failed.append(1)
            raise OSError(errno.ENOSPC, "No space left on device")
        return ReceivedFile(tmp_path)

    with caplog.at_level(logging.WARNING, logger="dicom_gateway.spares"):
        spares = SpareFiles(create, ahead=1)
        try:
            wait_for(lambda: list(tmp_path.iterdir()), 15, "a create to succeed again")
        finally:
            spares.close()
    assert [r.getMessage() for r in caplog.records] == [
        "cannot create spare temporary files: [Errno 28] No space left on device",
        "spare temporary files can be created again",
    ]
