"""OUT/dicom/: the SR, SEG, evidence Secondary Captures and Key Object Selection of one read,
all in the source study, each in its own new series."""

from __future__ import annotations

import io
import logging
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import pydicom

from edge_agent.report.capture import build_captures, build_key_objects
from edge_agent.report.evidence import EvidenceImage, evidence_image, load_evidence
from edge_agent.report.iod_rules import known_iod
from edge_agent.report.patient import as_source, buildable
from edge_agent.report.provenance import Provenance
from edge_agent.report.regions import finding_regions
from edge_agent.report.seg import build_seg
from edge_agent.report.sr import build_sr
from edge_agent.trajectory import Trajectory
from imaging.atomic import write_all_atomic
from tools.workspace import Workspace

log = logging.getLogger(__name__)

# Series numbers of what we add to a study; high, so they sort after the acquired series.
SERIES = {"sr": 9001, "seg": 9002, "sc": 9003, "ko": 9004, "pdf": 9005}
# What a read names them in OUT/dicom (the PDF's: pdf_dicom.py).
OBJECT_NAMES = re.compile(r"(sr|seg|ko|sc_\d+|report_pdf)\.dcm")


def source_uids(trajectory: Trajectory) -> tuple[str, ...]:
    """The source instances the objects reference: those behind the cited images, else (a read
    without findings) the shown ones. Their headers are all `write_dicom` reads of the study."""
    claims = trajectory.answer.findings if trajectory.answer else ()
    cited = [trajectory.image(i) for i in dict.fromkeys(i for c in claims for i in c.evidence)]
    shown = [record for record in trajectory.images if record.tool == "shown"]
    return tuple(dict.fromkeys(r.source.sop_instance_uid for r in (cited or shown)))


def not_writable(headers: Mapping[str, pydicom.Dataset]) -> str:
    """Why no DICOM objects can be written for these source headers, "" when they can: an SR
    or SEG references an instance by its SOP Class, one the standard currently defines."""
    for uid, header in headers.items():
        sop_class = header.get("SOPClassUID")
        if not sop_class:
            return f"source {uid} has no SOP Class UID"
        if not known_iod(sop_class):
            return (
                f"source {uid} has the SOP Class {sop_class}, which the standard's current "
                "tables do not define (retired or private)"
            )
    return ""


def write_dicom(
    trajectory: Trajectory,
    headers: Mapping[str, pydicom.Dataset],
    out_dir: Path,
    workspace: Workspace | None = None,
    replaces: Path | None = None,
) -> list[Path]:
    """Write every object from the trajectory, the evidence files already in `out_dir` and the
    source `headers` (by SOP Instance UID, at least `source_uids`); returns the paths, SR first.
    The read passes its `workspace`, whose images the evidence files were written from, and
    their pixels are taken from it instead of decoded again. A read and a replay of it write the
    same objects, but for new UIDs and times. After a follow-up, where the read's SR is already
    in OUT/dicom, only the SR is written again (a new version of it): the findings, and so the
    other objects, are the read's. `replaces`: for a read again of the study, the last read's
    results folder, whose SR the new one names as its predecessor."""
    # highdicom warns about source values it finds odd (a one-part patient name): not the
    # reader's business mid-trail, and the text quotes patient data, so only where it came from
    # is logged.
    fitted, emptied = buildable(headers)
    if emptied:
        log.info(
            "study %s: %s not as highdicom takes them: copied as the source has them",
            trajectory.study_instance_uid,
            ", ".join(emptied),
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        objects = _objects(trajectory, fitted, out_dir, workspace, replaces)
    first = headers[source_uids(trajectory)[0]]
    for made in objects.values():
        as_source(made, first, emptied)
    for where in dict.fromkeys(f"{Path(w.filename).name}:{w.lineno}" for w in caught):
        log.info("study %s: highdicom warned at %s", trajectory.study_instance_uid, where)
    files = {out_dir / "dicom" / name: encoded(dataset) for name, dataset in objects.items()}
    write_all_atomic(files)
    paths = list(files)
    log.info("study %s: wrote %d DICOM object(s)", trajectory.study_instance_uid, len(paths))
    return paths


def _objects(
    trajectory: Trajectory,
    headers,
    out_dir: Path,
    workspace: Workspace | None,
    replaces: Path | None,
) -> dict[str, pydicom.Dataset]:
    provenance = Provenance.of(trajectory)
    sources = {uid: headers[uid] for uid in source_uids(trajectory)}
    claims = trajectory.answer.findings if trajectory.answer else ()
    cited = {
        i: _evidence(trajectory, i, headers, out_dir, workspace)
        for i in dict.fromkeys(i for c in claims for i in c.evidence)
    }
    regions = finding_regions(trajectory, cited)
    answer = (trajectory.answer.text if trajectory.answer else "") or (
        f"No answer: {trajectory.end_reason} ({trajectory.end_detail})"
    )
    # follow-up questions (`edge-agent ask`) join the answer: each ask writes a new SR instance
    answer += "".join(f" Follow-up: {f.question} Answer: {f.answer}" for f in trajectory.follow_ups)
    previous = _previous_sr(trajectory, out_dir if trajectory.follow_ups else replaces)
    objects = {"sr.dcm": build_sr(regions, answer, sources, provenance, SERIES["sr"], previous)}
    if previous is not None and trajectory.follow_ups:  # the read's findings: its objects stay
        return objects
    if regions:
        segmentation = build_seg(regions, sources, provenance, SERIES["seg"])
        if segmentation is not None:
            objects["seg.dcm"] = segmentation
        images = list(cited.values())
        for capture, image in zip(
            build_captures(images, sources, provenance, SERIES["sc"]), images, strict=True
        ):
            objects[f"sc_{image.record.index:03d}.dcm"] = capture
        key_sources = [
            sources[uid] for uid in dict.fromkeys(r.source.sop_instance_uid for r in regions)
        ]
        objects["ko.dcm"] = build_key_objects(key_sources, provenance, SERIES["ko"])
    return objects


def _previous_sr(trajectory: Trajectory, folder: Path | None) -> pydicom.Dataset | None:
    """The SR this one is a new version of, in `folder`'s dicom/ (after a follow-up, the read's
    own; for a read again of the study, the last read's): the new instance names it as its
    predecessor, so a PACS shows the two as versions of one report."""
    path = folder / "dicom" / "sr.dcm" if folder is not None else None
    if path is None or not path.is_file():
        return None
    previous = pydicom.dcmread(path, stop_before_pixels=True)
    if previous.get("StudyInstanceUID") != trajectory.study_instance_uid:
        log.warning("study %s: %s belongs to another study", trajectory.study_instance_uid, path)
        return None
    return previous


def _evidence(
    trajectory: Trajectory, index: int, headers, out_dir: Path, workspace: Workspace | None
) -> EvidenceImage:
    record = trajectory.image(index)
    source = headers[record.source.sop_instance_uid]
    if workspace is None:
        return load_evidence(record, out_dir, source)
    image = workspace.get(index)
    return evidence_image(record, image.pixels, image.mask, source)


def encoded(dataset: pydicom.Dataset) -> bytes:
    """The dataset as a DICOM file (preamble, file meta), in memory."""
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
