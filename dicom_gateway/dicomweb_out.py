"""DICOMweb as a client: a session to one configured server, and STOW-RS of outbox rows to it.

Through `dicomweb-client` (the DICOMweb client of the Imaging Data Commons and highdicom
authors). Its own retries are off: the outbox's back-off decides when to try again. `connect` is
the one place a DICOMweb session is made, and it reaches the configured server only: no proxy or
.netrc from the environment, and a redirect is an error, never followed (a 307/308 would carry
the instances to wherever it points)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session
from pydicom.errors import InvalidDicomError

from dicom_gateway.web_settings import WebServer

log = logging.getLogger(__name__)

TIMEOUT_S = 60


class Redirected(requests.RequestException):
    """The server answered 3xx: the request is not repeated to the host it names."""


@dataclass(frozen=True)
class Delivery:
    """One outbox row after a STOW attempt: `error` is "" when the server stored it."""

    row: object
    error: str = ""


def connect(server: WebServer) -> DICOMwebClient:
    """A client for one server: its bearer token, its CA, no retries of its own."""
    session = create_session()
    session.trust_env = False  # no HTTP(S)_PROXY, no .netrc: the configured server only
    session.max_redirects = 0
    session.hooks["response"].extend([_refuse_redirect, _plain_json])
    if server.ca:
        session.verify = server.ca
    token = server.secret()
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    url = server.url[len("dicomweb+") :].rstrip("/")
    client = DICOMwebClient(url, session=session, timeout=TIMEOUT_S)
    client.set_http_retry_params(retry=False)
    return client


def _refuse_redirect(response: requests.Response, **_) -> None:
    """Raise on any 3xx before requests could follow it (hooks run first)."""
    if response.is_redirect or 300 <= response.status_code < 400:
        target = urlsplit(response.headers.get("location", ""))
        host = target.netloc or "the same host"
        raise Redirected(
            f"redirected (HTTP {response.status_code}) to {host}: not followed",
            response=response,
        )


JSON_TYPES = ("application/dicom+json", "application/json")


def _plain_json(response: requests.Response, **_) -> None:
    """A DICOM JSON answer typed with parameters ('application/dicom+json; charset=utf-8', as
    some servers write it) as the bare type: dicomweb-client compares the whole header and took
    such an answer for an empty one, so what the server stored was never marked delivered."""
    media = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if media in JSON_TYPES:
        response.headers["Content-Type"] = "application/dicom+json"


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
    except Redirected as exc:
        return unreadable + [Delivery(r, f"{server.url} {exc}") for r in sent]
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        return unreadable + [Delivery(r, f"{server.url} answered HTTP {status}") for r in sent]
    except requests.JSONDecodeError:  # said DICOM JSON, sent something else
        error = f"{server.url} answered with a STOW-RS response that is not JSON"
        return unreadable + [Delivery(r, error) for r in sent]
    except (requests.RequestException, OSError) as exc:  # down, refused, TLS, timeout
        error = f"{server.url} unreachable: {type(exc).__name__}"
        return unreadable + [Delivery(r, error) for r in sent]
    return unreadable + [Delivery(row, _outcome(server, answer, row["sop_uid"])) for row in sent]


def _outcome(server: WebServer, answer: pydicom.Dataset, sop_uid: str) -> str:
    """Why the instance is not delivered ("" when it is). Only ReferencedSOPSequence counts as
    stored: an answer that names the instance nowhere (an empty body, say) stores nothing as far
    as we can tell."""
    stored, failed = (
        {str(item.get("ReferencedSOPInstanceUID", "")): item for item in answer.get(key, [])}
        for key in ("ReferencedSOPSequence", "FailedSOPSequence")
    )
    if sop_uid in failed:
        reason = int(failed[sop_uid].get("FailureReason", 0))
        return f"{server.url} refused it: FailureReason 0x{reason:04X}"
    if sop_uid not in stored:
        return f"{server.url} did not list it as stored in its STOW-RS answer"
    return ""
