from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate

from edge_agent.selection import select
from imaging.errors import NoReadableImages
from imaging.study import load_study
from tests.support import bundled

BUNDLED = [
    # file, modality, frames, frame shape, transfer syntax it exercises
    ("CT_small.dcm", "CT", 1, (128, 128), "explicit VR little endian"),
    ("693_J2KI.dcm", "CT", 1, (512, 512), "JPEG 2000"),
    ("MR_small.dcm", "MR", 1, (64, 64), "explicit VR little endian"),
    ("MR_small_RLE.dcm", "MR", 1, (64, 64), "RLE lossless"),
    ("MR_small_jpeg_ls_lossless.dcm", "MR", 1, (64, 64), "JPEG-LS lossless"),
    ("MR_small_jp2klossless.dcm", "MR", 1, (64, 64), "JPEG 2000 lossless"),
    ("JPGExtended.dcm", "NM", 1, (1024, 256), "JPEG extended"),
    ("image_dfl.dcm", "OT", 1, (512, 512), "deflated explicit VR"),
    ("examples_ybr_color.dcm", "US", 30, (240, 320, 3), "JPEG baseline, YBR_FULL_422"),
    ("examples_palette.dcm", "US", 1, (350, 800, 3), "palette colour"),
    ("SC_rgb_rle.dcm", "OT", 1, (100, 100, 3), "RLE RGB"),
]


@pytest.mark.parametrize(("name", "modality", "frames", "shape", "_syntax"), BUNDLED)
def test_bundled_file_loads_with_shape_and_image_refs(name, modality, frames, shape, _syntax):
    study = load_study(bundled(name))
    [series] = study.series
    assert series.modality == modality
    assert len(series.frames) == frames
    source = pydicom.dcmread(bundled(name), stop_before_pixels=True)
    for number, frame in enumerate(series.frames, 1):
        assert frame.pixels.shape == shape
        assert frame.ref.sop_instance_uid == source.SOPInstanceUID
        assert frame.ref.frame == number
        assert frame.ref.study_instance_uid == study.uid == source.StudyInstanceUID


def test_ct_values_are_hounsfield_units():
    frame = load_study(bundled("CT_small.dcm")).series[0].frames[0]
    raw = pydicom.dcmread(bundled("CT_small.dcm")).pixel_array
    np.testing.assert_array_equal(frame.values, raw.astype(np.float32) - 1024)
    assert frame.hounsfield
    assert not load_study(bundled("MR_small.dcm")).series[0].frames[0].hounsfield
    assert frame.geometry.pixel_spacing == pytest.approx((0.661468, 0.661468))
    assert frame.geometry.slice_thickness == 5.0


@pytest.mark.parametrize(
    "name", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"]
)
def test_lossless_syntaxes_decode_to_the_uncompressed_pixels(name):
    reference = load_study(bundled("MR_small.dcm")).series[0].frames[0].values
    decoded = load_study(bundled(name)).series[0].frames[0].values
    np.testing.assert_array_equal(decoded, reference)


def test_cine_frames_carry_their_times():
    series = load_study(bundled("examples_ybr_color.dcm")).series[0]
    assert series.timeline is not None and series.video is None  # a cine
    times = [f.time_s for f in series.frames]
    assert times[0] == 0.0
    assert times[1] == pytest.approx(0.033333)
    assert times[-1] == pytest.approx(29 * 0.033333)


def test_windows_come_from_the_file_then_the_modality_preset():
    mr = load_study(bundled("MR_small.dcm")).series[0].frames[0]
    assert (mr.default_window.center, mr.default_window.width) == (600.0, 1600.0)
    ct = load_study(bundled("CT_small.dcm")).series[0].frames[0]
    assert ct.default_window.name == "soft tissue"


def test_colour_images_are_rgb():
    us = load_study(bundled("examples_ybr_color.dcm")).series[0].frames[0]
    assert us.is_colour and us.default_window is None
    # YBR_FULL_422 was converted: R, G and B of this grey-ish ultrasound are close, not Y/Cb/Cr.
    mean = us.pixels.reshape(-1, 3).mean(axis=0)
    assert np.ptp(mean) < 5


def test_slices_are_ordered_by_position_not_file_name(sample_study: Path):
    for index, path in enumerate(sorted(sample_study.glob("CT*.dcm"))):
        path.rename(path.with_name(f"z{9 - index}.dcm"))  # file order now reversed
    ct = next(s for s in load_study(sample_study).series if s.modality == "CT")
    positions = [f.geometry.position[2] for f in ct.frames]
    assert positions == sorted(positions) and len(positions) == 5


def test_a_copy_of_a_slice_under_another_name_adds_no_frame(sample_study: Path):
    for path in sorted(sample_study.glob("CT*.dcm"))[:2]:
        shutil.copy(path, path.with_name(f"copy_of_{path.name}"))
    ct = next(s for s in load_study(sample_study).series if s.modality == "CT")
    uids = [f.ref.sop_instance_uid for f in ct.frames]
    positions = [f.geometry.position[2] for f in ct.frames]
    assert len(uids) == len(set(uids)) == 5 and positions == sorted(positions)


def test_a_series_is_described_by_its_first_file(sample_study: Path):
    first, *others = sorted(sample_study.glob("CT*.dcm"))
    for path in others:  # a later file that disagrees does not rename the series
        ds = pydicom.dcmread(path)
        ds.SeriesDescription, ds.SeriesNumber, ds.ImageType = "other", 77, ["DERIVED", "SCOUT"]
        ds.save_as(path)
    expected = pydicom.dcmread(first, stop_before_pixels=True)
    ct = next(s for s in load_study(sample_study).series if s.modality == "CT")
    assert (ct.description, ct.number) == (expected.SeriesDescription, expected.SeriesNumber)
    assert ct.image_type == tuple(expected.ImageType) and len(ct.frames) == 5


def test_unreadable_files_are_skipped_with_reasons(tmp_path: Path):
    for name in (
        "CT_small.dcm",
        "no_meta.dcm",
        "MR_truncated.dcm",
        "rtplan_truncated.dcm",
        "test-SR.dcm",
    ):
        shutil.copy(bundled(name), tmp_path / name)
    study = load_study(tmp_path)
    assert [s.modality for s in study.series] == ["CT"]
    reasons = {s.path.name: s.reason for s in study.skipped}
    assert set(reasons) == {
        "no_meta.dcm",
        "MR_truncated.dcm",
        "rtplan_truncated.dcm",
        "test-SR.dcm",
    }
    assert "file meta" in reasons["no_meta.dcm"]
    assert "less than expected" in reasons["MR_truncated.dcm"]
    assert "RT Plan" in reasons["rtplan_truncated.dcm"]
    assert "not an image" in reasons["test-SR.dcm"]


def test_unsupported_transfer_syntax_is_named(tmp_path: Path):
    ds = pydicom.dcmread(bundled("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.92"  # JPEG 2000 Part 2: no decoder here
    ds.PixelData = encapsulate([bytes(64)])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "j2k-part2.dcm")
    with pytest.raises(
        NoReadableImages,
        match=r"j2k-part2.dcm: transfer syntax 1\.2\.840\.10008\.1\.2\.4\.92 has no available "
        r"decoder",
    ):
        load_study(tmp_path)


def test_a_video_that_does_not_decode_is_named(tmp_path: Path):
    ds = pydicom.dcmread(bundled("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG-2, but garbage inside
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(60)])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "mpeg2.dcm")
    with pytest.raises(NoReadableImages, match=r"mpeg2.dcm: video: "):
        load_study(tmp_path)


def test_folder_without_dicom_is_an_error(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(NoReadableImages, match=r"notes\.txt: not a DICOM Part 10 file"):
        load_study(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoReadableImages, match="no files found"):
        load_study(tmp_path / "empty")


def test_two_studies_in_one_folder_are_refused(tmp_path: Path):
    shutil.copy(bundled("CT_small.dcm"), tmp_path / "a.dcm")
    shutil.copy(bundled("examples_ybr_color.dcm"), tmp_path / "b.dcm")
    with pytest.raises(NoReadableImages, match="holds 2 studies"):
        load_study(tmp_path)


def test_selection_prefers_the_ct_volume_and_shows_central_slices(sample_study: Path):
    study = load_study(sample_study)
    assert sorted(s.modality for s in study.series) == ["CT", "MR"]
    chosen = select(study, ("CT", "MR"), key_frames=3)
    assert chosen.series.modality == "CT"
    assert [chosen.series.frames.index(f) for f in chosen.frames] == [1, 2, 3]
    assert select(study, ("MR", "CT"), key_frames=3).series.modality == "MR"


def test_one_key_slice_is_the_central_slice_the_profile_shows(sample_study: Path):
    """A profile that shows one image at turn 1 shows the central key slice (formats/shown.py);
    selecting one key slice picks that same central slice, not the one at 20 %."""
    from edge_agent.formats.shown import ShownImages

    study = load_study(sample_study)
    one, three = select(study, ("CT",), key_frames=1), select(study, ("CT",), key_frames=3)
    frames = one.series.frames
    assert [frames.index(f) for f in one.frames] == [len(frames) // 2]
    shown_of_three = ShownImages.of(3, 3, 1, 1).workspace
    assert [frames.index(three.frames[i]) for i in shown_of_three] == [len(frames) // 2]


def test_a_cine_is_read_as_a_timeline_from_its_frame_times():
    study = load_study(bundled("examples_ybr_color.dcm"))  # 30 US frames, Frame Time 33.33 ms
    chosen = select(study, ("US",), key_frames=3)
    assert chosen.frames == () and "cine, 30 frames, 1.0 s" in chosen.reason
    timeline = chosen.timeline
    assert timeline.frame_count == 30
    assert timeline.frame_at(0.5).ref.frame == 16  # 0.5 s / 33.33 ms = frame index 15
    window = timeline.frames_between(0.1, 0.2, 4)
    assert [f.ref.frame for f in window] == [4, 5, 6, 7]
    assert [f.time_s for f in window] == pytest.approx([0.1, 0.1333, 0.1667, 0.2], abs=1e-3)
    with pytest.raises(NoReadableImages, match="no series of a readable modality"):
        select(study, ("CT",), key_frames=3)


def _cine() -> pydicom.Dataset:
    """pydicom's 30-frame US cine, decompressed so that frames can be cut out of it."""
    ds = pydicom.dcmread(bundled("examples_ybr_color.dcm"))
    ds.decompress()
    return ds


def test_a_series_of_several_cine_loops_is_read_by_its_longest_loop(tmp_path: Path):
    for number, count in ((1, 10), (2, 30)):
        ds = _cine()
        ds.SOPInstanceUID = f"1.2.3.4.{number}"
        ds.InstanceNumber = number
        if count < ds.NumberOfFrames:  # a shorter loop: its first `count` frames
            ds.PixelData = ds.PixelData[: len(ds.PixelData) * count // int(ds.NumberOfFrames)]
            ds.NumberOfFrames = count
        ds.save_as(tmp_path / f"loop{number}.dcm")
    study = load_study(tmp_path)
    assert not study.skipped and len(study.series[0].frames) == 40
    chosen = select(study, ("US",), key_frames=3)
    assert chosen.timeline.frame_count == 30
    frames = chosen.timeline.frames_between(0.0, 0.9, 5)
    assert {f.ref.sop_instance_uid for f in frames} == {"1.2.3.4.2"}  # never mixed with loop 1


def test_a_still_beside_a_cine_loop_does_not_hide_the_loop(tmp_path: Path):
    loop = _cine()
    loop.InstanceNumber = 2
    loop.save_as(tmp_path / "loop.dcm")
    still = _cine()
    still.SOPInstanceUID, still.InstanceNumber = "1.2.3.4.9", 1
    still.PixelData = still.PixelData[: len(still.PixelData) // int(still.NumberOfFrames)]
    still.NumberOfFrames = 1
    still.save_as(tmp_path / "still.dcm")
    study = load_study(tmp_path)
    assert not study.skipped and len(study.series[0].frames) == 31
    chosen = select(study, ("US",), key_frames=3)
    assert chosen.timeline.frame_count == 30 and "cine, 30 frames" in chosen.reason


def test_a_frame_time_vector_not_starting_at_zero_still_starts_the_cine_at_zero(tmp_path: Path):
    ds = pydicom.dcmread(bundled("examples_ybr_color.dcm"))
    ds.FrameTimeVector = [40.0] * int(ds.NumberOfFrames)  # the first entry should be 0
    ds.FrameIncrementPointer = 0x00181065
    ds.save_as(tmp_path / "cine.dcm")
    timeline = select(load_study(tmp_path), ("US",), key_frames=3).timeline
    first = timeline.frame_at(0.0)
    assert (first.ref.frame, first.time_s) == (1, 0.0)
    assert timeline.frame_at(0.04).ref.frame == 2


def test_a_damaged_video_is_skipped_and_the_rest_of_the_study_is_read(tmp_path: Path):
    from tests.videos import dicom_video, encode

    good = dicom_video(encode("h264"))
    good.save_as(tmp_path / "good.dcm", enforce_file_format=True)
    bad = copy.deepcopy(good)
    bad.SOPInstanceUID = "1.2.3.4.5"
    # An empty Basic Offset Table, then bytes that are no fragment item.
    bad.PixelData = b"\xfe\xff\x00\xe0\x00\x00\x00\x00" + b"\x17" * 64
    bad.save_as(tmp_path / "bad.dcm", enforce_file_format=True)
    study = load_study(tmp_path)
    assert [s.path.name for s in study.skipped] == ["bad.dcm"]
    assert study.skipped[0].reason.startswith("video: ")
    assert study.series[0].video.frame_count == 90
