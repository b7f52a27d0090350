"""STOW-RS in: `POST /studies` (and `/studies/{StudyInstanceUID}`) over HTTPS, each client with
its bearer token, each instance stored exactly as a C-STORE is (the spool: fsync, then index row)
before the answer names it stored.

Starlette (routing, requests, responses) on uvicorn (HTTP/1.1 with h11, TLS from the standard
`ssl` module): both small, widely used and maintained, and uvicorn serves in a thread beside the
DIMSE listener with a clean shutdown. The body is read and split whole before anything is stored,
so a malformed message stores nothing; the bodies held at once, over all requests, stay within
`max_inflight_mb` (a request past it is answered 503 with Retry-After, nothing read or stored),
and the split runs in the thread pool, so a large body never stalls the other requests. Each
instance then succeeds or fails on its own, and the answer lists the failures with their reason
(DICOM JSON, FailedSOPSequence/FailureReason, plus one `Warning` header per failure that says why
in words)."""

from __future__ import annotations

import hmac
import io
import logging
import ssl
import threading
import time
import uuid
from dataclasses import dataclass

import pydicom
import uvicorn
from pydicom import Dataset
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dicom_gateway.audit import Audit, stored_fields
from dicom_gateway.dataset_check import MalformedDataset, check_dataset
from dicom_gateway.multipart import (
    DICOM,
    MalformedMultipart,
    Part,
    UnsupportedMedia,
    boundary_of,
    split,
)
from dicom_gateway.routing import STOW_SENDER
from dicom_gateway.settings import StartError
from dicom_gateway.spool import Spool, SpoolError, checked_uid
from dicom_gateway.status import CANNOT_UNDERSTAND, DATA_SET_MISMATCH, PROCESSING_FAILURE
from dicom_gateway.web_settings import WebClient, WebSettings

log = logging.getLogger(__name__)

DICOM_JSON = "application/dicom+json"
GRACE_S = 5
RETRY_AFTER_S = 10


class TooLarge(ValueError):
    """The body is over `max_request_mb`: answered with 413, nothing stored."""


class Busy(ValueError):
    """The bodies in flight would pass `max_inflight_mb`: answered with 503, nothing stored."""


class BodyBudget:
    """The bytes of STOW bodies held at once, over every request: each request takes what it
    declares (or receives) before reading it and gives it back when its instances are stored.
    Used from the event loop only, so it needs no lock."""

    def __init__(self, limit: int) -> None:
        self.limit, self.held = limit, 0

    def take(self, size: int) -> None:
        if self.held + size > self.limit:
            raise Busy(
                f"{self.held >> 20} MiB of STOW bodies in flight, the limit is "
                f"{self.limit >> 20} MiB: retry in {RETRY_AFTER_S} s"
            )
        self.held += size

    def give(self, size: int) -> None:
        self.held -= size


@dataclass(frozen=True)
class Outcome:
    """One part of a STOW request: stored, or the failure code and its reason."""

    sop_class: str
    sop_uid: str
    failure: int = 0  # 0: stored; else the FailureReason (the C-STORE status it would get)
    reason: str = ""


class StowApp:
    """The HTTP side of STOW-RS: admission, body, per-instance storing, the answer."""

    def __init__(self, web: WebSettings, spool: Spool, audit: Audit) -> None:
        self._spool, self._audit = spool, audit
        self._max_bytes = web.max_request_mb << 20
        self._budget = BodyBudget(web.max_inflight_mb << 20)
        self._clients = [(client, client.secret().encode()) for client in web.clients]
        routes = [
            Route("/studies", self.stow, methods=["POST"]),
            Route("/studies/{study}", self.stow, methods=["POST"]),
        ]
        self.app = Starlette(routes=routes)

    def _client(self, request: Request) -> WebClient | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        offered = token.strip().encode()
        found = None
        for client, secret in self._clients:  # every token compared: no timing tells which
            if hmac.compare_digest(offered, secret):
                found = client
        return found

    async def stow(self, request: Request) -> Response:
        peer = {"address": request.client.host if request.client else "", "request": _id()}
        client = self._client(request)
        if client is None:
            self._audit("stow_refused", status=401, reason="no valid bearer token", **peer)
            return _error(401, "a valid bearer token is required", bearer=True)
        peer["client"] = client.name
        held = [0]  # bytes of the budget this request holds, given back however it ends
        try:
            return await self._admitted(request, client, peer, held)
        finally:
            self._budget.give(held[0])

    async def _admitted(
        self, request: Request, client: WebClient, peer: dict, held: list[int]
    ) -> Response:
        try:
            study = request.path_params.get("study")
            if study is not None:
                study = checked_uid(study, "Study Instance UID")
            boundary = boundary_of(request.headers.get("content-type", ""))
            body = await self._body(request, held)
            parts = await run_in_threadpool(split, body, boundary)
        except (MalformedMultipart, SpoolError) as exc:
            return self._refuse(400, str(exc), peer)
        except UnsupportedMedia as exc:
            return self._refuse(415, str(exc), peer)
        except TooLarge as exc:
            return self._refuse(413, str(exc), peer)
        except Busy as exc:
            self._audit("stow_refused", status=503, reason=str(exc), **peer)
            return _error(503, str(exc), retry_after=RETRY_AFTER_S)
        outcomes = [
            await run_in_threadpool(self._store, part, client, study, peer) for part in parts
        ]
        response = _response(outcomes)
        failed = sum(1 for o in outcomes if o.failure)
        self._audit(
            "stow_request",
            status=response.status_code,
            stored=len(outcomes) - failed,
            failed=failed,
            **peer,
        )
        return response

    def _refuse(self, status: int, reason: str, peer: dict) -> Response:
        self._audit("stow_refused", status=status, reason=reason, **peer)
        return _error(status, reason)

    async def _body(self, request: Request, held: list[int]) -> bytearray:
        """The whole body, its bytes taken from the budget before they are read (the declared
        length at once, so a request past the budget reads nothing)."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit():
            if int(declared) > self._max_bytes:
                raise TooLarge(f"body of {declared} bytes is over {self._max_bytes >> 20} MiB")
            self._budget.take(int(declared))
            held[0] = int(declared)
        body = bytearray()
        async for chunk in request.stream():
            if len(body) + len(chunk) > self._max_bytes:
                raise TooLarge(f"body is over {self._max_bytes >> 20} MiB")
            more = len(body) + len(chunk) - held[0]
            if more > 0:  # chunked, without a length to take up front
                self._budget.take(more)
                held[0] += more
            body += chunk
        return body

    def _store(self, part: Part, client: WebClient, study: str | None, peer: dict) -> Outcome:
        """One instance, as the DIMSE listener stores one: durable before it is counted."""
        with self._spool.storing():  # a stopping service waits for it, whatever uvicorn cancels
            return self._store_part(part, client, study, peer)

    def _store_part(self, part: Part, client: WebClient, study: str | None, peer) -> Outcome:
        sop_class, sop_uid, part_study = _identity(part.data)
        if part.content_type != DICOM:
            reason = f"part of type {part.content_type or 'none'!r}, not {DICOM}"
            return self._failed(sop_class, sop_uid, CANNOT_UNDERSTAND, reason, peer)
        if study is not None and part_study not in (None, study):
            reason = "Study Instance UID differs from the study in the URL"
            # the closest C-STORE failure PS3.4 defines for "not what this request is for"
            return self._failed(sop_class, sop_uid, DATA_SET_MISMATCH, reason, peer)
        try:
            stored = self._spool.store(part.data, STOW_SENDER + client.name, requested=False)
        except SpoolError as exc:
            return self._failed(sop_class, sop_uid, exc.status, str(exc), peer)
        except Exception:  # our bug: this instance fails, the endpoint keeps serving
            log.exception("storing a STOW instance from %s failed", client.name)
            return self._failed(sop_class, sop_uid, PROCESSING_FAILURE, "processing failure", peer)
        self._audit("instance_stored", **stored_fields(stored), **peer)
        return Outcome(sop_class, stored.sop_uid)

    def _failed(self, sop_class: str, sop_uid: str, code: int, reason: str, peer) -> Outcome:
        self._audit(
            "instance_refused", status=f"0x{code:04X}", reason=reason, sop_uid=sop_uid, **peer
        )
        return Outcome(sop_class, sop_uid, code, reason)


def _id() -> str:
    return uuid.uuid4().hex[:12]


def _error(status: int, reason: str, *, bearer: bool = False, retry_after: int = 0) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="edge-agent"'} if bearer else {}
    if retry_after:
        headers["Retry-After"] = str(retry_after)
    return Response(f"{reason}\n", status, headers=headers, media_type="text/plain")


def _identity(data: bytes | memoryview) -> tuple[str, str, str | None]:
    """The part's SOP Class and Instance UID for the answer ("" where unreadable or not a UID)
    and its Study Instance UID (None when the spool's own check will refuse the part), from the
    one walk over its element headers that the spool's check makes too: no pydicom parse of a
    whole part. Of a part the walk refuses, pydicom reads what survives, for the answer."""
    try:
        uids = check_dataset(data)
    except MalformedDataset:  # the spool's own check refuses it, and says why
        return (*_uids(data), None)
    except Exception:  # our bug: said as such, and the part fails alone, as the spool's would
        log.exception("checking a STOW-RS part failed")
        return (*_uids(data), None)
    sop_class, sop_uid = (_answer_uid(uids.get(k)) for k in ("SOPClassUID", "SOPInstanceUID"))
    return sop_class, sop_uid, uids.get("StudyInstanceUID")


def _uids(data: bytes | memoryview) -> tuple[str, str]:
    """SOP Class and Instance UID of a malformed part, as far as pydicom reads them."""
    try:
        header = pydicom.dcmread(
            io.BytesIO(data), force=True, specific_tags=["SOPClassUID", "SOPInstanceUID"]
        )
        values = (header.get("SOPClassUID", ""), header.get("SOPInstanceUID", ""))
    except Exception:  # any unreadable part: its failure is reported without UIDs
        return "", ""
    return _answer_uid(values[0]), _answer_uid(values[1])


def _answer_uid(value: object) -> str:
    """A UID as the answer may name it: "" for anything that is not one."""
    try:
        return checked_uid(value, "UID")
    except SpoolError:
        return ""


def _response(outcomes: list[Outcome]) -> Response:
    """200 when every instance was stored, 202 when some were, 409 when none; the DICOM JSON
    answer, and a `Warning` (299) that says in words why each failure failed."""
    failed = [o for o in outcomes if o.failure]
    status = 200 if not failed else 409 if len(failed) == len(outcomes) else 202
    headers = {}
    if failed:  # one header, comma-joined, as HTTP folds repeated headers
        text = ", ".join(
            f'299 edge-agent "{o.sop_uid or "?"}: {_quotable(o.reason)}"' for o in failed[:20]
        )
        headers["Warning"] = text.encode("ascii", "replace").decode("ascii")
    answer = _answer(outcomes).to_json_dict()
    return JSONResponse(answer, status, headers=headers, media_type=DICOM_JSON)


def _quotable(text: str) -> str:
    return text.replace("\\", "/").replace('"', "'")


def _answer(outcomes: list[Outcome]) -> Dataset:
    """The STOW-RS response (PS3.18 10.5.3): referenced and failed SOP instances."""
    answer = Dataset()
    stored, failed = [], []
    for outcome in outcomes:
        item = Dataset()
        if outcome.sop_class:
            item.ReferencedSOPClassUID = outcome.sop_class
        if outcome.sop_uid:
            item.ReferencedSOPInstanceUID = outcome.sop_uid
        if outcome.failure:
            item.FailureReason = outcome.failure
            failed.append(item)
        else:
            stored.append(item)
    if stored:
        answer.ReferencedSOPSequence = stored
    if failed:
        answer.FailedSOPSequence = failed
    return answer


class WebListener:
    """The STOW-RS endpoint served by uvicorn in its own thread; `stop` finishes the requests
    in flight."""

    def __init__(self, web: WebSettings, spool: Spool, audit: Audit) -> None:
        self._web = web
        self.app = StowApp(web, spool, audit).app
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        web = self._web
        config = uvicorn.Config(
            self.app,
            host=web.bind,
            port=web.port,
            http="h11",
            lifespan="off",
            log_config=None,  # our JSON logging stays as it is
            access_log=False,  # the audit records every request, without its URL
            server_header=False,
            # Requests in flight get this long at SIGTERM: a client's closed HTTPS connection
            # otherwise holds the shutdown for 30 s (seen with uvicorn 0.54 on asyncio's TLS).
            timeout_graceful_shutdown=GRACE_S,
            ssl_certfile=web.tls_cert or None,
            ssl_keyfile=web.tls_key or None,
            ssl_ca_certs=web.tls_ca or None,
            ssl_cert_reqs=ssl.CERT_REQUIRED if web.tls_ca else ssl.CERT_NONE,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="stow-rs", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                # its port in use, its address not here, its TLS files: uvicorn logged which
                raise StartError(f"STOW-RS did not start on {web.bind}:{web.port}: see the log")
            time.sleep(0.05)
        scheme = "https" if web.tls_cert else "http"
        log.info("STOW-RS on %s://%s:%d/studies", scheme, web.bind, web.port)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join()
            self._server = self._thread = None
