"""OUT/dicom/: the SR, SEG, evidence Secondary Captures and Key Object Selection of one read,
all in the source study, each in its own new series."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pydicom

from edge_agent.report.atomic import write_atomic
from edge_agent.report.capture import build_captures, build_key_objects
from edge_agent.report.provenance import Provenance
from edge_agent.report.regions import finding_regions
from edge_agent.report.seg import build_seg
from edge_agent.report.sr import build_sr
from edge_agent.trajectory import Trajectory
from imaging.study import Study
from tools.workspace import Workspace

log = logging.getLogger(__name__)

# Series numbers of what we add to a study; high, so they sort after the acquired series.
SERIES = {"sr": 9001, "seg": 9002, "sc": 9003, "ko": 9004}


def write_dicom(
    trajectory: Trajectory, report: dict, workspace: Workspace, study: Study, out_dir: Path
) -> list[Path]:
    """Write every object; returns their paths, SR first."""
    provenance = Provenance.of(trajectory)
    claims = trajectory.answer.findings if trajectory.answer else ()
    regions = finding_regions(claims, report["findings"], workspace)
    cited = [workspace.get(i) for i in dict.fromkeys(i for c in claims for i in c.evidence)]
    shown = [image for image in workspace if image.tool == "shown"]
    uids = dict.fromkeys(image.frame.ref.sop_instance_uid for image in (cited or shown))
    sources = {uid: study.header(uid) for uid in uids}
    answer = report["answer"] or f"No answer: {trajectory.end_reason} ({trajectory.end_detail})"
    objects = {"sr.dcm": build_sr(regions, answer, sources, provenance, SERIES["sr"])}
    if regions:
        segmentation = build_seg(regions, sources, provenance, SERIES["seg"])
        if segmentation is not None:
            objects["seg.dcm"] = segmentation
        for capture, image in zip(
            build_captures(cited, sources, provenance, SERIES["sc"]), cited, strict=True
        ):
            objects[f"sc_{image.index:03d}.dcm"] = capture
        key_sources = [
            sources[uid] for uid in dict.fromkeys(r.source.sop_instance_uid for r in regions)
        ]
        objects["ko.dcm"] = build_key_objects(key_sources, provenance, SERIES["ko"])
    paths = []
    for name, dataset in objects.items():
        path = out_dir / "dicom" / name
        write_atomic(path, _encoded(dataset))
        paths.append(path)
    log.info("study %s: wrote %d DICOM object(s)", trajectory.study_instance_uid, len(paths))
    return paths


def _encoded(dataset: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
