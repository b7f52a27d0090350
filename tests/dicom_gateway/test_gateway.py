"""The gateway as a PACS sees it: a real `edge-agent serve`, real Orthanc, real dcmtk."""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time

import pydicom
import pytest

from dicom_gateway.status import CANNOT_UNDERSTAND
from edge_agent.sample import write_sample_study
from tests.dicom_gateway.leftovers import holding_data
from tests.dicom_gateway.relay import SlowLink
from tests.peers import Gateway, Orthanc, echo, free_port, tool, wait_for
from tests.support import bundled, c_store, ct_copies, run_cli, sr_items


def _pacs_and_gateway(tmp_path, caller: str) -> tuple[Orthanc, Gateway]:
    """Orthanc that knows the gateway, and a gateway that takes `caller` and sends to Orthanc."""
    gw_port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc", {"edge": ["EDGEAGENT", "127.0.0.1", gw_port]})
    gateway = Gateway(
        tmp_path / "gw",
        port=gw_port,
        allowed=[caller],
        destinations=[f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"],
    )
    return orthanc, gateway


def test_orthanc_pushes_a_study_and_gets_the_results_back(tmp_path):
    orthanc, gateway = _pacs_and_gateway(tmp_path, "ORTHANC")
    try:
        study_uid = orthanc.push(write_sample_study(tmp_path / "study"), "edge")
        [sr_series] = wait_for(lambda: orthanc.series_of(study_uid, "SR"), 90, "the SR in Orthanc")
        wait_for(lambda: _all_sent(gateway), 30, "every result delivered")
        sr = orthanc.get(f"/instances/{sr_series['Instances'][0]}/simplified-tags")
        assert sr["StudyInstanceUID"] == study_uid
        modalities = {s["MainDicomTags"]["Modality"] for s in orthanc.series_of_study(study_uid)}
        assert {"CT", "MR", "SR", "SEG", "KO", "OT"} <= modalities
        [job] = gateway.jobs()
        assert (job["study_uid"], job["state"]) == (study_uid, "done")
        events = [e["event"] for e in gateway.audit()]
        assert events.count("study_read") == 1 and "object_sent" in events
        assert gateway.stop() == 0 and gateway.audit()[-1]["event"] == "service_stopped"
        logs = gateway.logs()
        for phi in ("Sample^Demo", "EDGE-DEMO-0001", "Sample", "DEMO-0001"):
            assert phi not in logs, "patient identifiers must never reach the logs"
    finally:
        gateway.stop()
        orthanc.stop()


def test_only_allowed_callers_get_in(tmp_path):
    gateway = Gateway(tmp_path / "gw", allowed=["STORESCU", "ECHOSCU"])
    try:
        assert echo(gateway.port, "EDGEAGENT", "ECHOSCU") == 0
        files = ct_copies(tmp_path / "ct", 2, "allowed")
        refused = subprocess.run(
            [
                tool("storescu", "dcmtk"),
                "-aet",
                "INTRUDER",
                "-aec",
                "EDGEAGENT",
                "127.0.0.1",
                str(gateway.port),
                *map(str, files),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode != 0 and "Calling AE Title Not Recognized" in refused.stderr
        assert not list((gateway.spool / "studies").iterdir())
        rejected = [e for e in gateway.audit() if e["event"] == "association_rejected"]
        assert rejected[0]["calling_ae"] == "INTRUDER"
    finally:
        gateway.stop()


@pytest.mark.parametrize(
    ("keyword", "uid"),
    [
        ("SOPInstanceUID", "../../escaped"),
        ("StudyInstanceUID", "../escaped"),
        ("StudyInstanceUID", "1.2/3.4"),
        ("StudyInstanceUID", "1." * 40 + "1"),  # over 64 characters
        ("SeriesInstanceUID", "1.2.3.abc"),
    ],
)
def test_path_like_uids_are_refused_and_nothing_is_written(tmp_path, keyword, uid):
    gateway = Gateway(tmp_path / "gw")
    try:
        ds = pydicom.dcmread(bundled("CT_small.dcm"))
        setattr(ds, keyword, uid)
        [(_, status)] = list(c_store(gateway.port, [ds]))
        assert status == 0xC000
        assert not list((gateway.spool / "studies").rglob("*.dcm"))
        assert not list(tmp_path.rglob("escaped*"))
        assert echo(gateway.port, "EDGEAGENT", "ECHOSCU") == 0
    finally:
        gateway.stop()
    printed = (gateway.folder / "serve.log").read_text().splitlines()
    logged = [line for line in printed if not line.startswith("edge-agent gateway ")]  # banner
    assert len(logged) == len(printed) - 1
    assert all(json.loads(line)["message"] for line in logged)  # pydicom's warnings included


def test_low_disk_space_answers_out_of_resources(tmp_path):
    gateway = Gateway(tmp_path / "gw", min_free_mb=2**40)
    try:
        [(_, status)] = list(c_store(gateway.port, ct_copies(tmp_path / "ct", 1, "full")))
        assert status == 0xA700
        assert not list(gateway.spool.rglob("*.dcm")) and not holding_data(gateway.spool / "tmp")
    finally:
        gateway.stop()
    assert not list(gateway.spool.rglob("*.part"))  # nor the empty files created ahead


def test_kill_during_ingest_loses_no_acknowledged_instance_and_reads_once(tmp_path):
    files = ct_copies(tmp_path / "ct", 300, "kill")
    gateway = Gateway(tmp_path / "gw", stable_after_s=3.0)
    acknowledged: list[str] = []
    killed = threading.Event()

    def send() -> None:
        try:
            for sop_uid, status in c_store(gateway.port, files):
                if status == 0x0000:
                    acknowledged.append(sop_uid)
                if len(acknowledged) == 120 and not killed.is_set():
                    gateway.kill()
                    killed.set()
        except (ConnectionError, RuntimeError, OSError):
            pass  # the association died with the service

    sender = threading.Thread(target=send)
    sender.start()
    sender.join(timeout=120)
    assert killed.is_set() and 120 <= len(acknowledged) < 300
    time.sleep(4.0)  # down for longer than stable_after_s: no quiet, nobody could send
    gateway.start()
    stored = {p.stem: p for p in (gateway.spool / "studies").rglob("*.dcm")}
    by_uid = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID: f for f in files}
    for sop_uid in acknowledged:
        assert sop_uid in stored, f"acknowledged {sop_uid} was lost"
        original, kept = pydicom.dcmread(by_uid[sop_uid]), pydicom.dcmread(stored[sop_uid])
        assert kept.PixelData == original.PixelData and kept.SOPInstanceUID == sop_uid
    rest = [by_uid[u] for u in by_uid if u not in set(acknowledged)]
    assert all(status == 0 for _, status in c_store(gateway.port, rest))
    try:
        wait_for(lambda: any(j["state"] == "done" for j in gateway.jobs()), 120, "the read")
        jobs = gateway.jobs()
        assert len(jobs) == 1 and jobs[0]["state"] == "done"
        with gateway.db() as db:
            count = db.execute("SELECT COUNT(*) FROM instances").fetchone()[0]
            late = db.execute("SELECT late_instances FROM studies").fetchone()[0]
        assert count == 300 and late == 0  # read once, whole: not the part before the kill
    finally:
        gateway.stop()


def test_results_wait_for_a_pacs_that_is_down(tmp_path):
    ports = (free_port(), free_port())
    orthanc = Orthanc(tmp_path / "orthanc-first", ports=ports)
    orthanc.stop()  # PACS down from the start
    gateway = Gateway(
        tmp_path / "gw",
        destinations=[f"ORTHANC@127.0.0.1:{ports[1]}"],
        retry_first_s=0.5,
        retry_max_s=2.0,
    )
    try:
        study = write_sample_study(tmp_path / "study")
        assert all(s == 0 for _, s in c_store(gateway.port, sorted(study.iterdir())))
        wait_for(lambda: any(j["state"] == "done" for j in gateway.jobs()), 90, "the read")

        def retried() -> bool:
            with gateway.db() as db:
                attempts = db.execute(
                    "SELECT MIN(attempts) FROM outbox WHERE state = 'pending'"
                ).fetchone()[0]
            return (attempts or 0) >= 1

        wait_for(retried, 30, "a failed delivery attempt")
        listing = run_cli("pacs", "outbox", "--config", gateway.config)
        assert listing.returncode == 0 and "pending" in listing.stdout
        status = run_cli("pacs", "status", "--config", gateway.config)
        with gateway.db() as db:
            waiting = db.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()
        assert waiting[0] > 0 and f"results waiting to be sent: {waiting[0]}" in status.stdout
        assert "reads in the last hour: 1 (0 failed)" in status.stdout
        assert "workers alive: 1" in status.stdout
        orthanc = Orthanc(tmp_path / "orthanc-again", ports=ports)  # PACS back
        study_uid = str(pydicom.dcmread(next(study.iterdir())).StudyInstanceUID)
        wait_for(lambda: orthanc.series_of(study_uid, "SR"), 60, "delivery after PACS is back")
        wait_for(lambda: _all_sent(gateway), 30, "every row sent")
    finally:
        gateway.stop()
        orthanc.stop()


def _all_sent(gateway: Gateway) -> bool:
    with gateway.db() as db:
        return {r[0] for r in db.execute("SELECT state FROM outbox")} == {"sent"}


def test_malformed_files_do_not_take_the_service_down(tmp_path):
    gateway = Gateway(tmp_path / "gw", stable_after_s=0.5)
    try:
        bad = [
            pydicom.dcmread(bundled(name), force=True)
            for name in ("MR_truncated.dcm", "rtplan_truncated.dcm", "badVR.dcm")
        ]
        headless = pydicom.Dataset()  # no Study Instance UID at all
        headless.SOPClassUID, headless.SOPInstanceUID = bad[0].SOPClassUID, "1.2.3.4.5"
        for ds in [*bad, headless]:  # as each would travel: explicit VR little endian
            ds.ensure_file_meta()
            ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        statuses = dict(c_store(gateway.port, [*bad, headless]))
        assert statuses["1.2.3.4.5"] == 0xC000
        # Pixel Data shorter than its image: refused at the door, so PACS knows we lack it.
        assert statuses[bad[0].SOPInstanceUID] == CANNOT_UNDERSTAND
        assert not list((gateway.spool / "studies").rglob(f"{bad[0].SOPInstanceUID}.dcm"))
        assert echo(gateway.port, "EDGEAGENT", "ECHOSCU") == 0

        def settled():
            jobs = gateway.jobs()
            return jobs and all(j["state"] in ("done", "failed") for j in jobs) and jobs

        jobs = wait_for(settled, 60, "the reads to settle")
        failed = [j for j in jobs if j["state"] == "failed"]
        assert failed and all("bad input" in j["error"] for j in failed)
        assert echo(gateway.port, "EDGEAGENT", "ECHOSCU") == 0
    finally:
        gateway.stop()


def test_find_and_read_a_study_straight_from_pacs(tmp_path):
    orthanc = Orthanc(tmp_path / "orthanc")
    try:
        study = write_sample_study(tmp_path / "study")
        study_uid = orthanc.upload(study)
        node = f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"
        found = run_cli("pacs", "find", "--pacs", node, "--modality", "CT")
        assert found.returncode == 0, found.stderr
        assert study_uid in found.stdout and "1 study" in found.stdout
        done = run_cli("read", "--pacs", node, "--study", study_uid, "--out", tmp_path / "out")
        assert done.returncode == 0, done.stderr
        assert "retrieved 6 instance(s)" in done.stderr
        report = json.loads((tmp_path / "out" / "report.json").read_text())
        assert report["study_instance_uid"] == study_uid and report["findings"]
    finally:
        orthanc.stop()
    refused = run_cli("pacs", "find", "--pacs", node)  # Orthanc is gone now
    assert refused.returncode == 2 and "could not open an association" in refused.stderr


def _tls_echo(port: int, context) -> bool:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title="ECHOSCU")
    ae.acse_timeout = ae.network_timeout = 5
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="EDGEAGENT", tls_args=(context, "127.0.0.1"))
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return getattr(status, "Status", None) == 0


def test_tls_is_required_when_configured(tmp_path):
    import ssl

    cert, key = tmp_path / "gw.crt", tmp_path / "gw.key"
    subprocess.run(
        [
            tool("openssl", "openssl"),
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
    gateway = Gateway(
        tmp_path / "gw",
        tls_cert=str(cert),
        tls_key=str(key),
        probe=lambda port: _tls_echo(port, context),
    )
    try:
        assert _tls_echo(gateway.port, context)
        assert echo(gateway.port, "EDGEAGENT", "ECHOSCU") != 0  # plain TCP gets nowhere
        import socket

        silent = socket.create_connection(("127.0.0.1", gateway.port))  # never says hello
        assert _tls_echo(gateway.port, context)  # the accept loop does not wait for it
        silent.close()
    finally:
        gateway.stop()


def test_an_endoscopy_video_from_the_scope_gets_a_time_stamped_sr_back(tmp_path):
    from tests.videos import encode, video_study

    orthanc, gateway = _pacs_and_gateway(tmp_path, "SCOPE")
    try:
        [video] = video_study(tmp_path / "study", encode("h264")).iterdir()
        # -R -xn: only this SOP class, in H.264 High Profile, as a scope's DICOM module sends it.
        scope = [tool("storescu", "dcmtk"), "-R", "-xn", "-aet", "SCOPE", "-aec", "EDGEAGENT"]
        sent = subprocess.run(
            [*scope, "127.0.0.1", str(gateway.port), str(video)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sent.returncode == 0, sent.stderr
        study_uid = str(pydicom.dcmread(video, stop_before_pixels=True).StudyInstanceUID)
        [sr_series] = wait_for(lambda: orthanc.series_of(study_uid, "SR"), 90, "the SR in Orthanc")
        [instance] = sr_series["Instances"]
        sr = pydicom.dcmread(io.BytesIO(orthanc.get_bytes(f"/instances/{instance}/file")))
        tcoords = [item for item in sr_items(sr) if item.ValueType == "TCOORD"]
        assert tcoords and all(t.TemporalRangeType in ("SEGMENT", "POINT") for t in tcoords)
    finally:
        gateway.stop()
        orthanc.stop()


def test_header_values_quoted_by_library_warnings_never_reach_the_log(tmp_path):
    # pydicom and highdicom warn with the offending value: a one-part patient name, a birth date
    # written with dots. The service turns warnings into log lines, so it must drop those.
    datasets = []
    for path in ct_copies(tmp_path / "ct", 2, "phi-in-warnings"):
        ds = pydicom.dcmread(path)
        ds.PatientName, ds.PatientBirthDate = "Zeta", "1970.01.31"
        datasets.append(ds)
    gateway = Gateway(tmp_path / "gw")
    try:
        assert [status for _, status in c_store(gateway.port, datasets)] == [0, 0]
        wait_for(lambda: [j["state"] for j in gateway.jobs()] == ["done"], 90, "the read done")
    finally:
        gateway.stop()
    logs = gateway.logs()
    assert logs.strip(), "the service logged nothing at all"
    for phi in ("Zeta", "1970.01.31", "19700131"):
        assert phi not in logs, "patient identifiers must never reach the logs"


def test_a_study_is_not_read_while_one_of_its_instances_is_still_arriving(tmp_path):
    """A 10 MB multi-frame instance over a 2 MB/s link takes longer than stable_after_s: its
    study, one slice of which is stored, must wait for it, not be read without it."""
    [slice_, big] = ct_copies(tmp_path / "ct", 2, "slow link")
    ds = pydicom.dcmread(big)
    ds.Rows = ds.Columns = 512
    ds.NumberOfFrames = 20
    ds.PixelData = bytes(20 * 512 * 512 * 2)
    gateway = Gateway(tmp_path / "gw", stable_after_s=2.0)
    link = SlowLink(gateway.port, 2e6)
    try:
        assert [status for _, status in c_store(gateway.port, [slice_])] == [0]
        assert [status for _, status in c_store(link.port, [ds])] == [0]  # about 5 s
        wait_for(lambda: [j["state"] for j in gateway.jobs()] == ["done"], 90, "the read")
        with gateway.db() as db:
            late = db.execute("SELECT late_instances FROM studies").fetchone()[0]
            count = db.execute("SELECT COUNT(*) FROM instances").fetchone()[0]
        assert (count, late) == (2, 0)  # read once, with it
    finally:
        link.close()
        gateway.stop()
