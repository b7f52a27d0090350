"""A header value pydicom cannot convert, found when loading reads it: the file is skipped with
one line naming the attribute, and the study is read from its other files."""

from __future__ import annotations

from pathlib import Path

import pytest

from imaging.errors import NoReadableImages
from imaging.study import load_study
from tests.support import GOOD, study_with_damaged_file

DAMAGE = {
    "US of the wrong length": ("Rows", "US", b"\x80\x00\x00", "damaged Rows: 3 byte(s)"),
    "US of the wrong length, bits": (
        "BitsAllocated",
        "US",
        b"\x10",
        "damaged BitsAllocated: 1 byte(s)",
    ),
    "FD of the wrong length": (
        "RescaleSlope",
        "FD",
        b"\x00" * 5,
        "damaged RescaleSlope: 5 byte(s)",
    ),
    "IS that does not parse": (
        "NumberOfFrames",
        "IS",
        b"1A",
        "damaged NumberOfFrames: '1A' is not an integer",
    ),
    "DS that does not parse": (
        "RescaleSlope",
        "DS",
        b"1,5 ",
        "damaged RescaleSlope: '1,5' is not a decimal number",
    ),
    "DS that does not parse, in geometry": (
        "SliceThickness",
        "DS",
        b"q ",
        "damaged SliceThickness: 'q' is not a decimal number",
    ),
    "one of several DS that does not parse": (
        "ImagePositionPatient",
        "DS",
        b"0\\0\\x ",
        r"damaged ImagePositionPatient: '0\\0\\x' is not a decimal number",
    ),
    "DS stated as text of another VR": (
        "RescaleIntercept",
        "LO",
        b"-1024 HU",
        "damaged RescaleIntercept: '-1024 HU' is not a decimal number",
    ),
    "broken sequence": (
        "SharedFunctionalGroupsSequence",
        "SQ",
        b"\x01\x02\x03\x04\x05\x06",
        "damaged SharedFunctionalGroupsSequence: No tag to read",
    ),
    "garbage Study UID": (
        "StudyInstanceUID",
        "UI",
        b"1.2.abc\x00",
        "damaged StudyInstanceUID: '1.2.abc' is not a UID",
    ),
    "garbage SOP Instance UID": (
        "SOPInstanceUID",
        "UI",
        b"1.2.x3\x00",
        "damaged SOPInstanceUID: '1.2.x3' is not a UID",
    ),
    "path-like Frame of Reference UID": (  # the SEG and SR would copy it
        "FrameOfReferenceUID",
        "UI",
        b"a/b\x00",
        "damaged FrameOfReferenceUID: 'a/b' is not a UID",
    ),
}


@pytest.mark.parametrize(("keyword", "vr", "value", "reason"), DAMAGE.values(), ids=DAMAGE)
def test_a_file_with_a_damaged_value_is_skipped_naming_it_and_the_others_load(
    tmp_path: Path, keyword: str, vr: str, value: bytes, reason: str
):
    damaged = study_with_damaged_file(tmp_path, keyword, vr, value)
    study = load_study(tmp_path)
    [skipped] = study.skipped
    assert skipped.path == damaged
    assert skipped.reason.startswith(reason) and "\n" not in skipped.reason
    [series] = study.series
    assert len(series.frames) == GOOD == len(study.files)
    assert [frame.geometry.position[2] for frame in series.frames] == [0.0, 1.0, 2.0]


def test_a_study_whose_every_file_has_a_damaged_value_names_each(tmp_path: Path):
    for kind in ("US of the wrong length", "FD of the wrong length"):
        keyword, vr, value, _ = DAMAGE[kind]
        study_with_damaged_file(tmp_path, keyword, vr, value, good=0)
    with pytest.raises(NoReadableImages) as raised:
        load_study(tmp_path)
    message = str(raised.value)
    assert "RescaleSlope_000.dcm: damaged RescaleSlope: 5 byte(s)" in message
    assert "Rows_000.dcm: damaged Rows: 3 byte(s)" in message and "\n" not in message


def test_a_value_loading_tolerates_blank_still_loads(tmp_path: Path):
    """A single blank number states none: the file loads, as with the attribute absent."""
    study_with_damaged_file(tmp_path, "SliceThickness", "DS", b"  ")
    study = load_study(tmp_path)
    assert study.skipped == () and len(study.series[0].frames) == GOOD + 1
    assert study.series[0].frames[-1].geometry.slice_thickness is None


def test_a_number_stated_under_a_text_vr_loads_as_that_number(tmp_path: Path):
    study_with_damaged_file(tmp_path, "RescaleIntercept", "LO", b"-1024 ")
    study = load_study(tmp_path)
    assert study.skipped == () and len(study.series[0].frames) == GOOD + 1
    assert study.series[0].frames[-1].intercept == -1024.0


def test_a_blank_among_several_numbers_loads_without_that_attribute(tmp_path: Path):
    """Two numbers and a blank for the two of Pixel Spacing: no spacing, as with three numbers;
    the slice is read in pixels, not skipped."""
    study_with_damaged_file(tmp_path, "PixelSpacing", "DS", b"0.5\\0.5\\")
    study = load_study(tmp_path)
    assert study.skipped == () and len(study.series[0].frames) == GOOD + 1
    assert study.series[0].frames[-1].geometry.pixel_spacing is None
