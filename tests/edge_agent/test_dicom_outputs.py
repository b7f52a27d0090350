"""The DICOM a PACS receives: valid (dciodvfy), readable (dsrdump, highdicom), in the right study,
tied to the source images, and accepted by a real Orthanc."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import highdicom as hd
import numpy as np
import pydicom
import pytest

from edge_agent.config import Config
from edge_agent.read import ReadResult, read_study
from edge_agent.report.dicom_files import source_uids
from edge_agent.report.provenance import Provenance
from edge_agent.report.regions import polygon_area
from edge_agent.report.sr import build_sr
from edge_agent.sample import write_sample_study
from tests.peers import Orthanc, dciodvfy_errors, storescu, tool


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> ReadResult:
    folder = tmp_path_factory.mktemp("read")
    study = write_sample_study(folder / "study")
    return read_study(study, folder / "out", Config())


def _source(result: ReadResult, sop_uid: str) -> pydicom.Dataset:
    return result.study.header(sop_uid)


def _selected_from(region) -> str:
    """The source image an SR SCOORD is 'selected from'."""
    return region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID


def test_every_object_is_written(result):
    names = sorted(p.name for p in result.dicom)
    cited = {e["index"] for f in result.report["findings"] for e in f["evidence"]}
    assert names == sorted(["sr.dcm", "seg.dcm", "ko.dcm", *(f"sc_{i:03d}.dcm" for i in cited)])


def test_dciodvfy_finds_no_errors(result):
    for path in result.dicom:
        assert dciodvfy_errors(path) == [], path.name


def test_dsrdump_renders_the_measurement_report(result):
    done = subprocess.run(
        [tool("dsrdump", "dcmtk"), "+U8", "+Pl", str(result.dicom[0])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    for text in (
        "Imaging Measurement Report",
        "Finding 1",
        '"Area"',
        "(mm2,UCUM",
        "Hounsfield unit",
        "SCOORD",
        "AI-generated, not a diagnosis",
        "Device Observer Model Name",
    ):
        assert text in done.stdout, text


def test_sr_sits_in_the_source_study_and_references_the_source_images(result):
    sr = hd.sr.srread(result.dicom[0])
    assert sr.StudyInstanceUID == result.study.uid
    assert sr.SeriesInstanceUID != result.selection.series.uid
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.SeriesInstanceUID == result.selection.series.uid
    groups = sr.content.get_planar_roi_measurement_groups()
    assert len(groups) == len(result.report["findings"]) == 2
    for group, finding in zip(groups, result.report["findings"], strict=True):
        region = group.roi
        source_uid = _selected_from(region)
        assert source_uid in {e["source"]["sop_instance_uid"] for e in finding["evidence"]}
        reported = {m["name"]: m["value"] for m in finding["measurements"]}
        got = {m.name.meaning: m.value for m in group.get_measurements()}
        assert got["Area"] == pytest.approx(reported["area"])
        assert got["Long axis"] == pytest.approx(reported["long axis"])


def test_the_scoord_gives_back_the_reported_area(result):
    sr = hd.sr.srread(result.dicom[0])
    groups = sr.content.get_planar_roi_measurement_groups()
    for group, finding in zip(groups, result.report["findings"], strict=True):
        region = group.roi
        source = _source(result, _selected_from(region))
        row_mm, col_mm = (float(v) for v in source.PixelSpacing)
        polygon = region.value  # (n, 2) column, row in image pixels
        assert np.array_equal(polygon[0], polygon[-1]), "closed outline"
        area = polygon_area(polygon) * row_mm * col_mm
        reported = next(m["value"] for m in finding["measurements"] if m["name"] == "area")
        assert area == pytest.approx(reported, rel=0.02)


def test_seg_has_one_segment_per_finding_on_the_source_grid(result):
    seg = hd.seg.segread(result.dicom[1])
    assert seg.StudyInstanceUID == result.study.uid
    assert seg.number_of_segments == len(result.report["findings"])
    assert seg.SegmentSequence[0].SegmentLabel == "Finding 1"
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    cited = {
        e["source"]["sop_instance_uid"] for f in result.report["findings"] for e in f["evidence"]
    }
    assert referenced <= cited
    # The mask's pixel count is the area we reported.
    source = _source(result, next(iter(referenced)))
    spacing = float(source.PixelSpacing[0]) * float(source.PixelSpacing[1])
    mask = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[source.SOPInstanceUID], segment_numbers=[1]
    )
    reported = next(
        m["value"] for m in result.report["findings"][0]["measurements"] if m["name"] == "area"
    )
    assert mask.sum() * spacing == pytest.approx(reported, abs=0.005)  # reported to 0.01 mm2


def test_secondary_captures_carry_the_evidence_pixels_and_their_source(result):
    by_index = {e["index"]: e for f in result.report["findings"] for e in f["evidence"]}
    for path in (p for p in result.dicom if p.name.startswith("sc_")):
        capture = pydicom.dcmread(path)
        evidence = by_index[int(path.stem.split("_")[1])]
        png = cv2.cvtColor(cv2.imread(str(result.out_dir / evidence["image"])), cv2.COLOR_BGR2RGB)
        assert np.array_equal(capture.pixel_array, png)
        assert capture.BurnedInAnnotation == "YES"
        assert capture.StudyInstanceUID == result.study.uid
        reference = capture.SourceImageSequence[0]
        assert reference.ReferencedSOPInstanceUID == evidence["source"]["sop_instance_uid"]


def test_key_object_selection_lists_the_source_images(result):
    ko = pydicom.dcmread(result.dicom[-1])
    assert ko.Modality == "KO" and ko.StudyInstanceUID == result.study.uid
    listed = {
        item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        for item in ko.ContentSequence
        if item.ValueType == "IMAGE"
    }
    cited = {
        e["source"]["sop_instance_uid"] for f in result.report["findings"] for e in f["evidence"]
    }
    assert listed and listed <= cited


def test_orthanc_accepts_them_under_the_source_study(result, tmp_path):
    orthanc = Orthanc(tmp_path / "orthanc")
    try:
        sources = sorted(Path(p) for p in result.study.files.values())
        sent = storescu(orthanc, [*sources, *result.dicom])
        assert sent.returncode == 0, sent.stderr
        series = orthanc.series_of_study(result.study.uid)
        by_number = {s["MainDicomTags"]["SeriesNumber"]: s for s in series}
        assert by_number["9001"]["MainDicomTags"]["Modality"] == "SR"
        assert by_number["9002"]["MainDicomTags"]["Modality"] == "SEG"
        assert by_number["9004"]["MainDicomTags"]["Modality"] == "KO"
        assert len(by_number["9003"]["Instances"]) == len(
            [p for p in result.dicom if p.name.startswith("sc_")]
        )
    finally:
        orthanc.stop()


def test_a_read_without_findings_still_reports_why_in_a_valid_sr(tmp_path):
    from edge_agent.agent import Budget

    study = write_sample_study(tmp_path / "study")
    short = read_study(study, tmp_path / "out", Config(budget=Budget(max_turns=2)))
    assert [p.name for p in short.dicom] == ["sr.dcm"]  # nothing to segment or capture
    assert dciodvfy_errors(short.dicom[0]) == []
    dump = subprocess.run(
        [tool("dsrdump", "dcmtk"), "+U8", "+Pl", str(short.dicom[0])],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "No findings were reported." in dump
    assert "No answer: max_turns (2 tool calls without an answer)" in dump


def test_the_sr_carries_the_whole_answer(result):
    """A model's answer and its follow-ups can run long; the SR's text (UT) keeps all of it."""
    answer = " ".join(f"Sentence {i} of a long answer." for i in range(200))
    sources = {uid: result.headers[uid] for uid in source_uids(result.trajectory)}
    sr = build_sr([], answer, sources, Provenance.of(result.trajectory), 9001)
    impressions = [
        item.TextValue
        for item in sr.ContentSequence
        if item.ConceptNameCodeSequence[0].CodeMeaning == "Impressions"
    ]
    assert len(answer) > 5000 and impressions == [answer]


def test_every_object_says_it_is_ai_and_not_a_diagnosis(result):
    """In a PACS series list, and on each capture of an outline a reader may view alone."""
    for path in result.dicom:
        made = pydicom.dcmread(path, stop_before_pixels=True)
        assert made.SeriesDescription.endswith("(AI, not a diagnosis)"), path.name
        if path.name.startswith("sc_"):
            assert "AI-generated, not a diagnosis" in made.ImageComments
