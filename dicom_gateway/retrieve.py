"""Query/retrieve against a PACS: C-FIND at study level, and C-GET of one study into a folder.

C-GET brings the instances back on the same association, so no route back to our listener has to
be configured on the PACS."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID
from pynetdicom import (
    AE,
    ALL_TRANSFER_SYNTAXES,
    StoragePresentationContexts,
    build_role,
    evt,
)
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
)

from dicom_gateway.settings import Peer
from dicom_gateway.spool import SpoolError, checked_uid
from dicom_gateway.status import PENDING, PENDING_WARNING, SUB_OPERATIONS_FAILED, SUCCESS
from imaging.errors import BadInput

log = logging.getLogger(__name__)

# Storage classes offered for C-GET sub-operations when the PACS does not say which classes the
# study holds: pynetdicom's 120 (images, SR, KO, PR, SEG...), with the C-GET context within the
# 128 presentation contexts one association may request.
GET_STORAGE = tuple(cx.abstract_syntax for cx in StoragePresentationContexts)
MAX_STORAGE_CONTEXTS = 127
FIND_KEYS = (
    "StudyInstanceUID",
    "PatientID",
    "PatientName",
    "StudyDate",
    "StudyDescription",
    "ModalitiesInStudy",
    "AccessionNumber",
    "NumberOfStudyRelatedInstances",
)


class PacsError(BadInput):
    """The PACS could not be reached or refused the request: the user's to fix, not a crash."""


@dataclass(frozen=True)
class FoundStudy:
    attributes: dict[str, str]


def find_studies(
    calling_ae: str, peer: Peer, *, patient_id: str = "", date: str = "", modality: str = ""
) -> list[FoundStudy]:
    query = _study_query()
    for keyword in FIND_KEYS:
        setattr(query, keyword, "")
    query.PatientID, query.StudyDate, query.ModalitiesInStudy = patient_id, date, modality
    return [
        FoundStudy({k: _text(found.get(k, "")) for k in FIND_KEYS})
        for found in _c_find(calling_ae, peer, query)
    ]


def _text(value) -> str:
    """A value as DICOM writes it: several values joined by a backslash (CT\\SR), as QIDO-RS
    lists them too."""
    return "\\".join(map(str, value)) if isinstance(value, MultiValue) else str(value)


def get_study(calling_ae: str, peer: Peer, study_uid: str, folder: Path) -> int:
    """C-GET every instance of the study into `folder`; returns how many arrived."""
    try:
        study_uid = checked_uid(study_uid, "Study Instance UID")
    except SpoolError as exc:  # the user typed it: bad input, not our crash
        raise BadInput(str(exc)) from None
    folder.mkdir(parents=True, exist_ok=True)
    received = []

    def store(event) -> int:
        try:
            sop_uid = checked_uid(event.request.AffectedSOPInstanceUID, "SOP Instance UID")
        except SpoolError as exc:
            return exc.status
        target = folder / f"{sop_uid}.dcm"
        partial = target.with_suffix(".part")
        partial.write_bytes(event.encoded_dataset(include_meta=True))
        partial.replace(target)
        received.append(sop_uid)
        return SUCCESS

    classes = _classes_in_study(calling_ae, peer, study_uid) or GET_STORAGE
    ae = _ae(calling_ae)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for sop_class in classes:  # compressed studies come back as they are stored
        ae.add_requested_context(sop_class, ALL_TRANSFER_SYNTAXES)
    roles = [build_role(sop_class, scp_role=True) for sop_class in classes]
    assoc = _associate(ae, peer, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, store)])
    query = _study_query()
    query.StudyInstanceUID = study_uid
    try:
        for status, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet):
            code = getattr(status, "Status", None)
            if code is None:
                raise PacsError(f"{peer} stopped answering the C-GET")
            if (
                code == SUB_OPERATIONS_FAILED
            ):  # a partial study must not be read as if it were whole
                failed = status.get("NumberOfFailedSuboperations", "?")
                raise PacsError(f"{peer} could not send {failed} instance(s) of {study_uid}")
            if code not in (SUCCESS, PENDING):
                raise PacsError(f"{peer} answered C-GET with status 0x{code:04X}")
    finally:
        assoc.release()
    if not received:
        raise PacsError(f"{peer} sent no instances for study {study_uid}")
    log.info("retrieved %d instance(s) of study %s from %s", len(received), study_uid, peer)
    return len(received)


def _classes_in_study(calling_ae: str, peer: Peer, study_uid: str) -> tuple[str, ...]:
    """The SOP classes the PACS says the study holds (C-FIND SOPClassesInStudy), to offer
    exactly those for the C-GET; empty when it does not say, or refuses the C-FIND (a PACS that
    allows C-GET only): GET_STORAGE is offered then."""
    query = _study_query()
    query.StudyInstanceUID = study_uid
    query.SOPClassesInStudy = ""
    try:
        answers = _c_find(calling_ae, peer, query)
    except PacsError:
        return ()
    classes = {
        str(uid)
        for found in answers
        for uid in _as_list(found.get("SOPClassesInStudy"))
        if UID(str(uid)).is_valid
    }
    if not classes or len(classes) > MAX_STORAGE_CONTEXTS:
        return ()
    return tuple(sorted(classes))


def _as_list(value) -> list:
    if not value:
        return []
    return list(value) if isinstance(value, MultiValue) else [value]


def _study_query() -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    return query


def _c_find(calling_ae: str, peer: Peer, query: Dataset) -> list[Dataset]:
    """Every identifier the PACS answers a study-level C-FIND with."""
    ae = _ae(calling_ae)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = _associate(ae, peer)
    found = []
    try:
        for status, identifier in assoc.send_c_find(
            query, StudyRootQueryRetrieveInformationModelFind
        ):
            code = getattr(status, "Status", None)
            if code in (PENDING, PENDING_WARNING) and identifier is not None:
                found.append(identifier)
            elif code is None:
                raise PacsError(f"{peer} stopped answering the C-FIND")
            elif code != SUCCESS:
                raise PacsError(f"{peer} answered C-FIND with status 0x{code:04X}")
    finally:
        assoc.release()
    return found


def _ae(calling_ae: str) -> AE:
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    return ae


def _associate(ae: AE, peer: Peer, **kwargs):
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title, **kwargs)
    if not assoc.is_established:
        raise PacsError(f"could not open an association with {peer}")
    return assoc
