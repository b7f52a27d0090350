"""Reads of a DICOM video (a bright disc shows from 1.5 s to 2.0 s) and of a cine: the findings
cite time windows, and the SR, Secondary Captures and HTML carry them."""

from __future__ import annotations

import json
import re

import pydicom
import pytest

from edge_agent.agent import Budget
from edge_agent.config import Config, PolicySettings, ReportSettings
from edge_agent.policies.llama_cpp import LlamaCppSettings
from edge_agent.read import read_study
from imaging.records import to_plain
from tests.peers import dciodvfy_errors
from tests.support import bundled, run_cli, sr_items
from tests.videos import FPS, encode, read_index, video_study

DISC_ON, DISC_OFF = 45 / FPS, 60 / FPS  # the event the protocol must find


@pytest.fixture(scope="module")
def h264() -> bytes:
    return encode("h264")


@pytest.fixture(scope="module")
def read(h264, tmp_path_factory):
    folder = tmp_path_factory.mktemp("video-read")
    return read_study(video_study(folder / "study", h264), folder / "out", Config())


def test_the_protocol_finds_when_the_disc_appears_and_goes(read):
    assert read.trajectory.end_reason == "answer"
    windows = [f["time_window_s"] for f in read.report["findings"]]
    assert any(start <= DISC_ON <= end for start, end in windows), windows
    assert any(start <= DISC_OFF <= end for start, end in windows), windows
    steps = read.trajectory.steps
    assert [s.tool for s in steps] == ["crop_video", "get_frame"] * 2
    fetched = sorted(to_plain(s.payload)["frame"] for s in steps if s.tool == "get_frame")
    assert fetched == [46, 61]  # the first frame with the disc, the first without it again
    frame = pydicom.dcmread(read.out_dir / "dicom" / "sc_002.dcm")  # the get_frame evidence
    assert read_index(frame.pixel_array) == 45


def test_each_evidence_image_says_when_and_keeps_its_frames(read):
    for finding in read.report["findings"]:
        for evidence in finding["evidence"]:
            start, end = evidence["time_window_s"]
            assert finding["time_window_s"][0] <= start <= end <= finding["time_window_s"][1]
            assert len(evidence["frames"]) == len(evidence["times_s"])
            for name in evidence.get("frame_images", []):
                assert (read.out_dir / name).is_file()


def test_the_sr_references_the_video_frames_and_time_windows(read):
    sr = pydicom.dcmread(read.dicom[0])
    source = pydicom.dcmread(next((read.out_dir.parent / "study").iterdir()))
    tcoords = [i for i in sr_items(sr) if i.ValueType == "TCOORD"]
    windows = [f["time_window_s"] for f in read.report["findings"]]
    offsets = [float(v) for t in tcoords for v in t.ReferencedTimeOffsets]
    assert offsets == pytest.approx([v for window in windows for v in window])
    for tcoord, finding in zip(tcoords, read.report["findings"], strict=True):
        [image] = tcoord.ContentSequence
        [reference] = image.ReferencedSOPSequence
        assert reference.ReferencedSOPInstanceUID == source.SOPInstanceUID
        frames = {f for e in finding["evidence"] for f in e["frames"]}
        assert set(map(int, reference.ReferencedFrameNumber)) == frames
    for path in read.dicom:
        assert dciodvfy_errors(path) == [], path.name


def test_a_contact_sheet_capture_references_every_frame_on_it(read):
    sheet = pydicom.dcmread(read.out_dir / "dicom" / "sc_001.dcm")
    evidence = read.report["findings"][0]["evidence"][0]
    assert "frame_images" in evidence  # the crop_video sheet
    [source] = sheet.SourceImageSequence
    assert list(map(int, source.ReferencedFrameNumber)) == evidence["frames"]
    assert sheet.StudyInstanceUID == read.study.uid


def test_the_html_shows_when_and_links_each_frame(read):
    html = (read.out_dir / "report.html").read_text()
    assert "When (s from the start)" in html
    for name in re.findall(r"<a href='(evidence/[^']+)'", html):
        assert (read.out_dir / name).is_file()
    assert "contact sheet of 16 frames" in html  # the overview


def test_a_replay_of_a_video_read_gives_the_same_report(read, tmp_path):
    done = run_cli("replay", read.out_dir / "trajectory.json", "--out", tmp_path / "again")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "again" / "report.json").read_bytes() == (
        read.out_dir / "report.json"
    ).read_bytes()
    assert (tmp_path / "again" / "evidence" / "001_crop_video_frame00046.png").is_file()


def test_how_many_is_answered_in_moments_of_change_not_measured_regions(read):
    from edge_agent.followup import protocol_follow_up

    answer = protocol_follow_up(read.trajectory, "How many?").answer
    count = len(read.report["findings"])
    assert f"marked {count} moment(s) of change in this video" in answer
    assert "measured" not in answer


def test_a_cine_is_read_from_its_overview(tmp_path):
    result = read_study(bundled("examples_ybr_color.dcm"), tmp_path / "out", Config())
    assert "cine, 30 frames" in result.selection.reason
    first = result.trajectory.images[0]
    assert first.tool == "shown" and len(first.frames) == 16
    assert result.trajectory.end_reason == "answer"


def test_a_cine_finding_names_the_frames_its_evidence_shows(tmp_path):
    """Pydicom's cine has frames every 33.3 ms: a time rounded to milliseconds must not fetch the
    frame before the one the text names."""
    result = read_study(bundled("examples_ybr_color.dcm"), tmp_path / "out", Config())
    assert result.report["findings"]
    for finding in result.report["findings"]:
        first, last, sharpest = map(
            int, re.search(r"frames (\d+)-(\d+)\).*\(frame (\d+)\)", finding["text"]).groups()
        )
        sheet, fetched = finding["evidence"]
        assert sheet["frames"][0] == first and sheet["frames"][-1] == last, finding
        assert fetched["frames"] == [sharpest], finding
        start, end = re.search(r"between ([\d.]+) and ([\d.]+) s", finding["text"]).groups()
        assert [f"{t:.2f}" for t in finding["time_window_s"]] == [start, end], finding


def test_a_plain_mp4_is_read_from_the_command_line(h264, tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(encode("mp4"))
    done = run_cli("read", clip, "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["findings"] and all("time_window_s" in f for f in report["findings"])
    assert not (tmp_path / "out" / "dicom").exists()  # nothing DICOM to reference


def test_a_truncated_video_is_a_clear_error_from_the_command_line(h264, tmp_path):
    study = video_study(tmp_path / "study", h264[: len(h264) // 2])
    done = run_cli("read", study, "--out", tmp_path / "out")
    assert done.returncode == 2
    assert "video: bitstream truncated" in done.stderr


def test_a_read_with_the_tiny_gguf_completes_and_cites_time_windows(exported, h264, tmp_path):
    settings = LlamaCppSettings(
        model=str(exported / "model-q8_0.gguf"),
        mmproj=str(exported / "mmproj-f16.gguf"),
        n_ctx=4096,
    )
    config = Config(
        budget=Budget(max_turns=4, max_new_tokens=384),
        policy=PolicySettings(name="llama_cpp", llama_cpp=settings),
        report=ReportSettings(dicom=False),
    )
    result = read_study(video_study(tmp_path / "study", h264), tmp_path / "out", config)
    trajectory = result.trajectory
    # Random weights: whatever it does, the grammar keeps it to the video tools or an answer.
    assert trajectory.end_reason in ("answer", "max_turns"), trajectory.end_detail
    assert {s.tool for s in trajectory.steps} <= {"get_frame", "crop_video", "zoom_in"}
    assert all(image.times_s for image in trajectory.images)  # every image knows its time
    if trajectory.end_reason == "answer":
        assert result.report["findings"]
        for finding in result.report["findings"]:
            assert finding["time_window_s"]
