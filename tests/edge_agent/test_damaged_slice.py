"""A slice whose compressed pixel data is damaged is found when it is first shown: the file is
skipped with its reason, as loading skips a damaged file, and the read goes on with the rest."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import generate_uid

from edge_agent.config import Config
from edge_agent.read import read_study
from edge_agent.selection import select
from imaging.errors import NoReadableImages
from imaging.study import load_study
from tests.imaging.test_instance import j2k_series
from tests.support import console_script, run_cli, study_with_damaged_file


def damaged_series(folder: Path, count: int, broken: tuple[int, ...]) -> list[Path]:
    """A J2K CT series of `count` slices (one frame of reference) whose `broken` slices hold a
    J2K header and nothing after it."""
    paths = j2k_series(folder, count)
    frame_of_reference = generate_uid()
    for i, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        ds.FrameOfReferenceUID = frame_of_reference
        if i in broken:
            ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(60)])
        ds.save_as(path)
    return paths


def test_a_damaged_key_slice_is_skipped_and_another_shown(tmp_path: Path):
    paths = damaged_series(tmp_path, 5, broken=(2,))
    loaded = load_study(tmp_path)
    selection = select(loaded, ("CT",), 1)  # the central slice, 002, is the damaged one
    [(skipped)] = selection.study.skipped
    assert skipped.path == paths[2] and "pixel data cannot be decoded" in skipped.reason
    assert len(selection.series.frames) == 4
    [shown] = selection.frames
    damaged_uid = str(pydicom.dcmread(paths[2], stop_before_pixels=True).SOPInstanceUID)
    assert shown.ref.sop_instance_uid != damaged_uid
    assert shown.pixels.shape == (512, 512)
    assert damaged_uid not in selection.study.files and len(selection.study.files) == 4


def test_a_study_whose_every_slice_is_damaged_is_bad_input_naming_them(tmp_path: Path):
    damaged_series(tmp_path, 2, broken=(0, 1))
    with pytest.raises(NoReadableImages, match=r"000\.dcm: pixel data cannot be decoded.*001"):
        select(load_study(tmp_path), ("CT",), 3)


def test_read_skips_a_damaged_slice_names_it_in_one_line_and_goes_on(tmp_path: Path):
    damaged_series(tmp_path / "study", 5, broken=(2,))
    out = tmp_path / "out"
    done = run_cli("read", tmp_path / "study", "--policy", "protocol", "-o", out)
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stderr.splitlines() if "002.dcm" in line]
    assert "skipped" in line and "pixel data cannot be decoded" in line
    assert "1 file(s) skipped" in done.stderr
    assert "Traceback" not in done.stderr and "ERROR" not in done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["findings"] and (out / "dicom").is_dir()


def test_the_gateway_reader_reads_a_study_with_a_damaged_slice(tmp_path: Path):
    from edge_agent.cli.config import FileConfig
    from edge_agent.cli.gateway_reader import AgentReader

    paths = damaged_series(tmp_path / "study", 5, broken=(2,))
    reader = AgentReader(FileConfig())
    try:
        outcome = reader.read(tmp_path / "study", tmp_path / "out")
    finally:
        reader.close()
    assert outcome.end_reason == "answer" and outcome.findings > 0
    damaged = str(pydicom.dcmread(paths[2], stop_before_pixels=True).SOPInstanceUID)
    sr = pydicom.dcmread(outcome.dicom[0])
    cited = {
        ref.ReferencedSOPInstanceUID
        for item in sr.CurrentRequestedProcedureEvidenceSequence
        for series in item.ReferencedSeriesSequence
        for ref in series.ReferencedSOPSequence
    }
    assert cited and damaged not in cited


def test_a_whole_read_decodes_only_the_slices_it_shows(tmp_path: Path):
    """Every slice but the shown ones is damaged: a read (tools, reports, DICOM outputs) that
    decoded any of them would name it skipped."""
    count = 20
    intact = select(load_study(j2k_series(tmp_path / "intact", count)[0].parent), ("CT",), 3)
    shown = {frame.instance_number - 1 for frame in intact.frames}
    damaged_series(tmp_path / "study", count, broken=tuple(set(range(count)) - shown))
    result = read_study(tmp_path / "study", tmp_path / "out", Config())
    assert result.study.skipped == () and len(result.selection.series.frames) == count
    assert {f.instance_number - 1 for f in result.selection.frames} == shown and len(shown) == 3
    assert result.report["findings"] and result.dicom


def test_read_skips_a_file_with_a_damaged_value_names_it_and_goes_on(tmp_path: Path):
    damaged = study_with_damaged_file(tmp_path / "study", "StudyInstanceUID", "UI", b"1.2.abc")
    out = tmp_path / "out"
    done = run_cli("read", tmp_path / "study", "--policy", "protocol", "-o", out)
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stderr.splitlines() if damaged.name in line]
    assert "skipped" in line and "damaged StudyInstanceUID: '1.2.abc' is not a UID" in line
    assert "1 file(s) skipped" in done.stderr and "Invalid value for VR" not in done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["findings"] and (out / "dicom").is_dir()


def test_read_of_a_study_whose_every_file_has_a_damaged_value_is_one_line_exit_2(
    tmp_path: Path,
):
    for keyword, vr, value in (("RescaleSlope", "DS", b"abc "), ("NumberOfFrames", "IS", b"1A")):
        study_with_damaged_file(tmp_path / "study", keyword, vr, value, good=0)
    done = run_cli("read", tmp_path / "study", "--policy", "protocol", "-o", tmp_path / "out")
    assert done.returncode == 2, done.stderr
    [error] = [line for line in done.stderr.splitlines() if "skipped" not in line]
    assert error.startswith("error: no readable DICOM images")
    assert "NumberOfFrames_000.dcm: damaged NumberOfFrames: '1A' is not an integer" in error
    assert "RescaleSlope_000.dcm: damaged RescaleSlope: 'abc' is not a decimal number" in error
    assert not (tmp_path / "out" / "report.json").exists()


# Run before the command: the study's files become garbage once the read has shown its images
# and run its tools, before its evidence and outputs are written.
DAMAGE_SOURCE_MID_READ = """
from pathlib import Path
import edge_agent.read as read
written = read.write_evidence
def damage_then_write(*args, **kwargs):
    for file in Path({study!r}).glob("*.dcm"):
        file.write_bytes(b"not DICOM " * 64)
    return written(*args, **kwargs)
read.write_evidence = damage_then_write
"""


def test_a_source_file_damaged_before_the_dicom_outputs_is_one_line_exit_2(tmp_path: Path):
    study = study_with_damaged_file(tmp_path / "study", "SliceThickness", "DS", b"  ")
    out = tmp_path / "out"
    code = DAMAGE_SOURCE_MID_READ.format(study=str(study.parent))
    done = console_script(code, "read", str(study.parent), "--policy", "protocol", "-o", str(out))
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert (
        line.startswith(f"error: {study.parent}") and ".dcm changed since it was loaded: " in line
    )
    assert "not a DICOM Part 10 file" in line and f"the reports are in {out}" in line
    assert (out / "report.json").is_file() and (out / "trajectory.json").is_file()
    assert not (out / "dicom").exists()
