"""The walk that decides whether a received dataset is whole, on pydicom's own files."""

from __future__ import annotations

from io import BytesIO

import pydicom
import pytest
from pydicom.filereader import data_element_generator
from pydicom.uid import DeflatedExplicitVRLittleEndian

from dicom_gateway.dataset_check import MAX_DEPTH, MalformedDataset, check_dataset
from tests.support import bundled

WHOLE = [
    "CT_small.dcm",  # explicit VR little endian
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "image_dfl.dcm",  # deflated
    "SC_rgb_jpeg_dcmtk.dcm",  # encapsulated, one frame
    "emri_small_jpeg_2k_lossless.dcm",  # encapsulated, ten frames
    "SC_ybr_full_422_uncompressed.dcm",  # native YBR_FULL_422: two thirds of RGB
    "liver_1frame.dcm",  # 1-bit SEG
    "SC_rgb_jpeg.dcm",  # implicit VR under an explicit transfer syntax, as pydicom reads it
    "test-SR.dcm",  # nested sequences
]


@pytest.mark.parametrize("name", WHOLE)
def test_whole_files_pass(name):
    check_dataset(bundled(name).read_bytes())


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("MR_truncated.dcm", "(7FE0,0010) declares 8192 bytes, only 8130 remain"),
        ("rtplan_truncated.dcm", "(300A,00B0) declares 976 bytes, only 711 remain"),
    ],
)
def test_pydicoms_truncated_files_are_malformed(name, reason):
    with pytest.raises(MalformedDataset) as refused:
        check_dataset(bundled(name).read_bytes())
    assert str(refused.value) == reason


def test_short_native_pixel_data_is_malformed(tmp_path):
    ds = pydicom.dcmread(bundled("CT_small.dcm"))
    ds.PixelData = ds.PixelData[:-512]  # consistent framing, too few pixels for 128 x 128
    ds.save_as(tmp_path / "short.dcm", enforce_file_format=True)
    with pytest.raises(
        MalformedDataset, match="Pixel Data holds 32256 bytes, the image needs 32768"
    ):
        check_dataset((tmp_path / "short.dcm").read_bytes())


def test_encapsulated_pixel_data_cut_before_its_delimiter_is_malformed():
    data = bundled("SC_rgb_jpeg_dcmtk.dcm").read_bytes()
    with pytest.raises(MalformedDataset, match="cut short"):
        check_dataset(data[: len(data) - 200])


def test_a_deflated_dataset_cut_short_is_malformed():
    data = bundled("image_dfl.dcm").read_bytes()
    assert pydicom.dcmread(bundled("image_dfl.dcm")).file_meta.TransferSyntaxUID == (
        DeflatedExplicitVRLittleEndian
    )
    with pytest.raises(MalformedDataset):
        check_dataset(data[: len(data) - 100])


def test_nesting_is_bounded_without_recursion():
    data = bundled("CT_small.dcm").read_bytes()
    pixel_at = data.index(b"\xe0\x7f\x10\x00")
    down = b"\x40\x00\x30\xa7SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    up = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    for depth, whole in ((MAX_DEPTH, True), (MAX_DEPTH + 1, False), (100_000, False)):
        nested = data[:pixel_at] + down * depth + up * depth
        if whole:
            check_dataset(nested)
        else:
            with pytest.raises(MalformedDataset, match=f"nested deeper than {MAX_DEPTH}"):
                check_dataset(nested)


@pytest.mark.parametrize(
    ("meta", "reason"),
    [
        (b"\x02\x00\x01\x00OB\x00\x00\x02", "cut short"),  # a long-VR header stops after 9 bytes
        (b"\x02\x00\x10\x00UI\x04\x00\xff\xfe12", "not a UID"),
    ],
)
def test_damaged_file_meta_is_malformed_not_a_crash(meta, reason):
    with pytest.raises(MalformedDataset, match=reason):
        check_dataset(b"\x00" * 128 + b"DICM" + meta)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_implicit.dcm", "test-SR.dcm"])
def test_a_dataset_cut_anywhere_but_between_two_elements_is_malformed(name):
    data = bundled(name).read_bytes()
    ds = pydicom.dcmread(bundled(name))
    assert check_dataset(data) == {
        **{
            keyword: ds[keyword].value
            for keyword in (
                "StudyInstanceUID",
                "SeriesInstanceUID",
                "SOPClassUID",
                "SOPInstanceUID",
            )
        },
        **{
            keyword: ds.file_meta[keyword].value
            for keyword in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID")
        },
    }
    # Where each top-level element ends, as pydicom read it: a cut there leaves a shorter,
    # whole dataset (its pixels, if any, missing); a cut at any other byte leaves a broken one.
    start = 132 + 12 + ds.file_meta.FileMetaInformationGroupLength
    syntax = ds.file_meta.TransferSyntaxUID
    raws = list(
        data_element_generator(
            BytesIO(data[start:]), syntax.is_implicit_VR, syntax.is_little_endian
        )
    )
    ends = {start + raw.value_tell + raw.length for raw in raws}
    assert all(raw.length != 0xFFFFFFFF for raw in raws)  # every top-level length is defined
    for cut in range(start + 1, len(data)):
        if cut in ends:
            continue
        with pytest.raises(MalformedDataset):
            check_dataset(data[:cut])


def test_an_item_delimiter_at_the_top_level_is_malformed():
    data = bundled("CT_small.dcm").read_bytes()
    at = data.index(b"\x08\x00\x16\x00UI")  # (0008,0016) SOP Class UID: an element, replaced
    garbled = data[:at] + b"\xfe\xff\x0d\xe0" + data[at + 4 :]
    with pytest.raises(MalformedDataset, match=r"unexpected \(FFFE,E00D\) inside a dataset"):
        check_dataset(garbled)
