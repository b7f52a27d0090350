"""The receive path: data sets streamed to disk, acknowledged only once durable and indexed,
committed in groups across associations, received by several processes on one port."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
import time
from contextlib import closing
from pathlib import Path

import pydicom
import pytest

from dicom_gateway.settings import GatewaySettings
from dicom_gateway.spool import Spool
from dicom_gateway.status import SUCCESS
from tests.dicom_gateway.leftovers import holding_data
from tests.dicom_gateway.scp import (
    associated,
    cut_by,
    listening,
    send_and_answer,
    stored_as_sent,
)
from tests.peers import Gateway, tool, wait_for
from tests.support import c_store, ct_copies

COMMIT_S = 0.2  # a slow disk: long enough for other associations to queue behind a commit


class SlowDiskSpool(Spool):
    """The spool on a disk whose commits take COMMIT_S."""

    def _commit_group(self, group):
        time.sleep(COMMIT_S)
        return super()._commit_group(group)


def test_each_store_is_acknowledged_only_once_its_file_and_row_are_there(tmp_path):
    listener, spool, port = listening(tmp_path / "spool", spool_class=SlowDiskSpool)
    problems: list[str] = []

    def sender(number: int) -> None:
        files = ct_copies(tmp_path / f"ct{number}", 3, f"ack-{number}")
        for (sop_uid, status), sent in zip(c_store(port, files), files, strict=True):
            with closing(sqlite3.connect(spool.index.path)) as db:
                row = db.execute(
                    "SELECT path FROM instances WHERE sop_uid = ?", (sop_uid,)
                ).fetchone()
            if status != SUCCESS or row is None:
                problems.append(f"{sop_uid}: status {status}, row {row}")
                continue
            kept, original = pydicom.dcmread(row[0]), pydicom.dcmread(sent)
            if kept.PixelData != original.PixelData or kept.SOPInstanceUID != sop_uid:
                problems.append(f"{sop_uid}: acknowledged before its file was whole")

    try:
        threads = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        listener.stop()
    assert problems == []
    assert spool.index.read("SELECT COUNT(*) FROM instances")[0][0] == 12
    # Four associations, one commit at a time: those that waited shared the next transaction.
    assert spool.commits.items == 12 and spool.commits.groups < 12
    assert not list((spool.root / "tmp").iterdir())


def test_a_data_set_that_comes_whole_with_its_command_is_stored_too(tmp_path):
    # One P-DATA-TF with the command and the whole data set: complete before it could be
    # streamed, so it is stored from memory, through the same checks.
    listener, spool, port = listening(tmp_path / "spool")
    [path] = ct_copies(tmp_path / "ct", 1, "one-pdu")
    assoc, fragments = associated(port, path)
    try:
        command, data = fragments(2**20)
        command.presentation_data_value_list = [
            list(pdv) for pdv in command.presentation_data_value_list
        ] + [list(pdv) for pdv in data.presentation_data_value_list]
        assert send_and_answer(assoc, [command]) == SUCCESS
    finally:
        assoc.release()
        listener.stop()
    stored_as_sent(spool, path)
    assert not list((spool.root / "tmp").iterdir())


def test_a_data_set_cut_off_by_an_abort_leaves_nothing_behind(tmp_path):
    listener, spool, port = listening(tmp_path / "spool")
    [path] = ct_copies(tmp_path / "ct", 1, "aborted")
    assoc, fragments = associated(port, path)
    try:
        sent = fragments(8192)
        for fragment in sent[: len(sent) // 2]:  # the command, half the data set
            assoc.dul.send_pdu(fragment)
        # Beside it wait the empty files created ahead for the next data sets.
        [cut] = wait_for(lambda: holding_data(spool.root / "tmp"), 10, "the data set on disk")
        assoc.abort()
        wait_for(lambda: not cut.exists(), 10, "the cut-off data set to be removed")
        assert not list((spool.root / "studies").rglob("*.dcm"))
        assert [status for _, status in c_store(port, [path])] == [SUCCESS]  # still serving
    finally:
        listener.stop()
    assert not list((spool.root / "tmp").iterdir())  # nor any file created ahead


def test_two_listener_processes_on_one_port_both_accept_and_lose_nothing(tmp_path):
    files = ct_copies(tmp_path / "ct", 32, "two-processes")
    gateway = Gateway(tmp_path / "gw", listener_processes=2, stable_after_s=3600.0)
    try:
        senders = [
            subprocess.Popen(
                [tool("storescu", "dcmtk"), "-aec", "EDGEAGENT", "127.0.0.1", str(gateway.port)]
                + [str(f) for f in files[i::16]],
                env={**os.environ, "TCP_NODELAY": "1"},
                stderr=subprocess.PIPE,
            )
            for i in range(16)
        ]
        for sender in senders:
            _, stderr = sender.communicate(timeout=120)
            assert sender.returncode == 0, stderr.decode()[-500:]
        with closing(gateway.db()) as db:
            paths = [row[0] for row in db.execute("SELECT path FROM instances")]
        assert len(paths) == 32 and all(Path(p).is_file() for p in paths)
        accepted = [e for e in gateway.audit() if e["event"] == "association_accepted"]
        stores = [e for e in accepted if e["calling_ae"] == "STORESCU"]
        assert len(stores) == 16
        assert len({e["listener"] for e in stores}) == 2  # 16 connections, both processes
    finally:
        assert gateway.stop() == 0
    assert not list((gateway.spool / "tmp").iterdir())


def test_an_idle_association_is_ended_after_the_network_timeout(tmp_path):
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    listener, _, port = listening(
        tmp_path / "spool", handshake_timeout_s=1.0, network_timeout_s=2.0
    )
    try:
        ae = AE(ae_title="IDLE")
        ae.add_requested_context(Verification)
        started = time.monotonic()  # before every timer the listener starts for it
        assoc = ae.associate("127.0.0.1", port, ae_title="EDGEAGENT")
        assert assoc.is_established
        wait_for(lambda: not assoc.is_established, 15, "the idle association to be ended")
        assert 2.0 <= time.monotonic() - started < 10.0
    finally:
        listener.stop()


def test_listener_processes_do_not_outlive_a_killed_service(tmp_path):
    gateway = Gateway(tmp_path / "gw", listener_processes=3)
    children = [pid for pid in _pids() if _stat(pid)[1] == gateway.pid]
    listening = [pid for pid in children if _stat(pid)[0] != "Z" and _spawned(pid)]
    assert len(listening) == 2  # the two extra listeners, not spawn's resource tracker
    gateway.kill()  # SIGKILL: the service cannot tell them to stop
    wait_for(lambda: all(_stat(pid)[0] in ("Z", "gone") for pid in listening), 30, "their end")


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _spawned(pid: int) -> bool:
    """A process multiprocessing started with `spawn` (a listener), not one of its helpers."""
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _stat(pid: int) -> tuple[str, int]:
    """(state, parent pid) of a process; ("gone", 0) once it is reaped."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return "gone", 0
    return fields[0], int(fields[1])


@pytest.mark.parametrize("count", [0, -1, 65])
def test_a_listener_process_count_out_of_range_is_refused(count):
    with pytest.raises(ValueError, match="listener_processes"):
        GatewaySettings(listener_processes=count)


def test_pynetdicoms_per_message_logging_is_bound_only_when_its_logger_shows_it(tmp_path):
    import logging

    from pynetdicom import evt

    library = logging.getLogger("pynetdicom")
    before = library.level
    try:
        for level, bound in ((logging.WARNING, False), (logging.DEBUG, True)):
            library.setLevel(level)
            listener, _, _ = listening(tmp_path / logging.getLevelName(level))
            try:
                assert bool(listener._server.get_handlers(evt.EVT_DIMSE_RECV)) == bound
            finally:
                listener.stop()
    finally:
        library.setLevel(before)


def test_data_pdus_carrying_several_fragments_each_are_stored_whole(tmp_path):
    # After the command, PDUs of four data fragments each: read here, straight into the file.
    listener, spool, port = listening(tmp_path / "spool")
    [path] = ct_copies(tmp_path / "ct", 1, "several-pdvs")
    assoc, fragments = associated(port, path)
    try:
        command, *data = fragments(4096)
        merged = []
        for start in range(0, len(data), 4):
            pdu = data[start]
            pdu.presentation_data_value_list = [
                list(pdv)
                for one in data[start : start + 4]
                for pdv in one.presentation_data_value_list
            ]
            merged.append(pdu)
        assert len(merged) > 2 and len(merged[0].presentation_data_value_list) == 4
        assert send_and_answer(assoc, [command, *merged]) == SUCCESS
    finally:
        assoc.release()
        listener.stop()
    stored_as_sent(spool, path)


def test_a_data_pdu_with_garbled_framing_stores_nothing(tmp_path):
    import struct

    # A last data fragment whose item length runs 100 bytes past its PDU.
    body = struct.pack(">LBB", 100 + 2 + 500, 1, 0x02) + b"\0" * 500
    cut_by(tmp_path, struct.pack(">BBL", 0x04, 0, len(body)) + body, data_pdus=3)


def test_a_data_pdu_over_the_maximum_in_the_middle_of_a_data_set_is_refused(tmp_path):
    import struct

    # A data fragment whose PDU declares 2 GiB: refused on its header, nothing allocated.
    pdv = struct.pack(">LBB", 2**31 - 6, 1, 0x00) + b"\0" * 1000
    cut_by(tmp_path, struct.pack(">BBL", 0x04, 0, 2**31) + pdv, data_pdus=1)


def test_a_pdu_of_unknown_type_in_the_middle_of_a_data_set_aborts_and_stores_nothing(tmp_path):
    import struct

    # PDU type 0x09 does not exist: refused on its header, as pynetdicom refuses it (A-ABORT).
    cut_by(tmp_path, struct.pack(">BBL", 0x09, 0, 4) + b"\0" * 4, data_pdus=2)


def test_associations_leave_the_presentation_contexts_they_share_as_they_were(tmp_path):
    # One list of contexts serves every association's negotiation: none may change it.
    from pynetdicom import AE, build_role
    from pynetdicom.sop_class import CTImageStorage, Verification

    listener, _, port = listening(tmp_path / "spool")
    shared = listener._server.contexts

    def snapshot() -> list:
        return [
            (cx.context_id, cx.abstract_syntax, tuple(cx.transfer_syntax), cx.scu_role, cx.scp_role)
            for cx in shared
        ]

    before = snapshot()
    try:
        assert [status for _, status in c_store(port, ct_copies(tmp_path / "ct", 2, "share"))] == [
            SUCCESS
        ] * 2
        ae = AE(ae_title="ROLES")
        ae.add_requested_context(CTImageStorage)
        ae.add_requested_context(Verification)
        roles = [build_role(CTImageStorage, scu_role=True, scp_role=True)]
        assoc = ae.associate("127.0.0.1", port, ae_title="EDGEAGENT", ext_neg=roles)
        assert assoc.is_established
        assoc.release()
    finally:
        listener.stop()
    assert len(before) > 100 and snapshot() == before
