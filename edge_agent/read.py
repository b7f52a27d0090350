"""read_study: the one function the CLI and the gateway call to read a study folder."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydicom import Dataset

from edge_agent.agent import Policy, StepCallback, run
from edge_agent.collector import collector_off
from edge_agent.config import Config
from edge_agent.policies import make_policy
from edge_agent.report.dicom_files import not_writable, source_uids, write_dicom
from edge_agent.report.files import remove_earlier, write_evidence, write_reports
from edge_agent.selection import Selection, select
from edge_agent.trajectory import Trajectory
from imaging.errors import NoReadableImages
from imaging.study import Progress, Study, load_study
from tools.registry import Toolbox
from tools.toolbox import default_toolbox
from tools.video import show_overview
from tools.workspace import ShownSize, Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadResult:
    study: Study
    selection: Selection
    trajectory: Trajectory
    report: dict
    out_dir: Path
    dicom: tuple[Path, ...] = ()  # SR first, then SEG, Secondary Captures, Key Object Selection
    workspace: Workspace | None = None  # every image of the read: follow-ups continue on it
    headers: Mapping[str, Dataset] = field(default_factory=dict)  # the sources the DICOM cites


def read_study(
    path: Path,
    out_dir: Path,
    config: Config,
    *,
    question: str | None = None,
    policy: Policy | None = None,
    toolbox: Toolbox | None = None,
    progress: Progress | None = None,
    on_step: StepCallback | None = None,
    on_selected: Callable[[Study, Selection], None] | None = None,
    stream=None,
    replaces: Path | None = None,
) -> ReadResult:
    """Load, pick the series, run the agent, write every report into `out_dir`.
    `on_selected` is told once loading is over and the series chosen, before the first step.
    `replaces`: a read again of the study, the last read's results folder (its SR is the new
    SR's predecessor)."""
    selection = select(load_study(path, progress), config.read.modalities, config.read.key_frames)
    study = selection.study  # less any file found undecodable when its frames were first shown
    log.info("study %s: reading %s", study.uid, selection.reason)
    if on_selected is not None:
        on_selected(study, selection)
    with ExitStack() as owned:  # what is made here is closed here; a caller's stays loaded
        if toolbox is None:
            toolbox = default_toolbox(config.tools)
            owned.callback(toolbox.close)
        if policy is None:
            policy = make_policy(config.policy, stream=stream)
            owned.callback(policy.close)
        workspace = shown_workspace(selection, policy, config)
        trajectory = run(
            workspace,
            question or config.read.question,
            policy,
            toolbox,
            config.budget,
            on_step=on_step,
        )
    trajectory = replace(
        trajectory,
        selection=selection.reason,
        source_path=str(Path(path).resolve()),
        series_number=selection.series.number,
        series_description=selection.series.description,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_evidence(workspace, trajectory, out_dir)
    remove_earlier(trajectory, out_dir)
    writes_dicom = config.report.dicom and bool(study.files)
    if config.report.dicom and not writes_dicom:
        log.info("study %s: no DICOM outputs, the source is not DICOM", study.uid)
    try:
        headers = (
            {uid: study.header(uid) for uid in source_uids(trajectory)} if writes_dicom else {}
        )
    except NoReadableImages as exc:  # a source file changed during the read: the read is kept
        write_reports(trajectory, out_dir, None)
        raise NoReadableImages(f"{exc}; no DICOM outputs, the reports are in {out_dir}") from None
    skipped = not_writable(headers)
    if skipped:  # the read is kept: its reports say what it found
        log.warning("study %s: no DICOM outputs: %s", study.uid, skipped)
        writes_dicom = False
    # the reports, then the DICOM; the headers tell the reports which outlines the SEG leaves out
    report = write_reports(trajectory, out_dir, headers if writes_dicom else None)
    dicom = write_dicom(trajectory, headers, out_dir, workspace, replaces) if writes_dicom else []
    return ReadResult(
        study, selection, trajectory, report, out_dir, tuple(dicom), workspace, headers
    )


def shown_workspace(selection: Selection, policy: Policy, config: Config) -> Workspace:
    """What the policy is shown at the start of a read: a cine's overview, the key frames."""
    # A model sees images at the size it was trained on; the resize is the shown image's affine.
    shown = policy.shown_size or ShownSize(max_side=config.read.shown_size)
    workspace = Workspace(selection.timeline)
    if selection.timeline:
        size = shown.max_side or config.tools.video_size
        show_overview(workspace, config.read.overview_frames, size)
    for frame in selection.frames:
        workspace.show(frame, max_side=shown.max_side, max_pixels=shown.max_pixels)
    return workspace


def warm_up(config: Config, toolbox: Toolbox) -> None:
    """A read of the built-in sample study with the protocol and `toolbox`, into a folder that
    is then removed: what a process pays once, on its first read (modules imported on first use,
    highdicom's tables of the standard, the tools' models), is paid here, and what it made is
    kept out of the collector's way. The service calls it when it opens its reader, so the
    first study it receives costs what every later one does."""
    from edge_agent.sample import write_sample_study

    protocol = replace(config, policy=replace(config.policy, name="protocol"))
    log.info("warm-up: a protocol read of the sample study")
    with tempfile.TemporaryDirectory(prefix="edge-agent-warm-up-") as scratch, collector_off():
        study = write_sample_study(Path(scratch) / "study")
        read_study(study, Path(scratch) / "out", protocol, toolbox=toolbox)
