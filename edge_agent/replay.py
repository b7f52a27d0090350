"""replay: a read's outputs written again from its trajectory, its evidence files and (for the
DICOM objects) the source study's headers; no policy, tool or pixel decoding runs."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset

from edge_agent.report.dicom_files import not_writable, source_uids, write_dicom
from edge_agent.report.files import copy_evidence, remove_earlier, write_reports
from edge_agent.trajectory import Trajectory
from imaging.header import UnreadableFile, attribute, read_header, without_pixel_data
from imaging.instance import frame_count, frame_geometry
from imaging.study import SkippedFile, candidate_files, skip_reasons

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayResult:
    trajectory: Trajectory
    report: dict
    out_dir: Path
    dicom: tuple[Path, ...] = ()  # SR first, then SEG, Secondary Captures, Key Object Selection
    dicom_skipped: str = ""  # why no DICOM objects were written; "" when they were


def replay(
    trajectory_path: Path, out_dir: Path, source: Path | None = None, *, dicom: bool = True
) -> ReplayResult:
    """Reports from `trajectory_path` (evidence beside it) into `out_dir`; the DICOM objects too
    when the source study is at hand: `source`, else the folder the trajectory names. Without
    it the other reports are still written and `dicom_skipped` says why DICOM was not."""
    trajectory_path = Path(trajectory_path)
    recorded = Trajectory.load(trajectory_path)
    return replay_trajectory(recorded, trajectory_path.parent, out_dir, source, dicom=dicom)


def replay_trajectory(
    recorded: Trajectory,
    evidence_dir: Path,
    out_dir: Path,
    source: Path | None = None,
    *,
    dicom: bool = True,
) -> ReplayResult:
    """`replay` of a trajectory already in memory, its evidence in `evidence_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    copy_evidence(recorded, evidence_dir, out_dir)
    if out_dir.resolve() != evidence_dir.resolve():  # into the read's own folder: `ask`
        remove_earlier(recorded, out_dir)
    if not dicom:
        report = write_reports(recorded, out_dir)
        return ReplayResult(recorded, report, out_dir, dicom_skipped="DICOM outputs are off")
    folder = Path(source) if source is not None else _recorded_source(recorded)
    headers, skipped = _headers(recorded, folder)
    # as in the read: the headers tell the reports which outlines the SEG leaves out
    report = write_reports(recorded, out_dir, None if skipped else headers)
    if skipped:
        log.warning("study %s: no DICOM outputs: %s", recorded.study_instance_uid, skipped)
        return ReplayResult(recorded, report, out_dir, dicom_skipped=skipped)
    paths = write_dicom(recorded, headers, out_dir)
    return ReplayResult(recorded, report, out_dir, tuple(paths))


def _recorded_source(trajectory: Trajectory) -> Path | None:
    return Path(trajectory.source_path) if trajectory.source_path else None


def _headers(trajectory: Trajectory, folder: Path | None) -> tuple[dict[str, Dataset], str]:
    """The source headers the objects need, or why they cannot be had."""
    if trajectory.version < 2:
        return {}, (
            f"trajectory format {trajectory.version} keeps no masks, which the SEG and the SR "
            "outlines need; read the study again to write DICOM"
        )
    if not any(record.source.sop_class_uid for record in trajectory.images):
        return {}, "the read's source is not DICOM (a plain video file)"
    if folder is None:
        return {}, "the trajectory names no source study; pass the study folder to replay"
    if not folder.exists():
        return {}, f"the source study {folder} does not exist"
    wanted = source_uids(trajectory)
    cited = {uid: set() for uid in wanted}
    for record in trajectory.images:
        cited.get(record.source.sop_instance_uid, set()).add(record.source.frame)
    headers, unreadable = source_headers(folder, cited)
    missing = [uid for uid in wanted if uid not in headers]
    if missing:
        why = (
            f"{folder} lacks {len(missing)} of the {len(wanted)} source instance(s) the objects "
            f"reference (e.g. SOP Instance UID {missing[0]})"
        )
        if unreadable:
            why += f"; {len(unreadable)} file(s) there do not read ({skip_reasons(unreadable)})"
        return {}, why
    skipped = not_writable(headers)
    return ({}, skipped) if skipped else (headers, "")


def source_headers(
    folder: Path, wanted: Mapping[str, Iterable[int]]
) -> tuple[dict[str, Dataset], list[SkippedFile]]:
    """Headers, without pixel data, of the wanted SOP instances under `folder` (a file or a
    folder searched recursively), and the files met that do not read, each with its reason
    (one of them may be a wanted instance, damaged since the read). `wanted`: each instance's
    frames the read cited, whose attributes the DICOM outputs read."""
    found: dict[str, Dataset] = {}
    unreadable: list[SkippedFile] = []
    for file in candidate_files(folder, unreadable.append):
        try:
            header = read_header(file)
            uid = str(attribute(header, "SOPInstanceUID", ""))
            if uid in wanted:  # what the DICOM outputs read of it: a damaged value named here
                header = without_pixel_data(header)  # as the read's own source headers are
                frame_count(header)
                for frame in wanted[uid]:
                    frame_geometry(header, frame)
        except UnreadableFile as exc:
            unreadable.append(SkippedFile(file, str(exc)))
            continue
        if uid in wanted:
            found[uid] = header
            if len(found) == len(wanted):
                break
    return found, unreadable
