"""Writing a read's output folder: evidence PNGs, trajectory.json, report.json, report.html."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydicom import Dataset

from edge_agent.agent import EVIDENCE_NAME
from edge_agent.report.content import build_report
from edge_agent.report.dicom_files import OBJECT_NAMES
from edge_agent.report.evidence import mask_png
from edge_agent.report.html import render_html
from edge_agent.report.seg import outlines_not_in_seg
from edge_agent.trajectory import Trajectory
from imaging.atomic import write_all_atomic
from imaging.errors import ReportError
from tools.render import frame_view, png_bytes
from tools.workspace import Workspace

log = logging.getLogger(__name__)
# OUT/session: a model read's saved session (its KV cache and what it was made with), which
# `ask` continues.
SESSION_DIR = "session"


def write_evidence(workspace: Workspace, trajectory: Trajectory, out_dir: Path) -> None:
    """Every image the read made, as PNG (a contact sheet's frames and a tool's mask too),
    encoded on every core: OpenCV lets go of the interpreter while it compresses."""
    pixels = {}
    for record in trajectory.images:
        image = workspace.get(record.index)
        pixels[out_dir / record.file] = image.pixels
        for name, frame in zip(record.frame_files, image.members, strict=True):
            pixels[out_dir / name] = frame_view(frame)
        if record.mask_file:
            pixels[out_dir / record.mask_file] = mask_png(image.mask)
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        encoded = list(pool.map(png_bytes, pixels.values()))
    write_all_atomic(dict(zip(pixels, encoded, strict=True)))


def write_reports(
    trajectory: Trajectory, out_dir: Path, headers: Mapping[str, Dataset] | None = None
) -> dict:
    """Reports for a trajectory whose evidence images are already in `out_dir`. `headers`, the
    source headers by SOP Instance UID, are given when DICOM outputs are written: the reports
    then say which findings' outlines the SEG leaves to the SR (`seg.outlines_not_in_seg`)."""
    notes = outlines_not_in_seg(trajectory, headers) if headers is not None else None
    report = build_report(trajectory, notes)
    for finding in report["findings"]:
        for evidence in finding["evidence"]:
            for name in (evidence["image"], *evidence.get("frame_images", ())):
                if not (out_dir / name).is_file():
                    raise ReportError(f"evidence image {name} is missing from {out_dir}")
    write_all_atomic(
        {
            out_dir / "trajectory.json": trajectory.to_json().encode(),
            out_dir / "report.json": (json.dumps(report, indent=2) + "\n").encode(),
            out_dir / "report.html": render_html(trajectory, report, out_dir).encode(),
        }
    )
    return report


def remove_earlier(trajectory: Trajectory, out_dir: Path) -> None:
    """Called once this read's evidence is written, before its reports and DICOM: when OUT holds
    an earlier read (its trajectory.json), what that read wrote goes (its other evidence images,
    its DICOM objects, its PDF, its saved model session), so that OUT never mixes two reads,
    whatever becomes of this one (OUT/dicom sent to a PACS must never carry another read's SEG;
    `ask` must never continue another read's session). Only the names a read writes are
    touched; the PDF, printed after the read, is written again when asked for."""
    if not (out_dir / "trajectory.json").is_file():
        return
    kept = {out_dir / name for record in trajectory.images for name in record.files}
    earlier = [
        out_dir / "report.pdf",
        *(p for p in (out_dir / "evidence").glob("*.png") if EVIDENCE_NAME.fullmatch(p.name)),
        *(p for p in (out_dir / "dicom").glob("*.dcm") if OBJECT_NAMES.fullmatch(p.name)),
    ]
    removed = [path for path in earlier if path not in kept and path.is_file()]
    for path in removed:
        path.unlink()
    session = out_dir / SESSION_DIR  # its model session: `ask` would continue the other read
    if session.is_dir():
        shutil.rmtree(session)
        removed.append(session)
    if removed:
        log.info("removed %d file(s) an earlier read left in %s", len(removed), out_dir)


def copy_evidence(trajectory: Trajectory, source_dir: Path, out_dir: Path) -> None:
    """For a replay into another folder: the images the trajectory names, nothing else."""
    for name in (name for record in trajectory.images for name in record.files):
        source = source_dir / name
        if not source.is_file():
            raise ReportError(f"evidence image {name} is missing from {source_dir}")
        target = out_dir / name
        if source.resolve() != target.resolve():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
