"""A header is parsed from its file's first bytes; what does not parse so is parsed from the file,
and either way loading makes the same of it."""

from __future__ import annotations

import errno
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pydicom.filereader
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from imaging import header, instance
from imaging.study import load_study
from tests.support import bundled


def test_pixel_data_cut_short_is_named_at_load(tmp_path: Path):
    """Native pixel data longer than what is read at load (it stays in the file) but cut short:
    the file is skipped with the shortfall, the rest of the series still loads."""
    source = pydicom.dcmread(bundled("CT_small.dcm"))
    for i in range(2):
        source.SOPInstanceUID = source.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        source.save_as(tmp_path / f"{i}.dcm", enforce_file_format=True)
    whole = (tmp_path / "0.dcm").read_bytes()
    (tmp_path / "0.dcm").write_bytes(whole[:-5000])
    study = load_study(tmp_path)
    [skipped] = study.skipped
    assert skipped.path.name == "0.dcm"
    assert "less than expected (27906 vs 32768 bytes)" in skipped.reason
    assert len(study.series[0].frames) == 1


def _outcome(path: Path, shared: header.SharedValues | None = None) -> tuple:
    """What loading makes of one file: its frames' attributes, or the reason it is skipped."""
    try:
        read = instance.read_instance(path, shared=shared)
    except header.UnreadableFile as exc:
        return ("skipped", str(exc))
    frames = [
        (f.ref, f.geometry, f.modality, f.photometric, f.slope, f.intercept, f.windows, f.time_s)
        for f in read.frames
    ]
    return (read.study_uid, read.series, frames)


def test_a_header_read_from_the_first_bytes_is_the_header_read_from_the_file(monkeypatch):
    """Every file bundled with pydicom (explicit and implicit VR, big endian, deflated, no file
    meta, sequences, multi-frame, encapsulated, damaged) loads the same whether its header is
    parsed from the file's first bytes or, as for a header longer than those, from the file."""
    files = sorted(Path(pydicom.data.__file__).parent.glob("test_files/**/*.dcm"))
    fast = {path.name: _outcome(path) for path in files}
    monkeypatch.setattr(header, "HEAD_BYTES", 256)  # every header is longer: read from the file
    slow = {path.name: _outcome(path) for path in files}
    assert len(files) > 50 and sum(o[0] != "skipped" for o in fast.values()) > 30
    assert fast == slow


def test_every_file_loaded_with_the_values_of_the_others_loads_as_alone():
    """Every bundled file, loaded after all the others with the values they converted (the same
    bytes in other encodings, other files' sizes, spacings and windows), loads as it does alone."""
    files = sorted(Path(pydicom.data.__file__).parent.glob("test_files/**/*.dcm"))
    alone = {path.name: _outcome(path) for path in files}
    shared = header.SharedValues()
    together = {path.name: _outcome(path, shared) for path in files}
    assert len(files) > 50 and sum(o[0] != "skipped" for o in alone.values()) > 30
    assert together == alone


def _read_sharing(headers, *keywords: str) -> None:
    """The headers read one after the other, as loading reads them: each given the values the
    ones before converted, then what reading `keywords` converted kept for the next."""
    shared = header.SharedValues()
    for ds in headers:
        unseen = shared.substitute(ds)
        for keyword in keywords:
            ds.get(keyword)
        shared.remember(ds, unseen)


def test_a_series_converts_a_value_its_slices_repeat_once(tmp_path: Path):
    """Three slices, the second in its own window and spacing: the size each slice repeats is
    converted once and shared, the window only by the slices that have it, and each frame
    has its own file's values."""
    source = pydicom.dcmread(bundled("CT_small.dcm"))
    for name, center, spacing in (("a", 40, 0.5), ("b", 400, 0.7), ("c", 40, 0.5)):
        source.SOPInstanceUID = source.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        source.WindowCenter, source.WindowWidth = center, 350
        source.PixelSpacing = [spacing, spacing]
        source.save_as(tmp_path / f"{name}.dcm", enforce_file_format=True)
    a, b, c = (header.read_header(tmp_path / f"{name}.dcm") for name in "abc")
    _read_sharing((a, b, c), "Rows", "WindowCenter")
    rows, center = header.tag("Rows"), header.tag("WindowCenter")
    assert a[rows] is b[rows] is c[rows]
    assert a[center] is c[center] and a[center] is not b[center]
    assert (a.WindowCenter, b.WindowCenter, c.WindowCenter) == (40, 400, 40)
    frames = load_study(tmp_path).series[0].frames
    assert sorted(f.windows[0].center for f in frames) == [40, 40, 400]
    assert sorted(f.geometry.pixel_spacing for f in frames) == [(0.5, 0.5)] * 2 + [(0.7, 0.7)]


def test_a_slice_whose_pixel_length_reads_as_a_vr_loads_as_saved(tmp_path: Path):
    """273 x 273 16-bit pixel data is 149 058 bytes: in Implicit VR its length's low bytes read
    'BB', a VR, so guessing the encoding at the pixel element misreads it. Told the file's
    encoding, both encodings load whole and show the pixels pydicom reads."""
    source = pydicom.dcmread(bundled("CT_small.dcm"))
    pixels = np.resize(source.pixel_array, (273, 273))
    for name, syntax in (
        ("implicit.dcm", ImplicitVRLittleEndian),
        ("explicit.dcm", ExplicitVRLittleEndian),
    ):
        source.SOPInstanceUID = source.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        source.Rows = source.Columns = 273
        source.PixelData = pixels.tobytes()
        source.file_meta.TransferSyntaxUID = syntax
        source.save_as(
            tmp_path / name,
            implicit_vr=syntax.is_implicit_VR,
            little_endian=True,
            enforce_file_format=True,
        )
    study = load_study(tmp_path)
    assert study.skipped == ()
    frames = study.series[0].frames
    assert len(frames) == 2
    for frame in frames:
        np.testing.assert_array_equal(frame.pixels, pixels)


def test_the_same_bytes_in_another_byte_order_are_another_value(tmp_path: Path):
    """256 rows little endian are the bytes of 1 row big endian: each file keeps its own."""
    source = pydicom.dcmread(bundled("CT_small.dcm"))
    for name, rows, syntax in (("le", 256, ExplicitVRLittleEndian), ("be", 1, ExplicitVRBigEndian)):
        source.SOPInstanceUID = source.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        source.Rows, source.Columns = rows, 1
        source.PixelData = np.zeros(rows, np.uint16).tobytes()
        source.file_meta.TransferSyntaxUID = syntax
        pydicom.dcmwrite(
            tmp_path / f"{name}.dcm",
            source,
            implicit_vr=False,
            little_endian=syntax.is_little_endian,
            force_encoding=True,  # another byte order than the one read
        )
    headers = [header.read_header(tmp_path / f"{name}.dcm") for name in ("le", "be")]
    _read_sharing(headers, "Rows")
    assert [ds.Rows for ds in headers] == [256, 1]


def test_sharing_converts_no_value_a_load_does_not_read(tmp_path: Path):
    """A file without pixel data is skipped before its frame count is read: its damaged count
    is never converted, so pydicom has nothing to warn about, sharing or not."""
    source = pydicom.dcmread(bundled("CT_small.dcm"))
    source.save_as(tmp_path / "image.dcm", enforce_file_format=True)
    source.SOPInstanceUID = source.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    del source.PixelData
    frames = header.tag("NumberOfFrames")
    source[frames] = RawDataElement(frames, "IS", 2, b"1A", 0, False, True)
    source.save_as(tmp_path / "no-pixels.dcm", enforce_file_format=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        study = load_study(tmp_path)
    [skipped] = study.skipped
    assert skipped.path.name == "no-pixels.dcm" and "no pixel data" in skipped.reason
    assert not [w for w in caught if "Invalid value for VR IS: '1A'" in str(w.message)]


def test_too_many_open_files_while_reading_a_value_is_not_the_files_damage(tmp_path, monkeypatch):
    """A value left in its file is read from it when asked for: an error of this machine then
    (no file descriptor left) is raised as it is, for a later try, not as the file's damage."""
    source = pydicom.dcmread(bundled("CT_small.dcm"))
    source.ImageComments = "x" * (header.HEAD_BYTES + 1)  # a header read from the file itself
    source.save_as(tmp_path / "long.dcm", enforce_file_format=True)
    ds = header.read_header(tmp_path / "long.dcm")

    def no_descriptor_left(*args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(pydicom.filereader, "read_deferred_data_element", no_descriptor_left)
    with pytest.raises(OSError) as raised:
        header.attribute(ds, "ImageComments")
    assert raised.value.errno == errno.EMFILE
