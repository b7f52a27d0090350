"""replay(): the reports and the DICOM objects written again from a trajectory, its evidence files
and the source study's headers; the same objects as the read's, but for new UIDs and times."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from edge_agent.config import Config
from edge_agent.read import ReadResult, read_study
from edge_agent.replay import replay
from edge_agent.report.content import build_report
from edge_agent.sample import write_sample_study
from edge_agent.trajectory import Trajectory
from tests.peers import dciodvfy_errors
from tests.support import ct_copies, run_cli
from tests.videos import encode, video_study

VERSION_1 = Path(__file__).parent.parent / "data" / "trajectory_v1"
GENERATED = ("DA", "TM", "DT")  # content dates and times: when the object was made


@pytest.fixture(scope="module")
def read(tmp_path_factory) -> ReadResult:
    folder = tmp_path_factory.mktemp("read")
    study = write_sample_study(folder / "study")
    return read_study(study, folder / "out", Config())


def _study_uids(folder: Path) -> set[str]:
    """Every UID the source study holds: these must come back unchanged."""
    uids = set()
    for path in folder.rglob("*.dcm"):
        _collect_uids(pydicom.dcmread(path, stop_before_pixels=True), uids)
    return uids


def _collect_uids(ds: Dataset, into: set[str]) -> None:
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                _collect_uids(item, into)
        elif element.VR == "UI" and element.value:
            into.update(element.value if element.VM > 1 else [element.value])


def _compare(a: Dataset, b: Dataset, where: str, known: set[str], renamed: dict[str, str]):
    """Equal element by element, except that a UID the source does not hold may be a new one
    (the same new one wherever it recurs) and dates and times may differ."""
    assert [e.tag for e in a] == [e.tag for e in b], f"{where}: different attributes"
    for x, y in zip(a, b, strict=True):
        here = f"{where}/{x.keyword or x.tag}"
        if x.VR == "SQ":
            assert len(x.value) == len(y.value), here
            for i, (p, q) in enumerate(zip(x.value, y.value, strict=True)):
                _compare(p, q, f"{here}[{i}]", known, renamed)
        elif x.VR == "UI" and x.value != y.value:
            assert x.value not in known, f"{here}: a source UID changed"
            assert renamed.setdefault(x.value, y.value) == y.value, f"{here}: UIDs mixed up"
        elif x.VR not in GENERATED and x.tag.element != 0:  # group lengths follow UID lengths
            assert x.value == y.value, here


def test_replay_rebuilds_the_same_dicom_but_for_uids_and_times(read, tmp_path):
    again = replay(read.out_dir / "trajectory.json", tmp_path / "again")
    assert len(again.dicom) >= 4  # SR, SEG, captures, KO: the read had findings
    _assert_same_objects(read, again)


def test_replay_of_a_video_read_rebuilds_its_time_windows(tmp_path):
    folder = tmp_path / "video"
    read = read_study(video_study(folder / "study", encode("h264")), folder / "out", Config())
    assert any("time_window_s" in finding for finding in read.report["findings"])
    again = replay(read.out_dir / "trajectory.json", tmp_path / "again")
    _assert_same_objects(read, again)


def _assert_same_objects(read: ReadResult, again) -> None:
    assert again.dicom_skipped == ""
    assert [p.name for p in again.dicom] == [p.name for p in read.dicom]
    known, renamed = _study_uids(Path(read.trajectory.source_path)), {}
    for first, second in zip(read.dicom, again.dicom, strict=True):
        a, b = pydicom.dcmread(first), pydicom.dcmread(second)
        assert a.SOPInstanceUID != b.SOPInstanceUID  # a new object, not a copy
        _compare(a.file_meta, b.file_meta, first.name, known, renamed)
        _compare(a, b, first.name, known, renamed)
    for path in again.dicom:
        assert dciodvfy_errors(path) == [], path.name


def test_the_read_keeps_each_mask_so_the_seg_can_be_written_again(read):
    masked = [r for r in read.trajectory.images if r.mask_file]
    assert {r.tool for r in masked} == {"segment", "measure"}
    mask = cv2.imread(str(read.out_dir / masked[0].mask_file), cv2.IMREAD_UNCHANGED)
    header = read.study.header(masked[0].source.sop_instance_uid)
    assert mask.shape == (header.Rows, header.Columns)  # the source grid, not the view
    assert set(np.unique(mask)) == {0, 255}


def test_replay_without_the_source_writes_the_reports_and_says_why(read, tmp_path):
    gone = tmp_path / "moved-away"
    again = replay(read.out_dir / "trajectory.json", tmp_path / "again", source=gone)
    assert again.dicom == ()
    assert str(gone) in again.dicom_skipped and "does not exist" in again.dicom_skipped
    assert not (tmp_path / "again" / "dicom").exists()
    assert (tmp_path / "again" / "report.json").read_bytes() == (
        read.out_dir / "report.json"
    ).read_bytes()


def _copied_source(read: ReadResult, tmp_path: Path) -> tuple[Path, set[str]]:
    """A copy of the read's source study to damage, and the SOP Instance UIDs its findings cite."""
    source = shutil.copytree(read.trajectory.source_path, tmp_path / "source")
    findings = read.report["findings"]
    return source, {e["source"]["sop_instance_uid"] for f in findings for e in f["evidence"]}


def _no_dicom_line(read: ReadResult, source: Path, tmp_path: Path) -> str:
    """`edge-agent replay --source SOURCE`: it succeeds with the reports and no DICOM objects,
    saying why on one line, which is returned."""
    done = run_cli(
        "replay", read.out_dir / "trajectory.json", "-o", tmp_path / "again", "--source", source
    )
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stdout.splitlines() if line.startswith("no DICOM objects")]
    assert (tmp_path / "again" / "report.json").is_file()
    assert not (tmp_path / "again" / "dicom").exists()
    return line


def test_replay_from_a_folder_without_the_cited_images_names_what_is_missing(read, tmp_path):
    partial, cited = _copied_source(read, tmp_path)
    for path in partial.rglob("*.dcm"):
        if pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID in cited:
            path.unlink()
    again = replay(read.out_dir / "trajectory.json", tmp_path / "again", source=partial)
    assert again.dicom == () and f"{partial} lacks {len(cited)} of" in again.dicom_skipped
    assert any(uid in again.dicom_skipped for uid in cited)


def test_replay_whose_cited_image_no_longer_reads_names_the_file_and_why(read, tmp_path):
    source, cited = _copied_source(read, tmp_path)
    damaged = next(
        path
        for path in sorted(source.rglob("*.dcm"))
        if pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID in cited
    )
    damaged.write_bytes(b"not DICOM " * 64)
    line = _no_dicom_line(read, source, tmp_path)
    assert f"{source} lacks 1 of" in line and "1 file(s) there do not read" in line
    assert f"{damaged.name}: not a DICOM Part 10 file" in line


def test_replay_whose_cited_source_has_a_damaged_value_names_the_file_and_why(read, tmp_path):
    # The header parses, so the file is found; its spacing does not read as numbers.
    source, cited = _copied_source(read, tmp_path)
    damaged = []
    for path in sorted(source.rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        if ds.SOPInstanceUID in cited:
            ds.add_new("PixelSpacing", "LO", "0,7\\0,7")  # a decimal comma: not a DS
            ds.save_as(path)
            damaged.append(path)
    line = _no_dicom_line(read, source, tmp_path)
    reason = "damaged PixelSpacing: '0,7\\\\0,7' is not a decimal number"
    assert damaged and all(f"{path.name}: {reason}" in line for path in damaged)


def test_replay_whose_cited_source_is_cut_short_in_its_header_names_the_file_and_why(
    read, tmp_path
):
    # Cut where its pixel data began: pydicom reads the rest silently, UIDs and geometry intact.
    source, cited = _copied_source(read, tmp_path)
    damaged = []
    for path in sorted(source.rglob("*.dcm")):
        with path.open("rb") as opened:
            uid = pydicom.dcmread(opened, stop_before_pixels=True).SOPInstanceUID
            header_end = opened.tell()
        if uid in cited:
            path.write_bytes(path.read_bytes()[:header_end])
            damaged.append(path)
    line = _no_dicom_line(read, source, tmp_path)
    assert f"{source} lacks {len(damaged)} of" in line
    reason = "cut short: the header ends before the pixel data"
    assert damaged and all(f"{path.name}: {reason}" in line for path in damaged)


def test_replay_of_a_finding_citing_an_image_never_made_is_one_line_exit_2(read, tmp_path):
    edited = shutil.copytree(read.out_dir, tmp_path / "edited")
    data = json.loads((edited / "trajectory.json").read_text())
    finding = data["answer"]["findings"][0]
    finding["evidence"] = [99]
    (edited / "trajectory.json").write_text(json.dumps(data))
    done = run_cli("replay", edited / "trajectory.json", "--out", tmp_path / "again")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert finding["text"] in done.stderr and "cites image(s) [99]" in done.stderr
    assert not (tmp_path / "again" / "report.json").exists()


def test_a_format_1_trajectory_gives_the_report_main_wrote():
    """Written at 50a9650, before prompt profiles: no profile, no turn cap in its policy record,
    and the report main wrote then, byte for byte (a prompt_profile key only for model reads)."""
    recorded = Trajectory.load(VERSION_1 / "trajectory.json")
    assert recorded.version == 1
    assert (recorded.policy.prompt_profile, recorded.policy.max_turns) == ("", None)
    written = json.dumps(build_report(recorded), indent=2) + "\n"
    assert written == (VERSION_1 / "report.json").read_text()


def test_replaying_a_format_1_trajectory_skips_dicom_and_says_why(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    shutil.copy(VERSION_1 / "trajectory.json", folder)
    recorded = Trajectory.load(folder / "trajectory.json")
    for name in (name for record in recorded.images for name in record.files):
        (folder / name).parent.mkdir(exist_ok=True)
        cv2.imwrite(str(folder / name), np.zeros((4, 4), np.uint8))  # the PNGs are not kept
    again = replay(folder / "trajectory.json", tmp_path / "again")
    assert (tmp_path / "again" / "report.json").read_text() == (
        VERSION_1 / "report.json"
    ).read_text()
    assert again.dicom == () and "format 1 keeps no masks" in again.dicom_skipped


def test_replay_checks_the_frames_a_read_cited_of_a_multi_frame_source(tmp_path):
    from pydicom.dataset import Dataset

    from edge_agent.replay import source_headers

    [path] = ct_copies(tmp_path / "source", 1, "multi-frame-cited")
    ds = pydicom.dcmread(path)
    frames = []
    for spacing in ("0,7\\0,7", "0.7\\0.7"):  # frame 1's spacing does not read as numbers
        measures = Dataset()
        measures.add_new("PixelSpacing", "LO", spacing)
        frame = Dataset()
        frame.PixelMeasuresSequence = [measures]
        frames.append(frame)
    ds.NumberOfFrames, ds.PerFrameFunctionalGroupsSequence = 2, frames
    ds.save_as(path)
    uid = str(ds.SOPInstanceUID)
    found, unreadable = source_headers(tmp_path / "source", {uid: {2}})
    assert list(found) == [uid] and unreadable == []
    found, [skipped] = source_headers(tmp_path / "source", {uid: {1}})
    assert found == {} and skipped.path == path
    assert skipped.reason == "damaged PixelSpacing: '0,7\\\\0,7' is not a decimal number"
