"""Stopping the service while a STOW-RS instance is being stored: uvicorn gives the request
GRACE_S and cancels it, but the store goes on in its thread; the service waits for it before it
closes the index and the audit trail, so the stored file has its row and its audit line."""

from __future__ import annotations

import contextlib
import fcntl
import json
import threading

import pytest
import requests

from dicom_gateway.audit import audit_path
from dicom_gateway.engines import open_index
from dicom_gateway.service import Service
from dicom_gateway.settings import GatewaySettings
from dicom_gateway.web_settings import WebClient, WebSettings
from tests.dicom_gateway.test_dicomweb import multipart
from tests.peers import free_port, wait_for
from tests.support import ct_copies


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_a_stop_waits_for_the_instance_a_cancelled_stow_request_is_storing(
    tmp_path, request, engine
):
    database = request.getfixturevalue("postgres").database() if engine == "postgresql" else ""
    spool = tmp_path / "spool"
    web = WebSettings(port=free_port(), clients=(WebClient("ris", token="t0ken"),))
    settings = GatewaySettings(
        spool_dir=str(spool), port=free_port(), database=database, min_free_mb=1, web=web
    )
    service = Service(settings, open_reader=lambda: None, role="listener")
    stop = threading.Event()
    running = threading.Thread(target=service.run, args=(stop,))
    running.start()
    try:
        audit = audit_path(spool, shared=bool(database))
        wait_for(lambda: "service_started" in audit.read_text(), 30, "the service to start")
        [instance] = ct_copies(tmp_path / "ct", 1, "stop")
        body, content_type = multipart([("application/dicom", instance.read_bytes())])

        def stow() -> None:
            headers = {"Authorization": "Bearer t0ken", "Content-Type": content_type}
            url = f"http://127.0.0.1:{web.port}/studies"
            with contextlib.suppress(requests.ConnectionError):  # cancelled at the stop: no answer
                requests.post(url, data=body, headers=headers, timeout=60)

        # The index's turn lock held here: the instance is renamed into its study, then waits to be
        # indexed, as it would behind a slow index.
        with open(spool / "ingest.lock", "r+b") as turns:
            fcntl.flock(turns, fcntl.LOCK_EX)
            client = threading.Thread(target=stow)
            client.start()
            wait_for(lambda: list((spool / "studies").rglob("*.dcm")), 30, "the instance renamed")
            stop.set()
            client.join(timeout=60)  # uvicorn gave up on the request after its grace time
            running.join(timeout=2)  # without the wait, it closes at once
            waited = running.is_alive()
            fcntl.flock(turns, fcntl.LOCK_UN)
    finally:
        stop.set()
        running.join(timeout=60)
    assert waited, "the service closed while an instance was still being stored"
    [stored] = (spool / "studies").rglob("*.dcm")
    index = open_index(database, spool)
    try:
        assert [r[0] for r in index.read("SELECT path FROM instances")] == [str(stored)]
    finally:
        index.close()
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [e["event"] for e in events][-2:] == ["instance_stored", "service_stopped"]
