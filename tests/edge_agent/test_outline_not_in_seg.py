"""A finding outlined on an image a SEG cannot reference: report.json and report.html say that its
outline is in the SR and not in seg.dcm, and why; a finding the SEG carries says nothing."""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import replace
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from pydicom.uid import generate_uid

from edge_agent.config import Config, ReportSettings
from edge_agent.read import ReadResult, read_study
from edge_agent.replay import replay
from edge_agent.report.dicom_files import write_dicom
from edge_agent.report.seg import outlines_not_in_seg, unsegmentable
from edge_agent.sample import write_sample_study
from edge_agent.trajectory import Trajectory
from tests.support import bundled, run_cli, sr_items

NOTE = "Outline not in the SEG: its series has no Frame of Reference UID; the outline is in the SR."


def _without_frame_of_reference(folder: Path) -> Path:
    """The sample study, its CT slices stripped of (0020,0052) as some scanners' exports are."""
    study = write_sample_study(folder)
    for path in study.glob("CT*.dcm"):
        ds = pydicom.dcmread(path)
        del ds.FrameOfReferenceUID
        ds.save_as(path, enforce_file_format=True)
    return study


@pytest.fixture(scope="module")
def unreferenced(tmp_path_factory) -> ReadResult:
    folder = tmp_path_factory.mktemp("read")
    return read_study(_without_frame_of_reference(folder / "study"), folder / "out", Config())


@pytest.fixture(scope="module")
def normal(tmp_path_factory) -> ReadResult:
    folder = tmp_path_factory.mktemp("read")
    return read_study(write_sample_study(folder / "study"), folder / "out", Config())


def _findings(result: ReadResult) -> list[dict]:
    return json.loads((result.out_dir / "report.json").read_text())["findings"]


def test_an_outline_the_seg_cannot_carry_is_named_in_report_json_and_html(unreferenced):
    outlined = [r for r in unreferenced.trajectory.images if r.mask_file]
    assert outlined, "the read outlined nothing: this test would prove nothing"
    notes = [finding.get("outline_note") for finding in _findings(unreferenced)]
    assert notes and set(notes) == {NOTE}
    assert (unreferenced.out_dir / "report.html").read_text().count(NOTE) == len(notes)
    dicom = unreferenced.out_dir / "dicom"
    assert not (dicom / "seg.dcm").exists()  # neither finding could be a segment of it
    sr = pydicom.dcmread(dicom / "sr.dcm")
    scoords = [item for item in sr_items(sr) if item.ValueType == "SCOORD"]
    assert len(scoords) == len(notes)  # each noted outline is in the SR


def test_a_replay_writes_the_same_report_json(unreferenced, tmp_path):
    again = replay(unreferenced.out_dir / "trajectory.json", tmp_path / "again")
    assert (tmp_path / "again" / "report.json").read_bytes() == (
        unreferenced.out_dir / "report.json"
    ).read_bytes()
    assert again.report["findings"][0]["outline_note"] == NOTE


def test_a_replay_without_the_source_study_writes_no_note_and_says_why(unreferenced, tmp_path):
    gone = tmp_path / "moved-away"
    again = replay(unreferenced.out_dir / "trajectory.json", tmp_path / "again", source=gone)
    assert "does not exist" in again.dicom_skipped
    off = replay(unreferenced.out_dir / "trajectory.json", tmp_path / "off", dicom=False)
    assert off.dicom_skipped == "DICOM outputs are off"
    for folder in (tmp_path / "again", tmp_path / "off"):
        findings = json.loads((folder / "report.json").read_text())["findings"]
        assert findings and not any("outline_note" in finding for finding in findings)
        assert "Outline not in the SEG" not in (folder / "report.html").read_text()


def test_a_follow_up_keeps_the_note(tmp_path):
    result = read_study(_without_frame_of_reference(tmp_path / "study"), tmp_path / "out", Config())
    done = run_cli("ask", result.out_dir, "How many candidates?")
    assert done.returncode == 0, done.stderr
    report = json.loads((result.out_dir / "report.json").read_text())
    assert report["follow_ups"][0]["question"] == "How many candidates?"  # written again
    findings = report["findings"]
    assert findings and {finding.get("outline_note") for finding in findings} == {NOTE}
    html = (result.out_dir / "report.html").read_text()
    assert NOTE in html and "How many candidates?" in html


def test_without_dicom_outputs_the_reports_say_nothing_of_a_seg(tmp_path):
    config = replace(Config(), report=ReportSettings(dicom=False))
    result = read_study(_without_frame_of_reference(tmp_path / "study"), tmp_path / "out", config)
    assert result.report["findings"] and not any(
        "outline_note" in finding for finding in _findings(result)
    )
    assert "Outline not in the SEG" not in (result.out_dir / "report.html").read_text()


def test_outlines_the_seg_carries_get_no_note(normal):
    findings = _findings(normal)
    assert findings and not any("outline_note" in finding for finding in findings)
    assert "Outline not in the SEG" not in (normal.out_dir / "report.html").read_text()
    seg = hd.seg.segread(normal.out_dir / "dicom" / "seg.dcm")
    assert seg.number_of_segments == len(findings)


def _repointed(result: ReadResult, index: int) -> tuple[Trajectory, dict]:
    """The read, its image `index` re-pointed to a copy of its source without Frame of
    Reference UID (a new SOP instance), and the headers with that copy."""
    record = result.trajectory.image(index)
    header = copy.deepcopy(result.headers[record.source.sop_instance_uid])
    header.SOPInstanceUID = generate_uid()
    del header.FrameOfReferenceUID
    source = replace(record.source, sop_instance_uid=header.SOPInstanceUID)
    images = list(result.trajectory.images)
    images[index] = replace(record, source=source)
    trajectory = replace(result.trajectory, images=tuple(images))
    return trajectory, {**result.headers, header.SOPInstanceUID: header}


def _masked(result: ReadResult, number: int) -> list[int]:
    """The images finding `number` cites that a tool outlined, oldest first."""
    claim = result.trajectory.answer.findings[number - 1]
    return [i for i in claim.evidence if result.trajectory.image(i).mask_file]


def _segments(trajectory: Trajectory, headers: dict, result: ReadResult, out: Path) -> list[str]:
    shutil.copytree(result.out_dir, out)
    write_dicom(trajectory, headers, out)
    seg = hd.seg.segread(out / "dicom" / "seg.dcm")
    return [seg.get_segment_description(n).segment_label for n in seg.segment_numbers]


def test_only_the_finding_whose_outline_the_seg_cannot_carry_is_left_out(normal, tmp_path):
    masked = _masked(normal, 2)
    assert len(masked) >= 2, "finding 2 needs an older outline for this test to prove anything"
    assert not set(masked) & {i for c in normal.trajectory.answer.findings[:1] for i in c.evidence}
    trajectory, headers = _repointed(normal, masked[-1])
    assert outlines_not_in_seg(trajectory, headers) == {2: NOTE}
    assert _segments(trajectory, headers, normal, tmp_path / "out") == ["Finding 1"]


def test_an_older_outline_of_a_finding_decides_nothing(normal, tmp_path):
    """The newest outlined image places the finding, in the SEG and in the notes alike."""
    masked = _masked(normal, 2)
    assert len(masked) >= 2, "finding 2 needs an older outline for this test to prove anything"
    trajectory, headers = _repointed(normal, masked[0])
    assert outlines_not_in_seg(trajectory, headers) == {}
    assert _segments(trajectory, headers, normal, tmp_path / "out") == ["Finding 1", "Finding 2"]


def test_one_rule_says_which_sources_a_seg_can_reference_and_why_not():
    ct = pydicom.dcmread(bundled("CT_small.dcm"), stop_before_pixels=True)
    assert unsegmentable(ct) is None
    del ct.FrameOfReferenceUID
    assert unsegmentable(ct) == "its series has no Frame of Reference UID"
    capture = pydicom.dcmread(bundled("SC_rgb.dcm"), stop_before_pixels=True)
    assert unsegmentable(capture) is None  # its IOD has no Frame of Reference to carry
    capture.NumberOfFrames = "-1"  # damaged: not one frame either
    assert unsegmentable(capture) == "its cine or video has no Frame of Reference UID"
    cine = pydicom.dcmread(bundled("US1_UNCR.dcm"), stop_before_pixels=True)
    cine.SOPClassUID, cine.NumberOfFrames = hd.UID("1.2.840.10008.5.1.4.1.1.3.1"), 10
    assert unsegmentable(cine) == "its cine or video has no Frame of Reference UID"
