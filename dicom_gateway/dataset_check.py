"""Is a received dataset whole? One walk over its element framing, before it is acknowledged.

A C-STORE is answered with success only for a dataset that parses to its end: every element
header complete, every value inside the bytes that were sent and inside its sequence or item,
every sequence and item closed, and a Pixel Data long enough for the image its attributes
describe. Values are skipped, never decoded (no pixels, no character sets), so the walk costs
microseconds per instance; it is iterative, so thousands of nested sequences cannot exhaust the
interpreter's stack the way a recursive parser's does."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from functools import lru_cache

from pydicom.datadict import dictionary_VR
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    MPEGTransferSyntaxes,
)

MAX_DEPTH = 32  # nested sequences; real objects (SR, RT, SEG) stay well under 10
# A deflated dataset that grows beyond this is refused, not inflated: with max_associations at
# 16 a deflate bomb could otherwise hold 16 GiB. Deflate is a transfer syntax for small objects
# (SR, presentation states); images travel uncompressed or as JPEG/JPEG 2000.
MAX_INFLATED = 256 << 20

ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF
PIXEL_DATA = 0x7FE00010
PIXEL_TAGS = (0x7FE00008, 0x7FE00009, PIXEL_DATA)  # Float, Double Float, Pixel Data
TRANSFER_SYNTAX = 0x00020010
# Attributes of the Image Pixel module that say how long native Pixel Data must be.
IDENTITY_TAGS = {
    0x0020000D: "StudyInstanceUID",
    0x0020000E: "SeriesInstanceUID",
    0x00080016: "SOPClassUID",
    0x00080018: "SOPInstanceUID",
}
# What the file meta says the data set is: for a C-STORE, what its command said.
META_IDENTITY_TAGS = {
    0x00020002: "MediaStorageSOPClassUID",
    0x00020003: "MediaStorageSOPInstanceUID",
}
IMAGE_TAGS = {
    0x00280002: "SamplesPerPixel",
    0x00280004: "PhotometricInterpretation",
    0x00280008: "NumberOfFrames",
    0x00280010: "Rows",
    0x00280011: "Columns",
    0x00280100: "BitsAllocated",
}
# Top-level elements the walk reads a value of, or steps into: the general path takes them.
NOTED = frozenset((*IDENTITY_TAGS, *IMAGE_TAGS, *PIXEL_TAGS))
LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
# Video streams span frames: their fragments need not number at least one per frame.
VIDEO = frozenset(MPEGTransferSyntaxes)


class MalformedDataset(ValueError):
    """The received bytes do not form a whole dataset; the message is the one-line reason."""


@dataclass(frozen=True)
class _Syntax:
    little: bool
    explicit: bool

    def u16(self, buf, pos: int) -> int:
        return struct.unpack_from("<H" if self.little else ">H", buf, pos)[0]

    def u32(self, buf, pos: int) -> int:
        return struct.unpack_from("<L" if self.little else ">L", buf, pos)[0]

    def tag(self, buf, pos: int) -> int:
        group, element = struct.unpack_from("<HH" if self.little else ">HH", buf, pos)
        return group << 16 | element


# An explicit VR element header (group, element, VR, 16-bit length), and a 32-bit length.
_HEADERS = {True: struct.Struct("<HH2sH"), False: struct.Struct(">HH2sH")}
_LENGTHS = {True: struct.Struct("<L"), False: struct.Struct(">L")}


@dataclass
class _Level:
    """A dataset, sequence or item being walked; `end` is None for an undefined length."""

    kind: str
    end: int | None
    limit: int  # the nearest defined end around it: nothing inside may pass it
    syntax: _Syntax


@dataclass
class _Found:
    identity: dict[str, bytes] = field(default_factory=dict)
    image: dict[str, bytes] = field(default_factory=dict)
    pixel_tag: int | None = None
    pixel_length: int = 0
    encapsulated: bool = False
    fragments: int = 0  # encapsulated: items after the Basic Offset Table


def check_dataset(encoded: bytes) -> dict[str, str]:
    """Raise MalformedDataset unless `encoded` (file meta + dataset, as received) is whole;
    return its top-level Study, Series, SOP Class and SOP Instance UIDs and the SOP class and
    instance its file meta names, by keyword (as sent, unchecked), so that the spool needs no
    second parse."""
    transfer_syntax, start, sent_as = _file_meta(encoded)
    body = memoryview(encoded)[start:]
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        body = memoryview(_inflate(body))
    explicit = transfer_syntax != ImplicitVRLittleEndian
    if explicit and len(body) >= 6 and not bytes(body[4:6]).isalpha():
        explicit = False  # implicit VR under an explicit context: read it as pydicom does
    syntax = _Syntax(little=transfer_syntax != ExplicitVRBigEndian, explicit=explicit)
    found = _walk(body, syntax)
    _check_pixels(found, transfer_syntax)
    identity = {**sent_as, **found.identity}
    return {k: v.decode("ascii", "replace").strip("\x00 ") for k, v in identity.items()}


def _file_meta(encoded: bytes) -> tuple[str, int, dict[str, bytes]]:
    """The transfer syntax, where the dataset starts, and the SOP class and instance the file
    meta names (by keyword), from the (explicit VR LE) file meta."""
    if len(encoded) < 132 or encoded[128:132] != b"DICM":
        raise MalformedDataset("no DICOM file meta information")
    meta = _Syntax(little=True, explicit=True)
    pos, transfer_syntax, sent_as = 132, None, {}
    while pos + 8 <= len(encoded) and encoded[pos : pos + 2] == b"\x02\x00":
        tag = meta.tag(encoded, pos)
        if bytes(encoded[pos + 4 : pos + 6]) in LONG_VRS:
            if pos + 12 > len(encoded):
                raise MalformedDataset(f"file meta element {_name(tag)} is cut short")
            length, pos = meta.u32(encoded, pos + 8), pos + 12
        else:
            length, pos = meta.u16(encoded, pos + 6), pos + 8
        if pos + length > len(encoded):
            raise MalformedDataset(f"file meta element {_name(tag)} is cut short")
        if tag == TRANSFER_SYNTAX:
            value = bytes(encoded[pos : pos + length]).strip(b"\x00 ")
            if not value.isascii():
                raise MalformedDataset("the Transfer Syntax UID is not a UID")
            transfer_syntax = value.decode("ascii")
        elif tag in META_IDENTITY_TAGS:
            sent_as[META_IDENTITY_TAGS[tag]] = bytes(encoded[pos : pos + length])
        pos += length
    if not transfer_syntax:
        raise MalformedDataset("no Transfer Syntax UID in the file meta information")
    return transfer_syntax, pos, sent_as


def _inflate(body: memoryview) -> bytes:
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, MAX_INFLATED)
    except zlib.error as exc:
        raise MalformedDataset(f"deflated dataset does not inflate: {exc}") from None
    if inflater.unconsumed_tail:
        raise MalformedDataset(f"deflated dataset inflates beyond {MAX_INFLATED >> 20} MiB")
    if not inflater.eof:
        raise MalformedDataset("deflated dataset is cut short")
    return data


def _walk(buf: memoryview, syntax: _Syntax) -> _Found:
    """Every element's framing, depth first, without recursion; the top level's image facts
    and identity."""
    found = _Found()
    stack = [_Level("dataset", len(buf), len(buf), syntax)]
    pos = 0
    while stack:
        level = stack[-1]
        if level.end is not None and pos >= level.end:
            if pos > level.end:
                raise MalformedDataset(
                    f"an element runs {pos - level.end} bytes past its {level.kind}"
                )
            stack.pop()
            continue
        if len(stack) == 1 and level.syntax.explicit:
            pos = _top_level(buf, pos, stack, found)
            continue
        if pos + 8 > level.limit:
            raise MalformedDataset(f"truncated element header at byte {pos}")
        tag = level.syntax.tag(buf, pos)
        if level.kind == "sequence":
            pos = _enter_item(buf, pos, tag, stack)
        elif tag == ITEM_END and level.kind == "item" and level.end is None:
            stack.pop()
            pos += 8
        elif tag >> 16 == 0xFFFE:
            raise MalformedDataset(f"unexpected {_name(tag)} inside a {level.kind}")
        else:
            pos = _element(buf, pos, tag, stack, found)
        if len(stack) > 2 * MAX_DEPTH + 1:
            raise MalformedDataset(f"sequences nested deeper than {MAX_DEPTH}")
    return found


def _top_level(buf: memoryview, pos: int, stack: list[_Level], found: _Found) -> int:
    """The explicit VR top level, element after element with one unpack each, until it ends or
    an element the general path must take comes (a sequence, an undefined length, a value the
    walk reads): the same checks as `_element`, in fewer calls (most of a dataset is here)."""
    level = stack[0]
    end = level.end
    header, lengths = _HEADERS[level.syntax.little], _LENGTHS[level.syntax.little]
    while pos < end:
        if pos + 8 > end:
            raise MalformedDataset(f"truncated element header at byte {pos}")
        group, element, vr, length = header.unpack_from(buf, pos)
        tag = group << 16 | element
        if group == 0xFFFE:
            raise MalformedDataset(f"unexpected {_name(tag)} inside a dataset")
        if vr == b"SQ" or tag in NOTED:
            return _element(buf, pos, tag, stack, found)
        start = pos + 8
        if vr in LONG_VRS:
            if pos + 12 > end:
                raise MalformedDataset(f"truncated header of {_name(tag)}")
            length, start = lengths.unpack_from(buf, start)[0], pos + 12
            if length == UNDEFINED:
                return _element(buf, pos, tag, stack, found)
        pos = start + length
        if pos > end:
            raise MalformedDataset(
                f"{_name(tag)} declares {length} bytes, only {end - start} remain"
            )
    return pos


def _enter_item(buf: memoryview, pos: int, tag: int, stack: list[_Level]) -> int:
    level = stack[-1]
    length = level.syntax.u32(buf, pos + 4)
    if tag == SEQUENCE_END and level.end is None:
        stack.pop()
        return pos + 8
    if tag != ITEM:
        raise MalformedDataset(f"{_name(tag)} where a sequence item was expected")
    start = pos + 8
    if length == UNDEFINED:
        stack.append(_Level("item", None, level.limit, level.syntax))
    elif start + length > level.limit:
        raise MalformedDataset(
            f"a sequence item declares {length} bytes, {level.limit - start} remain"
        )
    else:
        stack.append(_Level("item", start + length, start + length, level.syntax))
    return start


def _element(buf: memoryview, pos: int, tag: int, stack: list[_Level], found: _Found) -> int:
    """Step over one element (entering it when it is a sequence); returns where the next starts."""
    level = stack[-1]
    syntax = level.syntax
    vr = bytes(buf[pos + 4 : pos + 6]) if syntax.explicit else None
    if vr is None:
        length, start = syntax.u32(buf, pos + 4), pos + 8
    elif vr in LONG_VRS:
        if pos + 12 > level.limit:
            raise MalformedDataset(f"truncated header of {_name(tag)}")
        length, start = syntax.u32(buf, pos + 8), pos + 12
    else:
        length, start = syntax.u16(buf, pos + 6), pos + 8
    top = len(stack) == 1
    if length == UNDEFINED:
        if tag in PIXEL_TAGS:
            return _fragments(buf, start, level, found if top else _Found())
        # An SQ, or an UN of undefined length: its items are implicit VR little endian.
        inner = _Syntax(True, False) if vr == b"UN" else syntax
        stack.append(_Level("sequence", None, level.limit, inner))
        return start
    end = start + length
    if end > level.limit:
        raise MalformedDataset(
            f"{_name(tag)} declares {length} bytes, only {level.limit - start} remain"
        )
    if vr == b"SQ" or (vr is None and _is_sequence(tag)):
        stack.append(_Level("sequence", end, end, syntax))
        return start
    if top and tag in IMAGE_TAGS:
        found.image[IMAGE_TAGS[tag]] = bytes(buf[start:end])
    elif top and tag in IDENTITY_TAGS:
        found.identity[IDENTITY_TAGS[tag]] = bytes(buf[start:end])
    elif top and tag in PIXEL_TAGS:
        found.pixel_tag, found.pixel_length = tag, length
    return end


def _fragments(buf: memoryview, pos: int, level: _Level, found: _Found) -> int:
    """Encapsulated Pixel Data: items of defined length up to a sequence delimiter."""
    syntax, count = level.syntax, 0
    while True:
        if pos + 8 > level.limit:
            raise MalformedDataset("encapsulated Pixel Data is cut short")
        tag, length = syntax.tag(buf, pos), syntax.u32(buf, pos + 4)
        pos += 8
        if tag == SEQUENCE_END:
            found.pixel_tag, found.encapsulated = PIXEL_DATA, True
            found.fragments = max(count - 1, 0)
            return pos
        if tag != ITEM or length == UNDEFINED or pos + length > level.limit:
            raise MalformedDataset(f"Pixel Data fragment {count} is malformed or cut short")
        pos += length
        count += 1


@lru_cache(maxsize=4096)  # a dataset names a few hundred tags; a hostile one, any
def _is_sequence(tag: int) -> bool:
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return False


def _check_pixels(found: _Found, transfer_syntax: str) -> None:
    if found.pixel_tag is None:
        return
    image = _image(found, transfer_syntax)
    if not found.encapsulated:
        expected = _expected_length(image) if image is not None else None
        if expected is not None and found.pixel_length < expected:
            raise MalformedDataset(
                f"Pixel Data holds {found.pixel_length} bytes, the image needs {expected}"
            )
        return
    if found.fragments == 0:
        raise MalformedDataset("encapsulated Pixel Data has no fragment")
    frames = image.NumberOfFrames if image is not None else 1
    if transfer_syntax not in VIDEO and found.fragments < frames:
        raise MalformedDataset(f"{found.fragments} Pixel Data fragments for {frames} frames")


@dataclass(frozen=True)
class _ImagePixel:
    """The Image Pixel attributes pydicom's `get_expected_length` reads, by their keywords:
    no pydicom dataset to build for each received instance."""

    Rows: int
    Columns: int
    SamplesPerPixel: int
    BitsAllocated: int
    PhotometricInterpretation: str
    NumberOfFrames: int


def _image(found: _Found, transfer_syntax: str) -> _ImagePixel | None:
    """The Image Pixel attributes, or None when one is missing or garbled."""
    little = transfer_syntax != ExplicitVRBigEndian
    raw = found.image
    try:
        rows, columns, samples, bits = (
            struct.unpack("<H" if little else ">H", raw[keyword][:2])[0]
            for keyword in ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated")
        )
        photometric = raw["PhotometricInterpretation"].decode().strip("\0 ")
        frames = int(raw.get("NumberOfFrames", b"1").decode().strip("\0 ") or "1")
    except (KeyError, ValueError, UnicodeDecodeError, struct.error):
        return None  # cannot be judged here; the read says what is wrong with such an image
    return _ImagePixel(rows, columns, samples, bits, photometric, frames)


def _expected_length(image: _ImagePixel) -> int | None:
    if image.BitsAllocated % 8 and image.BitsAllocated != 1:
        return None
    return get_expected_length(image, unit="bytes")


def _name(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
