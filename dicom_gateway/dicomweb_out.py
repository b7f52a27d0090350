"""DICOMweb as a client: a session to one configured server, and STOW-RS of outbox rows to it.

Through `dicomweb-client` (the DICOMweb client of the Imaging Data Commons and highdicom
authors). Its own retries are off: the outbox's back-off decides when to try again."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session
from pydicom.errors import InvalidDicomError

from dicom_gateway.web_settings import WebServer

log = logging.getLogger(__name__)

TIMEOUT_S = 60


@dataclass(frozen=True)
class Delivery:
    """One outbox row after a STOW attempt: `error` is "" when the server stored it."""

    row: object
    error: str = ""


def connect(server: WebServer) -> DICOMwebClient:
    """A client for one server: its bearer token, its CA, no retries of its own."""
    session = create_session()
    if server.ca:
        session.verify = server.ca
    token = server.secret()
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    url = server.url[len("dicomweb+") :].rstrip("/")
    client = DICOMwebClient(url, session=session, timeout=TIMEOUT_S)
    client.set_http_retry_params(retry=False)
    return client


def stow(server: WebServer, rows: Sequence) -> list[Delivery]:
    """STOW-RS the rows' files in one request; each row comes back delivered or with why not."""
    datasets, sent, unreadable = [], [], []
    for row in rows:
        try:
            datasets.append(pydicom.dcmread(Path(row["path"])))
            sent.append(row)
        except (OSError, InvalidDicomError) as exc:
            unreadable.append(Delivery(row, f"result file unreadable: {exc}"))
    if not datasets:
        return unreadable
    try:
        answer = connect(server).store_instances(datasets)
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        return unreadable + [Delivery(r, f"{server.url} answered HTTP {status}") for r in sent]
    except (requests.RequestException, OSError) as exc:  # down, refused, TLS, timeout
        error = f"{server.url} unreachable: {type(exc).__name__}"
        return unreadable + [Delivery(r, error) for r in sent]
    failed = {
        str(item.get("ReferencedSOPInstanceUID", "")): int(item.get("FailureReason", 0))
        for item in answer.get("FailedSOPSequence", [])
    }
    return unreadable + [
        Delivery(
            row,
            f"{server.url} refused it: FailureReason 0x{failed[row['sop_uid']]:04X}"
            if row["sop_uid"] in failed
            else "",
        )
        for row in sent
    ]
