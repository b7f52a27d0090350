"""Evidence as DICOM: each cited evidence image as a Secondary Capture (overlay burned in, derived
from its source image), and a Key Object Selection listing the key source images."""

from __future__ import annotations

import highdicom as hd
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from edge_agent.report.evidence import EvidenceImage
from edge_agent.report.provenance import Provenance
from imaging.instance import frame_count
from tools.render import to_rgb


def build_captures(
    images: list[EvidenceImage],
    sources: dict[str, Dataset],
    provenance: Provenance,
    series_number: int,
) -> list[hd.sc.SCImage]:
    series_uid = generate_uid()
    return [
        _capture(
            image,
            sources[image.record.source.sop_instance_uid],
            provenance,
            series_uid,
            series_number,
            number,
        )
        for number, image in enumerate(images, 1)
    ]


def _capture(image: EvidenceImage, source: Dataset, provenance, series_uid, series_number, number):
    capture = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=to_rgb(image.pixels),
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        patient_orientation=image.geometry.directions or ("L", "P"),
        **provenance.new_object(
            series_number,
            "edge-agent evidence",
            series_instance_uid=series_uid,
            instance_number=number,
        ),
    )
    if image.geometry.directions is None:
        capture.PatientOrientation = None  # Type 2: unknown stays empty rather than guessed
    capture.Laterality = source.get("Laterality") or None  # Type 2C: the source's, or empty
    capture.BurnedInAnnotation = "YES"
    capture.ImageComments = f"{_comment(image)}. {provenance.statement}"[:10240]
    what = "contact sheet of source frames" if image.is_sheet else "view of the source image"
    capture.DerivationDescription = f"edge-agent {image.record.tool}: {what}, overlay burned in"
    capture.DerivationCodeSequence = [hd.sr.CodedConcept.from_code(codes.cid7203.SpatialResampling)]
    capture.SourceImageSequence = [_source_reference(source, list(image.frames))]
    return capture


def _comment(image: EvidenceImage) -> str:
    """Which workspace image this is, and for a cine or video when its frames were shown."""
    record = image.record
    comment = f"workspace image #{record.index} ({record.tool})"
    if record.times_s:
        comment += "; frames " + ", ".join(
            f"{frame} at {time:.3f} s"
            for frame, time in zip(record.frames, record.times_s, strict=True)
        )
    return comment


def _source_reference(source: Dataset, frames: list[int]) -> Dataset:
    reference = Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    if frame_count(source) > 1:
        reference.ReferencedFrameNumber = frames
    reference.PurposeOfReferenceCodeSequence = [
        hd.sr.CodedConcept.from_code(codes.cid7202.SourceImageForImageProcessingOperation)
    ]
    return reference


def build_key_objects(
    sources: list[Dataset], provenance: Provenance, series_number: int
) -> hd.ko.KeyObjectSelectionDocument:
    return hd.ko.KeyObjectSelectionDocument(
        evidence=sources,
        content=hd.ko.KeyObjectSelection(
            document_title=codes.DCM.OfInterest,
            referenced_objects=sources,
            description="Source images behind the edge-agent findings",
        ),
        **provenance.new_object(series_number, "edge-agent key images"),
    )
