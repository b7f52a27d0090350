"""DICOMweb as a PACS speaks it: Orthanc's DICOMweb plugin STOWs into the gateway over HTTPS with
a bearer token, results go back by STOW-RS, and `pacs find` / `read --study` use QIDO/WADO."""

from __future__ import annotations

import io
import json
import sys
import uuid
from pathlib import Path

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import Dataset

from dicom_gateway.routing import STOW_SENDER
from edge_agent.sample import write_sample_study
from tests.dicomweb_peers import TOKEN, dicomweb_url, orthanc_web, self_signed, web_gateway
from tests.peers import Gateway, Orthanc, free_port, wait_for
from tests.support import bundled, console_script, ct_copies, run_cli, with_file_meta

DICOM_JSON = "application/dicom+json"


def _upload(orthanc: Orthanc, study: Path) -> str:
    for path in sorted(study.iterdir()):
        orthanc.post("/instances", path.read_bytes())
    return str(pydicom.dcmread(next(study.iterdir())).StudyInstanceUID)


def _modalities(orthanc: Orthanc, study_uid: str) -> set[str]:
    try:
        return {s["MainDicomTags"]["Modality"] for s in orthanc.series_of_study(study_uid)}
    except ValueError:  # not there (yet)
        return set()


def _all_sent(gateway: Gateway) -> bool:
    with gateway.db() as db:
        return {r[0] for r in db.execute("SELECT state FROM outbox")} == {"sent"}


def _stored_sops(gateway: Gateway) -> set[str]:
    with gateway.db() as db:
        return {r[0] for r in db.execute("SELECT sop_uid FROM instances")}


def multipart(parts: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/related body of (content type, bytes) parts, and its Content-Type."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        f"--{boundary}\r\nContent-Type: {kind}\r\n\r\n".encode() + data + b"\r\n"
        for kind, data in parts
    )
    return body + f"--{boundary}--\r\n".encode(), (
        f'multipart/related; type="application/dicom"; boundary={boundary}'
    )


def test_orthanc_stows_a_study_over_https_and_the_results_come_back_by_stow(tmp_path):
    cert, key = self_signed(tmp_path / "tls")
    web_port = free_port()
    edge = {
        "Url": f"https://127.0.0.1:{web_port}/",
        "HttpHeaders": {"Authorization": f"Bearer {TOKEN}"},
    }
    orthanc = orthanc_web(tmp_path / "orthanc", {"edge": edge}, ca=cert)
    gateway = None
    try:
        gateway, _ = web_gateway(
            tmp_path / "gw", cert, key, web_port=web_port, destinations=[dicomweb_url(orthanc)]
        )
        study_uid = _upload(orthanc, write_sample_study(tmp_path / "study"))
        [match] = orthanc.post("/tools/lookup", study_uid)
        orthanc.post(
            "/dicom-web/servers/edge/stow",
            json.dumps({"Resources": [match["ID"]], "Synchronous": True}),
        )
        wait_for(lambda: {"SR", "SEG", "KO"} <= _modalities(orthanc, study_uid), 120, "results")
        wait_for(lambda: _all_sent(gateway), 30, "every result delivered")
        audit = gateway.audit()
        [request] = [e for e in audit if e["event"] == "stow_request"]
        assert (request["client"], request["status"], request["stored"]) == ("orthanc", 200, 6)
        assert [j["state"] for j in gateway.jobs()] == ["done"]
        with gateway.db() as db:
            senders = {r[0] for r in db.execute("SELECT calling_ae FROM instances")}
            destinations = {r[0] for r in db.execute("SELECT destination FROM outbox")}
        assert senders == {STOW_SENDER + "orthanc"} and destinations == {dicomweb_url(orthanc)}
        sent = [e for e in audit if e["event"] == "object_sent"]
        assert len(sent) >= 4  # SR, SEG, KO and Secondary Captures, each to Orthanc
        assert gateway.stop() == 0
        logs = gateway.logs()
        for phi in ("Sample^Demo", "EDGE-DEMO-0001", TOKEN):
            assert phi not in logs, "patient identifiers and tokens must never reach the logs"
    finally:
        if gateway is not None:
            gateway.stop()
        orthanc.stop()


@pytest.fixture(scope="module")
def stow_gateway(tmp_path_factory):
    """One gateway with STOW-RS on plain loopback HTTP taking bodies up to 1 MiB, for the
    refusal tests."""
    folder = tmp_path_factory.mktemp("stow")
    gateway, web_port = web_gateway(
        folder / "gw", None, None, web="max_request_mb = 1", stable_after_s=600.0
    )
    yield gateway, f"http://127.0.0.1:{web_port}"
    gateway.stop()


def test_a_bad_token_is_refused_with_401_and_nothing_is_stored(stow_gateway, tmp_path):
    gateway, url = stow_gateway
    files = ct_copies(tmp_path / "ct", 2, "bad-token")
    for token in ("wrong", ""):
        client = DICOMwebClient(url, headers={"Authorization": f"Bearer {token}"})
        client.set_http_retry_params(retry=False)
        with pytest.raises(requests.HTTPError) as refused:
            client.store_instances([pydicom.dcmread(f) for f in files])
        assert refused.value.response.status_code == 401
        assert refused.value.response.headers["WWW-Authenticate"].startswith("Bearer")
    sops = {str(pydicom.dcmread(f).SOPInstanceUID) for f in files}
    assert not sops & _stored_sops(gateway)
    assert not [p for p in gateway.spool.rglob("*.dcm") if p.stem in sops]
    refusals = [e for e in gateway.audit() if e["event"] == "stow_refused"]
    assert [e["status"] for e in refusals][-2:] == [401, 401]


@pytest.mark.parametrize(
    ("cut", "content_type", "status", "says"),
    [
        (-20, None, 400, "closing boundary"),  # the body ends mid-part
        (0, "multipart/related; type=application/dicom", 400, "no boundary"),
        (0, "application/dicom", 415, "multipart/related"),
        (0, 'multipart/related; type="application/dicom+xml"; boundary=x', 415, "only"),
    ],
)
def test_a_malformed_request_is_a_clear_error_and_nothing_is_stored(
    stow_gateway, tmp_path, cut, content_type, status, says
):
    gateway, url = stow_gateway
    [path] = ct_copies(tmp_path / "ct", 1, f"malformed-{status}-{cut}-{content_type}")
    body, declared = multipart([("application/dicom", path.read_bytes())])
    answer = requests.post(
        f"{url}/studies",
        data=body[: len(body) + cut] if cut else body,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type or declared},
        timeout=30,
    )
    assert answer.status_code == status and says in answer.text
    assert str(pydicom.dcmread(path).SOPInstanceUID) not in _stored_sops(gateway)
    assert not list(gateway.spool.rglob(f"{pydicom.dcmread(path).SOPInstanceUID}.dcm"))


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_limit_is_refused_with_413_and_nothing_is_stored(
    stow_gateway, tmp_path, chunked
):
    gateway, url = stow_gateway
    files = ct_copies(tmp_path / "ct", 30, f"too-large-{chunked}")  # 30 x 39 KB > 1 MiB
    body, content_type = multipart([("application/dicom", p.read_bytes()) for p in files])
    data = iter([body[i : i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
    answer = requests.post(
        f"{url}/studies",
        data=data,  # an iterator goes chunked, without a Content-Length to refuse early
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type},
        timeout=30,
    )
    assert answer.status_code == 413 and "over 1 MiB" in answer.text
    assert not {str(pydicom.dcmread(p).SOPInstanceUID) for p in files} & _stored_sops(gateway)


def test_each_instance_fails_on_its_own_with_its_reason(stow_gateway, tmp_path):
    gateway, url = stow_gateway
    good, other_study = ct_copies(tmp_path / "a", 1, "own-good") + ct_copies(
        tmp_path / "b", 1, "own-other"
    )
    [classless] = ct_copies(tmp_path / "c", 1, "own-good")  # of the study, without its class
    unclassed = pydicom.dcmread(classless)
    unclassed.SOPInstanceUID = "1.2.3.4.5"
    del unclassed.SOPClassUID
    buffer = io.BytesIO()
    unclassed.save_as(buffer)
    truncated = bundled("MR_truncated.dcm").read_bytes()  # Pixel Data shorter than its image
    study_uid = str(pydicom.dcmread(good).StudyInstanceUID)
    # the good one's file meta still names the instance it was copied from: a STOW part's meta is
    # whatever wrote the file, so it is kept as sent (not refused as a C-STORE would be)
    body, content_type = multipart(
        [
            ("application/dicom", with_file_meta(good, MediaStorageSOPInstanceUID="1.2.3.4")),
            ("application/dicom", _as_part10(truncated)),
            ("application/dicom", other_study.read_bytes()),
            ("application/dicom", buffer.getvalue()),
            ("text/plain", b"not an image"),
        ]
    )
    answer = requests.post(
        f"{url}/studies/{study_uid}",
        data=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type},
        timeout=30,
    )
    assert answer.status_code == 202 and answer.headers["Content-Type"] == DICOM_JSON
    response = Dataset.from_json(answer.json())
    [stored] = response.ReferencedSOPSequence
    assert stored.ReferencedSOPInstanceUID == pydicom.dcmread(good).SOPInstanceUID
    reasons = [int(item.FailureReason) for item in response.FailedSOPSequence]
    # cannot understand, wrong study, no SOP Class UID (as C-STORE refuses it), not DICOM
    assert reasons == [0xC000, 0xA900, 0xC000, 0xC000]
    failed_mr = response.FailedSOPSequence[0].ReferencedSOPInstanceUID
    assert failed_mr == pydicom.dcmread(bundled("MR_truncated.dcm"), force=True).SOPInstanceUID
    assert "Warning" in answer.headers and "Pixel Data" in answer.headers["Warning"]
    stored_now = _stored_sops(gateway)
    assert stored.ReferencedSOPInstanceUID in stored_now and failed_mr not in stored_now
    assert str(pydicom.dcmread(other_study).SOPInstanceUID) not in stored_now
    assert "1.2.3.4.5" not in stored_now


def _as_part10(data: bytes) -> bytes:
    """A bundled file as a STOW part carries it: Part 10, explicit VR little endian."""
    dataset = pydicom.dcmread(io.BytesIO(data), force=True)
    dataset.ensure_file_meta()
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_find_and_read_a_study_over_dicomweb(tmp_path):
    orthanc = orthanc_web(tmp_path / "orthanc")
    node = dicomweb_url(orthanc)
    try:
        study_uid = _upload(orthanc, write_sample_study(tmp_path / "study"))
        found = run_cli("pacs", "find", "--pacs", node, "--modality", "CT")
        assert found.returncode == 0, found.stderr
        assert study_uid in found.stdout and "1 study" in found.stdout
        none = run_cli("pacs", "find", "--pacs", node, "--modality", "US")
        assert none.returncode == 0 and "0 studies" in none.stdout
        done = run_cli("read", "--pacs", node, "--study", study_uid, "--out", tmp_path / "out")
        assert done.returncode == 0, done.stderr
        assert "retrieved 6 instance(s)" in done.stderr
        report = json.loads((tmp_path / "out" / "report.json").read_text())
        assert report["study_instance_uid"] == study_uid and report["findings"]
        cases = tmp_path / "cases.csv"
        cases.write_text(f"study_uid,question,expected\n{study_uid},Is there a lesion?,yes\n")
        evaluated = run_cli("eval", "run", cases, "--pacs", node, "--out", tmp_path / "run")
        assert evaluated.returncode == 0, evaluated.stderr
        [result] = (tmp_path / "run" / "cases").glob("*/result.json")
        assert json.loads(result.read_text())["status"] == "done"  # retrieved by WADO-RS, read
        unknown = run_cli("read", "--pacs", node, "--study", "1.2.3.4", "--out", tmp_path / "x")
        assert unknown.returncode == 2 and "1.2.3.4" in unknown.stderr
    finally:
        orthanc.stop()
    gone = run_cli("pacs", "find", "--pacs", node)
    assert gone.returncode == 2 and "could not reach" in gone.stderr
    typo = run_cli("pacs", "find", "--pacs", "dicomweb+http://pacs.example.org/dicom-web")
    assert typo.returncode == 2 and "plain http is allowed to loopback only" in typo.stderr


def test_a_study_stored_in_jpeg_2000_is_read_over_dicomweb(tmp_path):
    """Taken as the PACS stores it: Orthanc cannot transcode JPEG 2000 to the default syntax."""
    orthanc = orthanc_web(tmp_path / "orthanc")
    try:
        source = bundled("MR_small_jp2klossless.dcm")
        orthanc.post("/instances", source.read_bytes())
        study_uid = str(pydicom.dcmread(source, stop_before_pixels=True).StudyInstanceUID)
        out = tmp_path / "out"
        done = run_cli("read", "--pacs", dicomweb_url(orthanc), "--study", study_uid, "--out", out)
    finally:
        orthanc.stop()
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "report.json").read_text())["study_instance_uid"] == study_uid


def test_dicomweb_without_its_extra_installed_is_a_clear_config_error(monkeypatch):
    from dicom_gateway.remote import node
    from dicom_gateway.web_settings import WebSettings
    from imaging.errors import ConfigError

    monkeypatch.setitem(sys.modules, "dicomweb_client", None)  # as if never installed
    with pytest.raises(ConfigError, match=r"dicomweb-client package: pip install 'edge-agent\["):
        node("dicomweb+http://127.0.0.1:8042/dicom-web", WebSettings())
    assert node("PACS@127.0.0.1:104", WebSettings()).ae_title == "PACS"  # DIMSE needs none


@pytest.mark.parametrize("role", ["all", "outbox"])
def test_a_sending_node_without_the_dicomweb_extra_is_refused_at_start(tmp_path, role, request):
    """`serve --role outbox` with a dicomweb+ destination: one line at start, not a trace at
    every poll with nothing sent."""
    shared = request.getfixturevalue("postgres").database() if role == "outbox" else ""
    config = tmp_path / "edge-agent.toml"
    config.write_text(
        f"[gateway]\nspool_dir = {json.dumps(str(tmp_path / 'spool'))}\n"
        f"database = {json.dumps(shared)}\n"
        'destinations = ["dicomweb+https://pacs.example.org/dicom-web"]\n'
    )
    hide = "import sys; sys.modules['dicomweb_client'] = None  # as if never installed"
    done = console_script(hide, "serve", "--role", role, "--config", str(config))
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "error: a dicomweb+ destination needs the dicomweb-client package: "
        "pip install 'edge-agent[dicomweb]'"
    )


def test_stow_out_sends_the_servers_token_and_reports_each_row(stow_gateway, tmp_path):
    from dicom_gateway.dicomweb_out import stow
    from dicom_gateway.web_settings import WebServer

    gateway, url = stow_gateway
    files = ct_copies(tmp_path / "ct", 2, "stow-out")
    rows = [{"path": str(p), "sop_uid": str(pydicom.dcmread(p).SOPInstanceUID)} for p in files]
    rows.append({"path": str(tmp_path / "gone.dcm"), "sop_uid": "1.2.3"})
    target = f"dicomweb+{url}"
    delivered = stow(WebServer(target, token=TOKEN), rows)
    assert [d.error for d in delivered[1:]] == ["", ""]  # the unreadable row comes first
    assert delivered[0].row["sop_uid"] == "1.2.3" and "unreadable" in delivered[0].error
    assert {r["sop_uid"] for r in rows[:2]} <= _stored_sops(gateway)
    refused = stow(WebServer(target, token="wrong"), rows[:1])
    assert [d.error for d in refused] == [f"{target} answered HTTP 401"]
    down = stow(WebServer(f"dicomweb+http://127.0.0.1:{free_port()}"), rows[:1])
    assert "unreachable" in down[0].error  # the outbox postpones it with this reason


def test_client_certificates_are_required_when_a_ca_is_configured(tmp_path):
    cert, key = self_signed(tmp_path / "server")
    client = self_signed(tmp_path / "client")  # self-signed: its own CA
    gateway, web_port = web_gateway(tmp_path / "gw", cert, key, web=f'tls_ca = "{client[0]}"')
    try:
        [path] = ct_copies(tmp_path / "ct", 1, "client-cert")
        body, content_type = multipart([("application/dicom", path.read_bytes())])
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type}
        url = f"https://127.0.0.1:{web_port}/studies"
        with pytest.raises(requests.ConnectionError):  # SSLError, or aborted (TLS 1.3)
            requests.post(url, data=body, headers=headers, verify=str(cert), timeout=30)
        assert str(pydicom.dcmread(path).SOPInstanceUID) not in _stored_sops(gateway)
        with_cert = requests.post(
            url, data=body, headers=headers, verify=str(cert), cert=tuple(map(str, client))
        )
        assert with_cert.status_code == 200
        assert str(pydicom.dcmread(path).SOPInstanceUID) in _stored_sops(gateway)
    finally:
        gateway.stop()
