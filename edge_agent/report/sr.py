"""The SR: a TID 1500 Measurement Report, one TID 1410 planar ROI group per finding, with the
region as an SCOORD on the source image and measurements in UCUM units."""

from __future__ import annotations

import logging

import highdicom as hd
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from edge_agent.report.provenance import Provenance
from edge_agent.report.regions import FindingRegion
from imaging.instance import frame_count
from tools.measurement import Measurement, Quantity

log = logging.getLogger(__name__)

# What we measure -> (concept name, derivation) for TID 1419; units come from the measurement.
CONCEPTS = {
    Quantity.AREA: (codes.SCT.Area, None),
    Quantity.LONG_AXIS: (codes.SCT.LongAxis, None),
    Quantity.MEAN: (codes.DCM.AttenuationCoefficient, codes.SCT.Mean),
    Quantity.SD: (codes.DCM.AttenuationCoefficient, codes.SCT.StandardDeviation),
}


def build_sr(
    regions: list[FindingRegion],
    answer: str,
    sources: dict[str, Dataset],
    provenance: Provenance,
    series_number: int,
    previous: Dataset | None = None,
) -> hd.sr.Comprehensive3DSR:
    """`sources` maps SOP Instance UID to the source header; every reference is built from it.
    `previous`: the SR this one is a new version of (Predecessor Documents Sequence)."""
    algorithm = hd.sr.AlgorithmIdentification(
        name=provenance.model_name,
        version=provenance.software_version,
        parameters=[p for p in (provenance.model_file, provenance.model_sha256) if p] or None,
    )
    groups = [_group(region, sources, algorithm) for region in regions] or [_no_findings(algorithm)]
    report = hd.sr.MeasurementReport(
        observation_context=_observer(provenance),
        procedure_reported=codes.SCT.ImagingProcedure,
        imaging_measurements=groups,
        referenced_images=_library(sources) or None,
    )
    root = report[0]
    for name, text in ((codes.DCM.Impressions, answer), (codes.DCM.Comment, provenance.statement)):
        root.ContentSequence.append(_text(name, text))
    return hd.sr.Comprehensive3DSR(
        evidence=list(sources.values()),
        content=report[0],
        **provenance.new_object(series_number, "edge-agent measurements"),
        is_complete=True,
        is_final=False,  # unverified machine output, never a final report
        is_verified=False,
        previous_versions=[previous] if previous is not None else None,
    )


def _library(sources: dict[str, Dataset]) -> list[Dataset]:
    """The sources the Image Library can describe. highdicom builds an entry's descriptors
    (TID 1602-1604) from top-level attributes a valid header may lack or leave empty: an enhanced
    CT's or MR's spacing sits in its functional groups, a CR's Imager Pixel Spacing is optional,
    Patient Orientation and Slice Thickness may be empty, a retired SOP Class has no modality
    code. Such a source is left out of the library, which is optional; its findings still cite
    it, and the evidence lists it."""
    library = []
    for uid, source in sources.items():
        try:
            hd.sr.ImageLibraryEntryDescriptors(source)
        except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
            log.info("source %s left out of the SR's image library: %s", uid, type(exc).__name__)
        else:
            library.append(source)
    return library


def _observer(provenance: Provenance) -> hd.sr.ObservationContext:
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=provenance.device_uid,
        name="edge-agent",
        manufacturer_name=provenance.manufacturer,
        model_name=provenance.model_name,
    )
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.cid270.Device, observer_identifying_attributes=device
        )
    )


def _group(region: FindingRegion, sources: dict[str, Dataset], algorithm):
    if region.polygon is not None:
        group = _spatial(region, sources, algorithm)
    else:
        group = _temporal(region, sources, algorithm)
    if region.time_window_s is not None:
        group[0].ContentSequence.append(_tcoord(region, sources))
    group[0].ContentSequence.append(_text(codes.DCM.Finding, region.text))
    return group


def _spatial(region: FindingRegion, sources: dict[str, Dataset], algorithm):
    """TID 1410: the outline as an SCOORD on the source frame, with its measurements."""
    source = sources[region.source.sop_instance_uid]
    frames = [region.source.frame] if frame_count(source) > 1 else None
    image_region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=region.polygon,
        source_image=hd.sr.SourceImageForRegion.from_source_image(source, frames),
    )
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(), identifier=f"Finding {region.number}"
        ),
        referenced_region=image_region,
        finding_type=codes.DCM.Finding,
        algorithm_id=algorithm,
        measurements=_measurements(region),
    )


def _temporal(region: FindingRegion, sources: dict[str, Dataset], algorithm):
    """TID 1501: a finding of a cine or video that is a time window, citing its frames."""
    source = sources[region.source.sop_instance_uid]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(), identifier=f"Finding {region.number}"
        ),
        finding_type=codes.DCM.Finding,
        algorithm_id=algorithm,
        measurements=_measurements(region),
        source_images=[
            hd.sr.SourceImageForMeasurementGroup.from_source_image(source, list(region.frames))
        ],
    )


def _tcoord(region: FindingRegion, sources: dict[str, Dataset]) -> hd.sr.TcoordContentItem:
    """When: a TCOORD segment in seconds from the first frame, selected from the cited frames."""
    start, end = region.time_window_s
    tcoord = hd.sr.TcoordContentItem(
        name=codes.DCM.Time,
        temporal_range_type=(
            hd.sr.TemporalRangeTypeValues.POINT
            if start == end
            else hd.sr.TemporalRangeTypeValues.SEGMENT
        ),
        referenced_time_offsets=[start] if start == end else [start, end],
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    source = sources[region.source.sop_instance_uid]
    tcoord.ContentSequence = hd.sr.ContentSequence(
        [
            hd.sr.ImageContentItem(
                name=codes.SCT.Source,  # the IMAGE a coordinate is read on
                referenced_sop_class_uid=source.SOPClassUID,
                referenced_sop_instance_uid=source.SOPInstanceUID,
                referenced_frame_numbers=list(region.frames),
                relationship_type=hd.sr.RelationshipTypeValues.SELECTED_FROM,
            )
        ],
        is_root=False,
    )
    return tcoord


def _measurements(region: FindingRegion) -> list[hd.sr.Measurement] | None:
    return [m for m in map(_measurement, region.measurements) if m is not None] or None


def _no_findings(algorithm) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """TID 1500 needs one group; a read that found nothing says so in it."""
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="No findings"),
        algorithm_id=algorithm,
    )
    group[0].ContentSequence.append(_text(codes.DCM.Finding, "No findings were reported."))
    return group


def _measurement(measurement: Measurement) -> hd.sr.Measurement | None:
    """Only measurements with a physical unit go into the SR (not pixel counts or plain signal)."""
    unit = measurement.unit.concept
    if unit is None:
        return None
    name, derivation = CONCEPTS[measurement.name]
    return hd.sr.Measurement(name=name, value=measurement.value, unit=unit, derivation=derivation)


def _text(name, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(
        name=name, value=value, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
