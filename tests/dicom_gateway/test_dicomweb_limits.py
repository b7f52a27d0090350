"""DICOMweb at its limits: STOW-RS bodies in flight stay within a total budget, and our client
talks to the configured server only (no redirect, no proxy) and counts as delivered only what
the server's answer lists as stored."""

from __future__ import annotations

import socket

import pydicom
import pytest
import requests
from pydicom import Dataset

from dicom_gateway.audit import Audit
from dicom_gateway.index import SqliteIndex
from dicom_gateway.outbox import Outbox, undelivered
from dicom_gateway.retrieve import PacsError
from dicom_gateway.settings import GatewaySettings
from dicom_gateway.web_settings import WebServer, WebSettings
from tests.dicom_gateway.test_dicomweb import _stored_sops, multipart
from tests.dicomweb_peers import TOKEN, Scripted, web_gateway
from tests.support import ct_copies

DICOM_JSON = "application/dicom+json"


def _sops(files) -> set[str]:
    return {str(pydicom.dcmread(p).SOPInstanceUID) for p in files}


def _read_response(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = bytearray()
    while chunk := sock.recv(65536):
        data += chunk
    return bytes(data)


def test_bodies_over_the_total_budget_are_refused_with_503_and_nothing_is_stored(tmp_path):
    gateway, web_port = web_gateway(
        tmp_path / "gw", None, None, web="max_request_mb = 1\nmax_inflight_mb = 1"
    )
    try:
        url = f"http://127.0.0.1:{web_port}/studies"
        first, second, small = (
            ct_copies(tmp_path / name, count, f"budget-{name}")
            for name, count in (("first", 15), ("second", 15), ("small", 1))
        )
        body, content_type = multipart([("application/dicom", p.read_bytes()) for p in first])
        assert 1 << 19 < len(body) < 1 << 20  # over half the budget: two cannot be held at once
        uploading = socket.create_connection(("127.0.0.1", web_port), timeout=60)
        uploading.sendall(
            (
                f"POST /studies HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Expect: 100-continue\r\nConnection: close\r\n\r\n"
            ).encode()
        )
        # 100 Continue comes when the endpoint starts reading: the body's bytes are taken
        assert uploading.recv(64).startswith(b"HTTP/1.1 100")
        uploading.sendall(body[: len(body) // 2])  # and the upload stays in flight

        headers = {"Authorization": f"Bearer {TOKEN}"}
        over, over_type = multipart([("application/dicom", p.read_bytes()) for p in second])
        busy = requests.post(
            url, data=over, headers=headers | {"Content-Type": over_type}, timeout=30
        )
        assert busy.status_code == 503 and "retry in" in busy.text
        assert int(busy.headers["Retry-After"]) > 0
        within, within_type = multipart([("application/dicom", small[0].read_bytes())])
        taken = requests.post(
            url, data=within, headers=headers | {"Content-Type": within_type}, timeout=30
        )
        assert taken.status_code == 200

        uploading.sendall(body[len(body) // 2 :])
        assert _read_response(uploading).startswith(b"HTTP/1.1 200")
        uploading.close()
        stored = _stored_sops(gateway)
        assert _sops(first) | _sops(small) <= stored and not _sops(second) & stored
        again = requests.post(  # the budget was given back: the same request now goes through
            url, data=over, headers=headers | {"Content-Type": over_type}, timeout=30
        )
        assert again.status_code == 200 and _sops(second) <= _stored_sops(gateway)
        refusals = [e for e in gateway.audit() if e["event"] == "stow_refused"]
        assert [e["status"] for e in refusals] == [503]
    finally:
        gateway.stop()


def test_an_inflight_budget_below_the_request_limit_is_a_config_error():
    with pytest.raises(ValueError, match="max_inflight_mb"):
        WebSettings(max_request_mb=512, max_inflight_mb=256)


def _outbox_to(tmp_path, url: str, count: int = 2) -> tuple[Outbox, SqliteIndex, set[str]]:
    """An outbox with `count` results queued for the DICOMweb server at `url`."""
    index = SqliteIndex(tmp_path / "index.sqlite")
    outbox = Outbox(index, GatewaySettings(destinations=(url,)), Audit(tmp_path / "audit.jsonl"))
    files = ct_copies(tmp_path / "ct", count, f"out-{url}")
    with index.write() as db:
        outbox.add_in(db, None, outbox.identify(files))
    return outbox, index, _sops(files)


@pytest.mark.parametrize("status", [307, 308])
def test_a_redirect_is_not_followed_and_the_row_is_postponed_naming_its_host(tmp_path, status):
    elsewhere = Scripted(200)
    location = f"http://127.0.0.1:{elsewhere.port}/dicom-web/studies"
    redirecting = Scripted(status, {"Location": location})
    try:
        url = f"dicomweb+http://127.0.0.1:{redirecting.port}/dicom-web"
        outbox, index, sops = _outbox_to(tmp_path, url)
        assert outbox.send_due() == 0
        assert [r[0] for r in redirecting.requests] == ["POST"]
        assert elsewhere.requests == []  # the instances went nowhere else
        rows = undelivered(index)
        assert {r.sop_uid for r in rows} == sops and {r.state for r in rows} == {"pending"}
        for row in rows:
            assert f"to 127.0.0.1:{elsewhere.port}: not followed" in row.last_error
        from dicom_gateway.dicomweb_retrieve import find_studies

        with pytest.raises(PacsError, match=f"127.0.0.1:{elsewhere.port}: not followed"):
            find_studies(WebServer(url))
        assert [r[0] for r in elsewhere.requests] == []
    finally:
        redirecting.stop()
        elsewhere.stop()


def test_a_proxy_in_the_environment_is_not_used(tmp_path, monkeypatch):
    proxy = Scripted(200)
    server = None
    try:
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        files = ct_copies(tmp_path / "answer", 2, "proxy")
        answer = Dataset()
        answer.ReferencedSOPSequence = [Dataset() for _ in files]
        for item, sop in zip(answer.ReferencedSOPSequence, sorted(_sops(files)), strict=True):
            item.ReferencedSOPInstanceUID = sop
        body = answer.to_json().encode()
        server = Scripted(200, {"Content-Type": DICOM_JSON}, body)
        url = f"dicomweb+http://127.0.0.1:{server.port}/dicom-web"
        index = SqliteIndex(tmp_path / "index.sqlite")
        outbox = Outbox(index, GatewaySettings(destinations=(url,)), Audit(tmp_path / "a.jsonl"))
        with index.write() as db:
            outbox.add_in(db, None, outbox.identify(files))
        assert outbox.send_due() == 2
        assert proxy.requests == [] and [r[0] for r in server.requests] == ["POST"]
    finally:
        proxy.stop()
        if server is not None:
            server.stop()


@pytest.mark.parametrize(
    ("headers", "body"),
    [({}, b""), ({"Content-Type": DICOM_JSON}, b""), ({"Content-Type": DICOM_JSON}, b"{}")],
)
def test_an_answer_that_lists_nothing_delivers_nothing(tmp_path, headers, body):
    server = Scripted(200, headers, body)
    try:
        url = f"dicomweb+http://127.0.0.1:{server.port}/dicom-web"
        outbox, index, sops = _outbox_to(tmp_path, url)
        assert outbox.send_due() == 0
        rows = undelivered(index)
        assert {r.sop_uid for r in rows} == sops and {r.state for r in rows} == {"pending"}
        assert all("did not list it as stored" in r.last_error for r in rows)
    finally:
        server.stop()


def test_an_answer_that_is_not_json_delivers_nothing(tmp_path):
    server = Scripted(200, {"Content-Type": DICOM_JSON}, b"<html>stored, honest</html>")
    try:
        url = f"dicomweb+http://127.0.0.1:{server.port}/dicom-web"
        outbox, index, _ = _outbox_to(tmp_path, url, count=1)
        assert outbox.send_due() == 0
        [row] = undelivered(index)
        assert row.state == "pending" and "not JSON" in row.last_error
    finally:
        server.stop()


@pytest.mark.parametrize(
    "content_type", ["application/dicom+json; charset=utf-8", "application/json; charset=UTF-8"]
)
def test_a_stow_answer_typed_with_a_charset_marks_the_instance_delivered(tmp_path, content_type):
    """Some servers type their DICOM JSON answer with a charset: what they stored is delivered,
    not sent again at every back-off."""
    from dicom_gateway.dicomweb_out import stow

    [path] = ct_copies(tmp_path, 1, "charset")
    ds = pydicom.dcmread(path)
    stored = Dataset()
    stored.ReferencedSOPClassUID, stored.ReferencedSOPInstanceUID = (
        ds.SOPClassUID,
        ds.SOPInstanceUID,
    )
    answer = Dataset()
    answer.ReferencedSOPSequence = [stored]
    server = Scripted(200, {"Content-Type": content_type}, answer.to_json().encode())
    try:
        url = f"dicomweb+http://127.0.0.1:{server.port}/dicom-web"
        [delivery] = stow(WebServer(url), [{"path": str(path), "sop_uid": ds.SOPInstanceUID}])
    finally:
        server.stop()
    assert delivery.error == ""
