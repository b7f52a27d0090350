"""Spool and outbox in-process, against a real index (SQLite, PostgreSQL) and a real Orthanc."""

from __future__ import annotations

import json
import logging
import os
import threading
import time

import pydicom
import pytest
from pydicom.uid import MRImageStorage

from dicom_gateway.assembler import promote_stable_studies
from dicom_gateway.audit import Audit
from dicom_gateway.index import Index, SqliteIndex
from dicom_gateway.jobs import IndexJobQueue
from dicom_gateway.outbox import CLAIM_S, Outbox, Undelivered, undelivered
from dicom_gateway.settings import GatewaySettings, Peer
from dicom_gateway.spool import (
    LEFTOVER_AGE_S,
    BadInstance,
    NotAsSent,
    OutOfResources,
    Spool,
    SpoolError,
    TemporaryFileGone,
)
from dicom_gateway.status import CANNOT_UNDERSTAND, DATA_SET_MISMATCH, PROCESSING_FAILURE
from tests.peers import Orthanc, wait_for
from tests.support import ct_copies, with_file_meta


def test_only_new_instances_after_the_read_started_are_late(tmp_path, open_store):
    spool = Spool(tmp_path / "spool", open_store(), min_free_mb=1)
    first, second = (p.read_bytes() for p in ct_copies(tmp_path / "ct", 2, "late"))
    stored = spool.store(first, "A")
    assert stored.late is False
    queue = IndexJobQueue(spool.index, max_attempts=1)
    queue.enqueue(stored.study_uid)
    job = queue.claim("w", 60)
    assert spool.store(first, "A").late is False  # a re-send of what the read has
    assert spool.store(second, "A").late is True  # new while the study is being read
    queue.complete(job, "w", "/out")
    [row] = spool.index.read("SELECT late_instances FROM studies")
    assert row[0] == 1


def test_a_study_whose_read_failed_is_read_again_once_new_instances_complete_it(
    tmp_path, open_store
):
    """An SR arrives first and its read fails for good (no images), then the images come."""
    spool = Spool(tmp_path / "spool", open_store(), min_free_mb=1)
    first, second = (p.read_bytes() for p in ct_copies(tmp_path / "ct", 2, "failed"))
    study_uid = spool.store(first, "A").study_uid
    queue = IndexJobQueue(spool.index, max_attempts=3)
    queue.enqueue(study_uid)
    queue.fail(queue.claim("w", 60), "w", "bad input: no readable images", permanent=True)
    assert spool.store(first, "A").late is False  # a re-send: nothing new to read
    assert promote_stable_studies(spool.index, 0, "ignore") == []
    spool.store(second, "A")
    assert promote_stable_studies(spool.index, 0, "ignore") == [study_uid]
    job = queue.claim("w", 60)
    assert job is not None and job.study_uid == study_uid


def test_an_instance_stored_from_memory_on_a_full_disk_is_refused_and_leaves_nothing(tmp_path):
    # The STOW path: refused on the room it needs before anything of it is written.
    root = tmp_path / "spool"
    root.mkdir()
    spool = Spool(root, SqliteIndex(root / "index.sqlite"), min_free_mb=2**40)
    [path] = ct_copies(tmp_path / "ct", 1, "full")
    with pytest.raises(OutOfResources, match="MiB free"):
        spool.store(path.read_bytes(), "STOW")
    assert not list((root / "tmp").iterdir()) and not spool.index.read("SELECT * FROM instances")


@pytest.mark.parametrize(
    "meta",
    [{"MediaStorageSOPClassUID": MRImageStorage}, {"MediaStorageSOPInstanceUID": "1.2.3.4"}],
    ids=["class", "instance"],
)
def test_a_data_set_that_is_not_what_its_request_named_is_refused_stowed_is_kept(tmp_path, meta):
    root = tmp_path / "spool"
    root.mkdir()
    spool = Spool(root, SqliteIndex(root / "index.sqlite"), min_free_mb=1)
    [path] = ct_copies(tmp_path / "ct", 1, "not-as-requested")
    encoded = with_file_meta(path, **meta)
    with pytest.raises(NotAsSent, match="it was sent as") as refused:
        spool.store(encoded, "A")  # the file meta says what the C-STORE request named
    assert refused.value.status == DATA_SET_MISMATCH == 0xA900
    assert not list((root / "tmp").iterdir()) and not list(root.glob("studies/*/*.dcm"))
    assert not spool.index.read("SELECT * FROM instances")
    # A STOW part's file meta is whatever wrote the file: the part is kept, as sent.
    stored = spool.store(encoded, "STOW", requested=False)
    assert stored.path.read_bytes() == encoded
    assert stored.sop_uid == pydicom.dcmread(path).SOPInstanceUID


@pytest.mark.parametrize("keyword", ["SOPClassUID", "SOPInstanceUID"])
def test_a_data_set_without_its_sop_uids_is_not_understood(tmp_path, keyword):
    """As storescp answers it: 0xC000, not the 0xA900 of a data set naming another instance."""
    root = tmp_path / "spool"
    root.mkdir()
    spool = Spool(root, SqliteIndex(root / "index.sqlite"), min_free_mb=1)
    [path] = ct_copies(tmp_path / "ct", 1, "no-uid")
    ds = pydicom.dcmread(path)
    delattr(ds, keyword)
    ds.save_as(path)  # as it is: the file meta still names the instance
    with pytest.raises(BadInstance) as refused:
        spool.store(path.read_bytes(), "A")
    assert refused.value.status == CANNOT_UNDERSTAND == 0xC000
    assert not list((root / "tmp").iterdir()) and not list(root.glob("studies/*/*.dcm"))
    assert not spool.index.read("SELECT * FROM instances")


def test_a_backlog_larger_than_one_association_is_delivered(tmp_path):
    orthanc = Orthanc(tmp_path / "orthanc")
    try:
        settings = GatewaySettings(destinations=(f"ORTHANC@127.0.0.1:{orthanc.dicom_port}",))
        index = SqliteIndex(tmp_path / "index.sqlite")
        outbox = Outbox(index, settings, Audit(tmp_path / "audit.jsonl"))
        files = ct_copies(tmp_path / "ct", 150, "backlog")  # more than 128 contexts' worth
        with index.write() as db:
            outbox.add_in(db, None, outbox.identify(files))
        delivered = [outbox.send_due() for _ in range(4)]
        assert delivered == [64, 64, 22, 0]  # one association of at most BATCH at a time
        assert len(orthanc.get("/instances")) == 150
        assert index.read("SELECT COUNT(*) FROM outbox WHERE state = 'sent'")[0][0] == 150
    finally:
        orthanc.stop()


def test_the_undelivered_list_holds_pending_and_failed_rows_oldest_first(open_store):
    index: Index = open_store()
    with index.write() as db:
        for sop, state, error in (
            ("1.1", "sent", None),
            ("1.2", "failed", "refused"),
            ("1.3", "pending", None),
        ):
            db.execute(
                "INSERT INTO outbox (destination, path, sop_uid, state, next_try, last_error) "
                "VALUES ('PACS@h:104', '/r.dcm', ?, ?, 5.0, ?)",
                (sop, state, error),
            )
    assert undelivered(index) == [
        Undelivered(2, "PACS@h:104", "1.2", "failed", 0, 5.0, "refused"),
        Undelivered(3, "PACS@h:104", "1.3", "pending", 0, 5.0, ""),
    ]


def test_two_outbox_processes_send_each_result_once(tmp_path, open_store):
    orthanc = Orthanc(tmp_path / "orthanc")
    try:
        settings = GatewaySettings(destinations=(f"ORTHANC@127.0.0.1:{orthanc.dicom_port}",))
        audit = Audit(tmp_path / "audit.jsonl")
        indexes = [open_store(), open_store()]  # each process opens the index itself
        outboxes = [Outbox(i, settings, audit, node=f"n{n}") for n, i in enumerate(indexes)]
        files = ct_copies(tmp_path / "ct", 40, "two-outboxes")
        with indexes[0].write() as db:
            outboxes[0].add_in(db, None, outboxes[0].identify(files))
        start = threading.Barrier(2)

        def send(outbox: Outbox) -> None:
            start.wait()
            while outbox.send_due():
                pass

        threads = [threading.Thread(target=send, args=(o,)) for o in outboxes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        audit.close()
        lines = (tmp_path / "audit.jsonl").read_text().splitlines()
        sent = [json.loads(line)["sop_uid"] for line in lines]
        assert len(sent) == 40 == len(set(sent))
        assert len(orthanc.get("/instances")) == 40
    finally:
        orthanc.stop()


def test_a_shared_spool_keeps_the_temporary_files_other_listeners_are_writing(tmp_path, open_store):
    index = open_store()
    writing = tmp_path / "spool" / "tmp" / "another-listener.part"
    writing.parent.mkdir(parents=True)
    writing.write_bytes(b"half an instance")
    Spool(tmp_path / "spool", index, min_free_mb=1)
    # One machine: a leftover is from a crash of this very service. Shared: maybe a C-STORE now.
    assert writing.exists() == index.dialect.shared


def sent_audit(path) -> list[dict]:
    return [
        e for e in map(json.loads, path.read_text().splitlines()) if e["event"] == "object_sent"
    ]


def claim(outbox: Outbox) -> list:
    """The rows `outbox` holds after it claimed what is due."""
    outbox._claim()
    return outbox._index.read("SELECT * FROM outbox WHERE claimed_by = ? ORDER BY id", outbox._node)


def test_a_process_that_only_looked_dead_sends_none_of_the_rows_taken_over(
    tmp_path, open_store, clock
):
    """A slow PACS: process A claimed rows and is still busy past CLAIM_S, B takes them over.
    A, going on, renews each row's claim before it sends it and finds it is no longer its own."""
    orthanc = Orthanc(tmp_path / "orthanc")
    try:
        destination = f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"
        settings = GatewaySettings(destinations=(destination,))
        audit = Audit(tmp_path / "audit.jsonl")
        a, b = (Outbox(open_store(clock=clock), settings, audit, node=node) for node in ("a", "b"))
        with a._index.write() as db:
            a.add_in(db, None, a.identify(ct_copies(tmp_path / "ct", 5, "taken-over")))
        held_by_a = claim(a)
        clock.t += CLAIM_S + 1
        assert [r["id"] for r in claim(b)] == [r["id"] for r in held_by_a]
        assert a._send_to(destination, held_by_a) == 0
        clock.t += CLAIM_S + 1  # B's claim ran out too: B sends what it took
        assert b.send_due() == 5
        audit.close()
        sent = sent_audit(tmp_path / "audit.jsonl")
        assert sorted(e["sop_uid"] for e in sent) == sorted({r["sop_uid"] for r in held_by_a})
        rows = a._index.read("SELECT state, claimed_by FROM outbox")
        assert [tuple(r) for r in rows] == [("sent", "b")] * 5
    finally:
        orthanc.stop()


def test_rows_taken_over_are_neither_marked_sent_nor_postponed_by_the_old_claim(
    tmp_path, open_store, clock
):
    settings = GatewaySettings(destinations=("PACS@127.0.0.1:104",))
    audit = Audit(tmp_path / "audit.jsonl")
    a, b = (Outbox(open_store(clock=clock), settings, audit, node=node) for node in ("a", "b"))
    with a._index.write() as db:
        a.add_in(db, None, a.identify(ct_copies(tmp_path / "ct", 2, "overwrite")))
    first, second = claim(a)
    clock.t += CLAIM_S + 1
    claim(b)
    before = [tuple(r) for r in a._index.read("SELECT * FROM outbox ORDER BY id")]
    a._delivered(first, Peer.parse("PACS@127.0.0.1:104"))  # a send that outlasted its claim
    a._postpone([second], "PACS@127.0.0.1:104 answered status 0xA700")
    assert [tuple(r) for r in a._index.read("SELECT * FROM outbox ORDER BY id")] == before
    audit.close()
    [event] = sent_audit(tmp_path / "audit.jsonl")
    assert event["claim"] == "taken over by another outbox process"


def test_a_temporary_file_gone_before_the_cleanup_reads_it_does_not_stop_the_start(
    tmp_path, open_store
):
    """Another listener renames its finished file into studies/ between the listing of tmp/ and
    the look at its age. A dangling link is such a name: listed, but with nothing behind it."""
    index = open_store()
    leftovers = tmp_path / "spool" / "tmp"
    leftovers.mkdir(parents=True)
    (leftovers / "renamed-meanwhile.part").symlink_to(tmp_path / "studies" / "now-here.dcm")
    old = leftovers / "crashed-long-ago.part"
    old.write_bytes(b"never acknowledged")
    long_ago = time.time() - 2 * LEFTOVER_AGE_S
    os.utime(old, (long_ago, long_ago))
    Spool(tmp_path / "spool", index, min_free_mb=1)
    assert not old.exists()  # the cleanup went on past the vanished one


def test_a_temporary_file_removed_while_it_arrived_fails_alone(tmp_path):
    """Its name removed under the listener (by hand, by a cleanup on another machine): that
    instance is refused and leaves nothing, alone or committed in one group with others, which
    are kept."""
    root = tmp_path / "spool"
    root.mkdir()
    spool = Spool(root, SqliteIndex(root / "index.sqlite"), min_free_mb=1)
    good, bad, alone = (p.read_bytes() for p in ct_copies(tmp_path / "ct", 3, "gone"))
    lost = spool.open_received()
    lost.write(alone)
    os.unlink(lost.name)
    with pytest.raises(TemporaryFileGone, match="removed while it arrived") as gone:
        spool.store_received(lost, "A")
    assert gone.value.status == PROCESSING_FAILURE
    assert not any((root / "studies").iterdir())

    kept, removed = spool.open_received(), spool.open_received()
    kept.write(good)
    removed.write(bad)
    outcomes = {}

    def store(name, received):
        try:
            outcomes[name] = spool.store_received(received, "A")
        except SpoolError as exc:
            outcomes[name] = exc

    commits = spool.commits
    with commits._changed:  # a commit is running: both wait for the next group, made durable
        commits._busy = True
    threads = [
        threading.Thread(target=store, args=("kept", kept)),
        threading.Thread(target=store, args=("removed", removed)),
    ]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(commits._waiting) == 2, 30, "both to wait for the next group", 0.01)
    os.unlink(removed.name)  # after its bytes were synced, before its rename
    with commits._changed:
        commits._busy = False
        commits._changed.notify_all()
    for thread in threads:
        thread.join(30)
    assert commits.groups == 1 and commits.items == 2  # one group held both
    assert isinstance(outcomes["removed"], TemporaryFileGone)
    stored = outcomes["kept"]
    assert stored.path.read_bytes() == good
    rows = spool.index.read("SELECT sop_uid, path FROM instances")
    assert [tuple(row) for row in rows] == [(stored.sop_uid, str(stored.path))]
    assert sorted(p.name for p in stored.path.parent.iterdir()) == [stored.path.name]


def test_an_index_out_of_reach_while_a_study_is_marked_as_arriving_is_a_warning(tmp_path, caplog):
    """The mark is made beside the association, never in its way: a failure is logged."""
    from dicom_gateway.arriving import StillArriving

    index = SqliteIndex(tmp_path / "index.sqlite")
    index.close()
    (tmp_path / "index.sqlite").unlink()
    (tmp_path / "index.sqlite").mkdir()  # no database there any more
    with caplog.at_level(logging.WARNING, logger="dicom_gateway.arriving"):
        StillArriving(index).mark("1.2.3")
    assert "study 1.2.3: not marked as still arriving" in caplog.text
