"""report.pdf as DICOM: an Encapsulated PDF in the source study, for a PACS or a system that
files reports only as DICOM objects (PS3.3 A.45.1, SOP class 1.2.840.10008.5.1.4.1.1.104.1)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

import highdicom as hd
from pydicom import Dataset
from pydicom.uid import EncapsulatedPDFStorage, ExplicitVRLittleEndian

from edge_agent.report.dicom_files import SERIES, encoded
from edge_agent.report.provenance import Provenance
from edge_agent.trajectory import Trajectory
from imaging.atomic import write_atomic

TITLE = "edge-agent report (AI-generated, not a diagnosis)"


def build_pdf_document(pdf: bytes, sources: list[Dataset], provenance: Provenance) -> Dataset:
    """The PDF in the study of `sources` (patient and study copied from the first), citing
    them as the instances it was made from."""
    first = sources[0]
    document = hd.SOPClass(
        study_instance_uid=first.StudyInstanceUID,
        sop_class_uid=EncapsulatedPDFStorage,
        modality="DOC",
        transfer_syntax_uid=ExplicitVRLittleEndian,
        **provenance.new_object(SERIES["pdf"], "edge-agent report (PDF)"),
    )
    document.copy_patient_and_study_information(first)
    now = dt.datetime.now()
    document.ContentDate, document.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    document.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    document.ConversionType = "WSD"  # made on a workstation
    document.BurnedInAnnotation = "NO"  # the page names no patient, only UIDs and findings
    document.DocumentTitle = TITLE
    document.ConceptNameCodeSequence = []
    document.SourceInstanceSequence = [_reference(source) for source in sources]
    document.MIMETypeOfEncapsulatedDocument = "application/pdf"
    document.EncapsulatedDocument = pdf + b"\0" * (len(pdf) % 2)  # OB: even length
    document.EncapsulatedDocumentLength = len(pdf)
    return document


def write_pdf_document(
    trajectory: Trajectory, headers: Mapping[str, Dataset], out_dir: Path
) -> Path:
    """OUT/report.pdf as OUT/dicom/report_pdf.dcm; `headers`: the read's source instances."""
    pdf = (out_dir / "report.pdf").read_bytes()
    document = build_pdf_document(pdf, list(headers.values()), Provenance.of(trajectory))
    path = out_dir / "dicom" / "report_pdf.dcm"
    write_atomic(path, encoded(document))
    return path


def _reference(source: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    return item
