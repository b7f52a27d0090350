"""A STOW-RS body (multipart/related; type="application/dicom"), split into its parts.

The whole body is parsed before any part is stored, so a malformed message stores nothing. The
parsing itself is python-multipart's (the parser Starlette uses for forms); each part is a view
into the body, not a copy of it, so a request holds its body once."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

DICOM = "application/dicom"
MAX_BOUNDARY = 200

# The parser logs the malformed bytes' position at WARNING; our answer (400) already says it.
logging.getLogger("python_multipart").setLevel(logging.ERROR)


class MalformedMultipart(ValueError):
    """The body is not a whole multipart/related message: answered with 400."""


class UnsupportedMedia(ValueError):
    """A multipart/related message of something other than DICOM files: answered with 415."""


@dataclass(frozen=True)
class Part:
    content_type: str  # the media type alone, lower case ("" when the part names none)
    data: bytes | memoryview  # a view into the body wherever the parser allows one


def boundary_of(content_type: str) -> bytes:
    """The boundary of a `multipart/related; type="application/dicom"` request."""
    media, options = parse_options_header(content_type)
    if media != b"multipart/related":
        raise UnsupportedMedia(
            f"Content-Type {media.decode(errors='replace')!r}: STOW-RS takes "
            f'multipart/related; type="{DICOM}"'
        )
    kind = options.get(b"type", DICOM.encode()).decode(errors="replace").lower()
    if kind != DICOM:
        raise UnsupportedMedia(f"multipart/related of {kind!r}: only {DICOM} parts are stored")
    boundary = options.get(b"boundary", b"")
    # RFC 2046 allows 70 characters; Orthanc's STOW client sends two UUIDs (73): be lenient.
    if not 1 <= len(boundary) <= MAX_BOUNDARY:
        raise MalformedMultipart(f"Content-Type has no boundary (or one over {MAX_BOUNDARY})")
    return boundary


def split(body: bytes | bytearray, boundary: bytes) -> list[Part]:
    """Every part of the body, or MalformedMultipart naming what is wrong with it."""
    parts: list[Part] = []
    headers: dict[str, str] = {}
    field, value = bytearray(), bytearray()
    pieces = _Pieces(body)
    ended = []

    def header_end() -> None:
        headers[field.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
        field.clear()
        value.clear()

    def part_begin() -> None:
        headers.clear()
        pieces.clear()

    def part_end() -> None:
        media = parse_options_header(headers.get("content-type", ""))[0]
        parts.append(Part(media.decode("latin-1").lower(), pieces.data()))

    parser = MultipartParser(
        boundary,
        callbacks={
            "on_part_begin": part_begin,
            "on_header_field": lambda b, s, e: field.extend(b[s:e]),
            "on_header_value": lambda b, s, e: value.extend(b[s:e]),
            "on_header_end": header_end,
            "on_part_data": pieces.add,
            "on_part_end": part_end,
            "on_end": lambda: ended.append(True),
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise MalformedMultipart(f"malformed multipart body: {exc}") from None
    if not ended:
        raise MalformedMultipart("multipart body ends before its closing boundary")
    if not parts:
        raise MalformedMultipart("multipart body holds no parts")
    return parts


class _Pieces:
    """The data of one part as the parser hands it over: adjacent ranges of the body merge
    into one view of it; a piece from the parser's own look-behind buffer is copied."""

    def __init__(self, body: bytes | bytearray) -> None:
        self._body, self._view = body, memoryview(body)
        self._ranges: list[tuple[int, int] | bytes] = []

    def clear(self) -> None:
        self._ranges.clear()

    def add(self, buffer: bytes, start: int, end: int) -> None:
        if buffer is not self._body:
            self._ranges.append(bytes(buffer[start:end]))
        elif self._ranges and isinstance(self._ranges[-1], tuple) and self._ranges[-1][1] == start:
            self._ranges[-1] = (self._ranges[-1][0], end)
        elif end > start:
            self._ranges.append((start, end))

    def data(self) -> bytes | memoryview:
        chunks = [self._view[r[0] : r[1]] if isinstance(r, tuple) else r for r in self._ranges]
        if len(chunks) == 1 and isinstance(chunks[0], memoryview):
            return chunks[0]
        return b"".join(chunks)
