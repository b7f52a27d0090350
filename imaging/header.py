"""A DICOM file's header, read fast: a read loads hundreds of slices' headers and shows a few
of their images, so a header is parsed from the file's first bytes and its pixel data stays in
the file."""

from __future__ import annotations

import errno
import io
import re
import warnings
from functools import cache
from pathlib import Path
from struct import pack
from typing import BinaryIO

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.filereader import data_element_generator
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian
from pydicom.valuerep import DS, IS

from imaging.errors import BadInput


class UnreadableFile(BadInput):
    """One file cannot contribute frames; the reason is what the user sees. Loading skips the
    file with it; where nothing can skip it (a source a report cites), it is the user's error."""


# Values larger than this (the pixel data) stay in the file until something asks for them.
DEFER_BYTES = 16 * 1024


def read_header(file: Path) -> Dataset:
    """The file's attributes, values over DEFER_BYTES left in the file."""
    ds = _header(file)
    if ds.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        ds = parse(file)  # offsets in an inflated stream: nothing to defer
    return ds


# The attributes an image's pixels are in, one per kind of sample.
PIXEL_DATA = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def image_header(file: Path) -> Dataset:
    """An image file's attributes without its pixel data, for the objects that reference it."""
    return without_pixel_data(read_header(file))


def without_pixel_data(ds: Dataset) -> Dataset:
    """`ds` (as `read_header` gives it) less its pixel data. pydicom reads a file cut short to
    where it ends, silently: a header that ends before any pixel data is named as the damage it
    is."""
    pixels = pixel_tags(ds)
    if not pixels:
        raise UnreadableFile("cut short: the header ends before the pixel data")
    for element in pixels:
        del ds[element]
    return ds


def pixel_tags(ds: Dataset) -> list[BaseTag]:
    """The tags of the pixel data elements `ds` holds (none: not an image, or cut short)."""
    return [tag(keyword) for keyword in PIXEL_DATA if tag(keyword) in ds]


# A slice's header lies in the first few kilobytes of its file; a longer one is read from the file.
HEAD_BYTES = 64 * 1024
_PIXEL_TAGS = {  # PIXEL_DATA's tags as they start an element, in either byte order
    pack(f"{order}HH", pixels.group, pixels.element)
    for order in "<>"
    for pixels in map(Tag, PIXEL_DATA)
}


def _header(file: Path) -> Dataset:
    """The file's attributes, pixel data left in the file. The header is parsed from the file's
    first bytes, read at once: pydicom parses bytes in memory about twice as fast as a file
    object, whose every read and tell per element is a call down the I/O stack. The pixel data
    element on is then read from the file itself (only its position and length, or its frames'
    offsets, are kept). A header longer than HEAD_BYTES, or a file that does not parse so, is
    parsed from the file: what is wrong with it is named as before."""
    try:
        with open(file, "rb") as opened:
            head = opened.read(HEAD_BYTES)
            memory = io.BytesIO(head)
            ds = parse(memory, stop_before_pixels=True)
            at = memory.tell()  # where the pixel data element starts, if the header ended there
            if at == len(head) < HEAD_BYTES:
                return ds  # the whole file, without pixel data
            if head[at : at + 4] not in _PIXEL_TAGS:
                raise UnreadableFile("the header does not end at pixel data in the first bytes")
            ds.update(_pixel_elements(opened, at, ds))
            return ds
    except (OSError, UnreadableFile):  # longer than HEAD_BYTES, or damaged: read as a file
        return parse(file, defer_size=DEFER_BYTES)


def _pixel_elements(opened: BinaryIO, at: int, header: Dataset) -> Dataset:
    """The elements from offset `at` (the pixel data element) to the end of the file, large
    values left in the file. They are read in the header's encoding, as told: pydicom's
    read_dataset would guess it again from the first element, and an Implicit VR pixel data
    length whose low bytes are two capitals (149 058 bytes reads 'BB') passes for a VR."""
    implicit, little_endian = header.original_encoding
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opened.seek(at)
            read = data_element_generator(opened, implicit, little_endian, defer_size=DEFER_BYTES)
            elements = Dataset({element.tag: element for element in read})
    except Exception as exc:  # pydicom raises many types on damaged files
        if passing(exc):
            raise
        raise UnreadableFile(f"unreadable DICOM: {one_line(exc)}") from None
    if not elements:  # pydicom stopped at damage it only warns about
        raise UnreadableFile("the pixel data element does not read")
    return elements


@cache
def tag(keyword: str) -> BaseTag:
    """The tag of an attribute's keyword, looked up once."""
    return Tag(keyword)


def attribute(ds: Dataset, keyword: str, default=None):
    """`ds.get(keyword)` at a third of its cost: pydicom looks the keyword up on every call, and
    loading reads some 30 attributes from each of hundreds of headers. pydicom converts a value
    when it is first read: one it cannot convert makes the file unreadable, named here, whether
    pydicom raises (a binary value of the wrong length, a broken sequence) or, as its default
    reading validation does, keeps the text of a number that does not parse."""
    try:
        element = ds.get(tag(keyword))
    except BytesLengthException:
        raw = ds.get_item(tag(keyword), keep_deferred=True)
        raise UnreadableFile(
            f"damaged {keyword}: {raw.length} byte(s), not a whole number of {raw.VR} values"
        ) from None
    except Exception as exc:  # pydicom raises many types on a value it cannot convert
        if passing(exc):
            raise
        raise UnreadableFile(f"damaged {keyword}: {one_line(exc)}") from None
    if element is None:
        return default
    value = element.value
    number = _number(keyword)
    if number is None or not _text(value):
        return value
    convert, what = number
    try:  # a number stated under another VR, or text pydicom kept for want of a number
        return MultiValue(convert, value) if isinstance(value, MultiValue) else convert(value)
    except ValueError:
        text = "\\".join(map(str, value)) if isinstance(value, MultiValue) else value
        raise UnreadableFile(f"damaged {keyword}: {text!r} is not {what}") from None


@cache
def _number(keyword: str) -> tuple[type, str] | None:
    """What the standard makes an attribute's value when it is a number written as text (DS,
    IS), and its name: whatever VR a file states for it, its value must read as that number."""
    return {"DS": (DS, "a decimal number"), "IS": (IS, "an integer")}.get(
        dictionary_VR(tag(keyword))
    )


def _text(value) -> bool:
    """Whether a decimal or integer string's value is still text: stated under another VR, or
    kept by pydicom for want of a number (a blank value reads as '', no number stated)."""
    if isinstance(value, MultiValue):
        return any(isinstance(one, str) for one in value)
    return isinstance(value, str) and value != ""


# What loading reads from every slice that the slices of a series mostly repeat byte for byte.
# Text that the character set decodes is left out: the same bytes could read differently.
REPEATED = tuple(
    tag(keyword)
    for keyword in (
        "SOPClassUID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "Modality",
        "NumberOfFrames",
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "Rows",
        "Columns",
        "BitsAllocated",
        "PixelSpacing",
        "SliceThickness",
        "ImageOrientationPatient",
        "RescaleSlope",
        "RescaleIntercept",
        "WindowCenter",
        "WindowWidth",
    )
)


class SharedValues:
    """The REPEATED values of a load's headers, each converted once: pydicom's conversion of
    one value costs more than all that loading then does with it, and a header repeats the
    previous one's type, size, spacing, orientation, rescale and window. An element is shared
    only when its bytes and how they are encoded are those of one converted before, so what a
    header reads as, and what converting it would raise, is as without sharing (a conversion's
    warning comes once for the same bytes, not once a file). One element object then sits in
    several headers: loading only reads a header, never sets a value in it (pydicom would set
    it in that one object, so in every header sharing it)."""

    def __init__(self) -> None:
        self._converted: dict[tuple, DataElement] = {}

    def substitute(self, ds: Dataset) -> dict[BaseTag, tuple]:
        """Give `ds` the converted elements of values seen before; returns the others, for
        `remember` once the header has been read."""
        unseen = {}
        for repeated in REPEATED:
            raw = ds.get_item(repeated, keep_deferred=True)
            if not isinstance(raw, RawDataElement) or raw.value is None:
                continue  # absent, already converted, or left in the file
            key = (raw.tag, raw.VR, raw.is_implicit_VR, raw.is_little_endian, raw.value)
            if key in self._converted:
                ds[repeated] = self._converted[key]
            else:
                unseen[repeated] = key
        return unseen

    def remember(self, ds: Dataset, unseen: dict[BaseTag, tuple]) -> None:
        """Keep the elements of `unseen` that reading `ds` converted."""
        for repeated, key in unseen.items():
            element = ds.get_item(repeated, keep_deferred=True)
            if isinstance(element, DataElement):
                self._converted[key] = element


def parse(source: io.BytesIO | Path, **options) -> Dataset:
    """pydicom's dcmread, its many errors on a damaged file turned into the reason it is skipped."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(source, **options)
    except InvalidDicomError:
        raise UnreadableFile("not a DICOM Part 10 file (no 'DICM' preamble / file meta)") from None
    except Exception as exc:  # pydicom raises many types on damaged files
        if passing(exc):
            raise
        raise UnreadableFile(f"unreadable DICOM: {one_line(exc)}") from None


# Errors of this machine, not of a file: too many files open, no memory.
_PASSING = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOMEM))


def passing(exc: BaseException) -> bool:
    """An error of this machine met while reading a file, not the file's: it is raised as it
    is, for the caller to try again later, never turned into the reason the file is skipped.
    pydicom opens a file again to read a value left in it, so any read of a header can meet it."""
    return isinstance(exc, OSError) and exc.errno in _PASSING


# A UID is digits and dots, at most 64 characters (leading zeros, which the standard forbids,
# are common in old files).
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def looks_like_uid(text: str) -> bool:
    return len(text) <= 64 and _UID.fullmatch(text) is not None


def one_line(exc: Exception) -> str:
    """An exception's text on one line, as a skip reason is shown."""
    return " | ".join(line.strip() for line in str(exc).splitlines() if line.strip())
