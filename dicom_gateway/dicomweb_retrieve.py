"""Query/retrieve against a DICOMweb server: QIDO-RS at study level, and WADO-RS of one study
into a folder, answering with the same types as the DIMSE C-FIND / C-GET in retrieve.py."""

from __future__ import annotations

import logging
from pathlib import Path

import pydicom
import requests

from dicom_gateway.dicomweb_out import Redirected, connect
from dicom_gateway.retrieve import FIND_KEYS, FoundStudy, PacsError
from dicom_gateway.spool import SpoolError, checked_uid
from dicom_gateway.web_settings import WebServer

log = logging.getLogger(__name__)


def find_studies(
    server: WebServer, *, patient_id: str = "", date: str = "", modality: str = ""
) -> list[FoundStudy]:
    """QIDO-RS /studies with the same keys `pacs find` shows for a DIMSE PACS."""
    filters = {"PatientID": patient_id, "StudyDate": date, "ModalitiesInStudy": modality}
    try:
        found = connect(server).search_for_studies(
            fields=list(FIND_KEYS),
            search_filters={k: v for k, v in filters.items() if v},
        )
    except Redirected as exc:
        raise PacsError(f"{server.url} {exc}") from None
    except requests.HTTPError as exc:
        raise PacsError(f"{server.url} answered QIDO-RS with HTTP {_status(exc)}") from None
    except (requests.RequestException, OSError) as exc:
        raise PacsError(f"could not reach {server.url}: {type(exc).__name__}") from None
    studies = []
    for attributes in found:
        dataset = pydicom.Dataset.from_json(attributes)
        studies.append(FoundStudy({k: _text(dataset.get(k, "")) for k in FIND_KEYS}))
    return studies


AS_STORED = (("application/dicom", "*"),)  # WADO-RS: any transfer syntax (PS3.18 8.7.3.5.2)


def get_study(server: WebServer, study_uid: str, folder: Path) -> int:
    """WADO-RS every instance of the study into `folder`; returns how many arrived."""
    try:
        study_uid = checked_uid(study_uid, "Study Instance UID")
    except SpoolError as exc:  # the user typed it: bad input, not our crash
        raise PacsError(str(exc)) from None
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    try:
        # each instance as it is stored: a PACS that cannot transcode (JPEG 2000 to the default
        # Explicit VR Little Endian) fails the whole study otherwise
        for dataset in connect(server).iter_study(study_uid, media_types=AS_STORED):
            try:
                sop_uid = checked_uid(dataset.get("SOPInstanceUID"), "SOP Instance UID")
            except SpoolError as exc:
                raise PacsError(f"{server.url} sent an instance with a bad UID: {exc}") from None
            target = folder / f"{sop_uid}.dcm"
            partial = target.with_suffix(".part")
            dataset.save_as(partial)
            partial.replace(target)
            count += 1
    except Redirected as exc:
        raise PacsError(f"{server.url} {exc}") from None
    except requests.HTTPError as exc:
        raise PacsError(
            f"{server.url} answered WADO-RS for study {study_uid} with HTTP {_status(exc)}"
        ) from None
    except (requests.RequestException, OSError) as exc:
        raise PacsError(f"could not reach {server.url}: {type(exc).__name__}") from None
    if not count:
        raise PacsError(f"{server.url} sent no instances for study {study_uid}")
    log.info("retrieved %d instance(s) of study %s from %s", count, study_uid, server.url)
    return count


def _status(exc: requests.HTTPError) -> str:
    return str(exc.response.status_code) if exc.response is not None else "?"


def _text(value) -> str:
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(map(str, value))
    return str(value)
