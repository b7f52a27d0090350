"""The SEG: one binary DICOM Segmentation per read, one segment per finding that has a mask."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import highdicom as hd
import numpy as np
from highdicom.spatial import get_image_coordinate_system
from pydicom import Dataset
from pydicom.sr.codedict import codes

from edge_agent.report.iod_rules import requires_module
from edge_agent.report.provenance import Provenance
from edge_agent.report.regions import FindingRegion, outlining_image
from edge_agent.trajectory import Trajectory
from imaging.instance import frame_count, int_or_none

log = logging.getLogger(__name__)


def build_seg(
    regions: list[FindingRegion],
    sources: dict[str, Dataset],
    provenance: Provenance,
    series_number: int,
) -> hd.seg.Segmentation | None:
    """None when no finding was outlined on a frame a SEG can reference (a SEG without segments
    is not valid)."""
    masked = []
    for region in (r for r in regions if r.mask is not None):
        why = unsegmentable(sources[region.source.sop_instance_uid])
        if why:
            log.warning(
                "finding %d: outline not in the SEG: %s; it is in the SR", region.number, why
            )
        else:
            masked.append(region)
    if not masked:
        return None
    images = _source_images(masked, sources)
    multi_frame = len(images) == 1 and frame_count(images[0]) > 1
    depth = frame_count(images[0]) if multi_frame else len(images)
    order = {ds.SOPInstanceUID: i for i, ds in enumerate(images)}
    rows, cols = masked[0].mask.shape
    pixels = np.zeros((depth, rows, cols, len(masked)), dtype=np.uint8)
    for segment, region in enumerate(masked):
        plane = region.source.frame - 1 if multi_frame else order[region.source.sop_instance_uid]
        pixels[plane, :, :, segment] = region.mask
    algorithm = hd.AlgorithmIdentificationSequence(
        name=provenance.model_name,
        family=codes.cid7162.ArtificialIntelligence,
        version=provenance.software_version,
        parameters={
            "model": provenance.model_file or "none",
            "sha256": provenance.model_sha256 or "none",
        },
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=f"Finding {region.number}",
            segmented_property_category=codes.cid7150.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for number, region in enumerate(masked, 1)
    ]
    segmentation = hd.seg.Segmentation(
        source_images=images,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        **provenance.new_object(series_number, "edge-agent segmentation"),
        omit_empty_frames=True,
    )
    if "FrameOfReferenceUID" not in segmentation:  # oriented as its source (General Image, 2C)
        segmentation.PatientOrientation = images[0].get("PatientOrientation", "")
    return segmentation


def unsegmentable(source: Dataset) -> str | None:
    """Why a SEG cannot reference `source`, or None when it can. A SEG takes the source's Frame
    of Reference and the position of each of its frames; without them it can reference only a
    single-frame source whose IOD does not require one (a cine or video usually has none, and a
    SEG of it could only name the first frame; a CT without one would need one invented)."""
    if get_image_coordinate_system(source) is not None:
        return None
    located = "FrameOfReferenceUID" in source
    if frame_count(source) != 1:  # a negative count too: not a single frame
        if located:
            return "its frames have no position in the patient"
        return "its cine or video has no Frame of Reference UID"
    if located:
        return None
    if requires_module("frame-of-reference", source.SOPClassUID):
        return "its series has no Frame of Reference UID"
    return None


def outlines_not_in_seg(trajectory: Trajectory, headers: Mapping[str, Dataset]) -> dict[int, str]:
    """Finding number (1-based, as in report.json) -> one sentence saying that the SEG cannot
    carry its outline and why, for each outlined finding whose source `build_seg` leaves out;
    so that the reports tell a reader the outline is in the SR alone. `headers`: the source
    headers by SOP Instance UID, as `write_dicom` takes them."""
    claims = trajectory.answer.findings if trajectory.answer else ()
    notes = {}
    for number, claim in enumerate(claims, 1):
        records = [trajectory.image(i) for i in claim.evidence]
        masked = outlining_image(records)
        if masked is None:
            continue
        why = unsegmentable(headers[records[masked].source.sop_instance_uid])
        if why:
            notes[number] = f"Outline not in the SEG: {why}; the outline is in the SR."
    return notes


def _source_images(regions: list[FindingRegion], sources: dict[str, Dataset]) -> list[Dataset]:
    """The referenced instances, in slice order, once each."""
    uids = list(dict.fromkeys(r.source.sop_instance_uid for r in regions))
    return sorted(
        (sources[uid] for uid in uids), key=lambda ds: int_or_none(ds.get("InstanceNumber")) or 0
    )
