"""A study loads from its headers: pixel data is read and decoded only for the frames looked at."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import generate_uid

from edge_agent.selection import select
from imaging.errors import NoReadableImages
from imaging.study import load_study
from tests.support import bundled

SLICES = 20


def j2k_series(folder: Path, count: int = SLICES) -> list[Path]:
    """`count` 512x512 JPEG 2000 CT slices of one series, 1 mm apart."""
    folder.mkdir(parents=True, exist_ok=True)
    ds = pydicom.dcmread(bundled("693_J2KI.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    paths = []
    for i in range(count):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(i)]
        paths.append(folder / f"{i:03d}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    return paths


def test_loading_a_series_decodes_none_of_its_slices(tmp_path: Path):
    j2k_series(tmp_path)
    load_study(tmp_path)  # first-use imports and decoder plugins are not the study's memory
    tracemalloc.start()
    try:
        study = load_study(tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    decoded = SLICES * 512 * 512 * 2
    assert len(study.series[0].frames) == SLICES
    # decoding every slice would hold all of them; headers alone are a small part of that
    assert peak < decoded / 4, f"loading took {peak / 1e6:.1f} MB"


def test_a_shown_slice_decodes_to_its_file_pixels_once(tmp_path: Path):
    paths = j2k_series(tmp_path)
    study = load_study(tmp_path)
    [central] = select(study, ("CT",), 1).frames
    expected = pydicom.dcmread(paths[SLICES // 2]).pixel_array
    assert central.ref.sop_instance_uid == str(pydicom.dcmread(paths[SLICES // 2]).SOPInstanceUID)
    np.testing.assert_array_equal(central.pixels, expected)
    assert central.pixels is central.pixels  # decoded once, then kept


def test_a_damaged_slice_is_named_when_shown_and_the_others_still_read(tmp_path: Path):
    paths = j2k_series(tmp_path, 3)
    ds = pydicom.dcmread(paths[0])
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(60)])  # a J2K header, then nothing
    ds.save_as(paths[0])
    study = load_study(tmp_path)
    frames = study.series[0].frames
    assert not study.skipped and len(frames) == 3
    assert frames[1].pixels.shape == (512, 512)
    with pytest.raises(NoReadableImages, match=r"000\.dcm: pixel data cannot be decoded"):
        _ = frames[0].pixels


def test_a_loaded_study_holds_its_frames_not_its_headers(tmp_path: Path):
    """A vendor CT header (hundreds of elements, private groups) is far larger in memory than
    the frame made from it; a loaded series keeps the frames only."""
    source = pydicom.dcmread(bundled("CT_small.dcm"))
    for i in range(SLICES):
        source.SOPInstanceUID = source.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        source.ImagePositionPatient = [0.0, 0.0, float(i)]
        source.save_as(tmp_path / f"{i:03d}.dcm", enforce_file_format=True)
    load_study(tmp_path)  # first-use imports and caches are not the study's memory
    tracemalloc.start()
    try:
        header = pydicom.dcmread(tmp_path / "000.dcm", stop_before_pixels=True)
        for element in header:  # every value as loading reads them: converted
            _ = element.value
        one_header, _ = tracemalloc.get_traced_memory()
        del header, element
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        study = load_study(tmp_path)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(study.series[0].frames) == SLICES
    assert held < SLICES * one_header / 4, f"{held} bytes held for {SLICES} headers"


def test_a_slice_removed_after_loading_is_named_when_shown(tmp_path: Path):
    paths = j2k_series(tmp_path, 3)
    study = load_study(tmp_path)
    paths[0].unlink()
    frames = study.series[0].frames
    assert frames[1].pixels.shape == (512, 512)
    with pytest.raises(NoReadableImages, match=r"000\.dcm: unreadable DICOM"):
        _ = frames[0].pixels


def test_a_multi_frame_file_replaced_after_loading_is_skipped_not_shown(tmp_path: Path):
    """A 10-frame file overwritten by a one-frame image of another instance: no frame of it
    shows the other image under the loaded instance's identity, none crashes the read; the
    slice is skipped with why."""
    path = tmp_path / "emri.dcm"
    path.write_bytes(bundled("emri_small.dcm").read_bytes())
    study = load_study(tmp_path)
    frames = study.series[0].frames
    assert len(frames) == 10
    path.write_bytes(bundled("MR_small.dcm").read_bytes())
    for index in (0, 5):
        with pytest.raises(NoReadableImages, match=r"emri\.dcm: changed since it was loaded"):
            _ = frames[index].pixels
    with pytest.raises(NoReadableImages, match=r"emri\.dcm: changed since it was loaded"):
        select(_loaded_then_replaced(tmp_path, path), ("MR",), 1)


def _loaded_then_replaced(folder: Path, path: Path):
    path.write_bytes(bundled("emri_small.dcm").read_bytes())
    study = load_study(folder)
    path.write_bytes(bundled("MR_small.dcm").read_bytes())
    return study


def test_a_slice_replaced_by_another_of_the_same_size_is_refused(tmp_path: Path):
    paths = j2k_series(tmp_path, 3)
    study = load_study(tmp_path)
    paths[0].write_bytes(paths[1].read_bytes())
    frames = study.series[0].frames
    with pytest.raises(NoReadableImages, match=r"000\.dcm: changed since it was loaded"):
        _ = frames[0].pixels
    assert frames[1].pixels.shape == (512, 512)
