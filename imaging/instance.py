"""One DICOM instance becomes its frames, from its header alone: each frame's pixels are read and
decoded from the file when something first looks at them (a read shows a few slices of hundreds)."""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from types import MappingProxyType

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, get_decoder, pixel_array
from pydicom.pixels.utils import get_expected_length

from imaging.errors import NoReadableImages
from imaging.frame import Frame, Geometry, ImageRef, stated_directions
from imaging.header import (
    DEFER_BYTES,
    SharedValues,
    UnreadableFile,
    attribute,
    looks_like_uid,
    one_line,
    parse,
    pixel_tags,
    read_header,
    tag,
)
from imaging.video import VIDEO_SYNTAXES, Timeline, Video, VideoError, VideoTimeline, frame_rate
from imaging.windowing import Window

# The Manufacturer of every object a read writes: one found in a study is a result of an earlier
# read (sent to a PACS, which routed the study back), its overlays burned in, never a source.
OUR_MANUFACTURER = "edge-agent"
# Objects that carry Pixel Data but are not images to read: derived results and dose grids.
NOT_SOURCE_IMAGES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation Storage",
    "1.2.840.10008.5.1.4.1.1.481.2": "RT Dose Storage",
}


class UndecodablePixels(NoReadableImages):
    """A file whose header read but whose pixel data does not decode, found when one of its
    frames is first looked at: the file, its instance, and the reason it is skipped with."""

    def __init__(self, file: Path, sop_instance_uid: str, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.sop_instance_uid = sop_instance_uid
        self.reason = reason


@dataclass(frozen=True)
class SeriesHeader:
    """What a series is known by, from the header of any of its instances."""

    uid: str
    modality: str
    number: int | None
    description: str
    image_type: tuple[str, ...]

    @classmethod
    def of(cls, ds: Dataset) -> SeriesHeader:
        return cls(
            uid=str(attribute(ds, "SeriesInstanceUID")),
            modality=str(attribute(ds, "Modality", "OT")),
            number=int_or_none(attribute(ds, "SeriesNumber")),
            description=str(attribute(ds, "SeriesDescription", "")),
            image_type=tuple(str(v) for v in _as_list(attribute(ds, "ImageType"))),
        )


@dataclass(frozen=True)
class InstanceRead:
    """One file as loading keeps it: the values it is grouped by and its frames; not its header
    (hundreds of slices' headers held to the end of a read only cost memory and collector
    time; a frame's pixels are read from the file again when it is first looked at)."""

    study_uid: str
    sop_instance_uid: str
    series: SeriesHeader
    frames: list[Frame]
    video: Timeline | None = None

    @classmethod
    def of(
        cls, ds: Dataset, known: Known, frames: list[Frame], video: Timeline | None = None
    ) -> InstanceRead:
        series = known.get(str(attribute(ds, "SeriesInstanceUID"))) or SeriesHeader.of(ds)
        study, instance = attribute(ds, "StudyInstanceUID"), attribute(ds, "SOPInstanceUID")
        return cls(str(study), str(instance), series, frames, video)


# Series already met while loading, by UID: a series is known by its first instance's header
# (what grouping always took), so the others' series attributes are not read at all.
Known = Mapping[str, SeriesHeader]


def read_instance(
    file: Path, known: Known = MappingProxyType({}), shared: SharedValues | None = None
) -> InstanceRead:
    """One file's frames; `known` and `shared` carry what a load met in the files before (the
    header is read, never written: its elements may be shared with other files')."""
    ds = read_header(file)
    video = ds.file_meta.get("TransferSyntaxUID") in VIDEO_SYNTAXES
    if video:
        ds = parse(file, defer_size=DEFER_BYTES)  # the stream is read from the file, now
    shared = shared if shared is not None else SharedValues()
    unseen = shared.substitute(ds)
    read = _instance(ds, file, known, video)
    shared.remember(ds, unseen)
    return read


def _instance(ds: Dataset, file: Path, known: Known, video: bool) -> InstanceRead:
    sop_class = str(attribute(ds, "SOPClassUID", ""))
    if not pixel_tags(ds):
        name = getattr(attribute(ds, "SOPClassUID"), "name", sop_class) or "unknown SOP class"
        raise UnreadableFile(f"no pixel data ({name}), not an image")
    if sop_class in NOT_SOURCE_IMAGES:
        raise UnreadableFile(f"{NOT_SOURCE_IMAGES[sop_class]} is not a source image")
    if attribute(ds, "Manufacturer") == OUR_MANUFACTURER:
        raise UnreadableFile("made by edge-agent (a result of a read), not a source image")
    _check_uids(ds)
    if video:
        return _read_video(ds, known)
    _check_decodable(ds, file)
    stored = _StoredPixels(file, _Identity.of(ds))
    return InstanceRead.of(ds, known, _frames(ds, stored.frame))


# Read without them: an image of an unknown class, an image not placed in the patient.
_OPTIONAL_UIDS = ("SOPClassUID", "FrameOfReferenceUID")


def _check_uids(ds: Dataset) -> None:
    """The UIDs a file is grouped and referenced by are there and are UIDs: garbage in one would
    make it a study or series of its own, or a reference no PACS resolves (the outputs copy the
    Frame of Reference UID)."""
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", *_OPTIONAL_UIDS):
        uid = attribute(ds, keyword)
        if not uid:
            if keyword in _OPTIONAL_UIDS:
                continue
            raise UnreadableFile(f"missing {keyword}")
        if not looks_like_uid(uid):
            raise UnreadableFile(f"damaged {keyword}: {str(uid)!r} is not a UID")


def _check_decodable(ds: Dataset, file: Path) -> None:
    """What decoding would refuse, found from the header alone: a transfer syntax without a
    decoder here, or native pixel data shorter than its rows, columns and frames need."""
    syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as exc:
        raise UnreadableFile(
            f"transfer syntax {syntax} has no available decoder ({one_line(exc)})"
        ) from None
    if not decoder.is_available:
        missing = "; ".join(f"{k}: {v}" for k, v in decoder.missing_dependencies.items())
        raise UnreadableFile(f"transfer syntax {syntax} has no available decoder ({missing})")
    if not decoder.is_native or tag("PixelData") not in ds:
        return
    for keyword in ("Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "BitsAllocated"):
        attribute(ds, keyword)  # a damaged one is named as such, not as the pixels' length
    try:
        expected = get_expected_length(ds)
    except Exception as exc:  # Rows, Columns or Bits Allocated missing or damaged
        raise UnreadableFile(f"pixel data cannot be decoded ({syntax}): {one_line(exc)}") from None
    element = ds.get_item(tag("PixelData"), keep_deferred=True)
    if element.value is not None:
        present = len(element.value)
    else:  # a deferred value: what the file really holds of its stated length
        present = min(element.length, file.stat().st_size - element.value_tell)
    if present < expected:
        raise UnreadableFile(
            f"pixel data cannot be decoded ({syntax}): The number of bytes of pixel data is "
            f"less than expected ({present} vs {expected} bytes)"
        )


@dataclass(frozen=True)
class _Identity:
    """What a file's frames were made from at load: the file read again to show them must still
    be that instance with that image size and frame count, or its pixels are not shown."""

    sop_instance_uid: str
    rows: int | None
    columns: int | None
    frames: int
    transfer_syntax: str

    @classmethod
    def of(cls, ds: Dataset) -> _Identity:
        return cls(
            sop_instance_uid=str(attribute(ds, "SOPInstanceUID", "")),
            rows=int_or_none(attribute(ds, "Rows")),
            columns=int_or_none(attribute(ds, "Columns")),
            frames=frame_count(ds),
            transfer_syntax=str(ds.file_meta.get("TransferSyntaxUID", "")),
        )

    def check(self, ds: Dataset) -> None:
        """Raise when `ds` is not what was loaded: a file replaced since (another image under
        the loaded instance's identity, or frames it no longer has)."""
        now = _Identity.of(ds)
        changed = [
            f"{name} {getattr(self, name)} is now {getattr(now, name)}"
            for name in (f.name for f in fields(self))
            if getattr(self, name) != getattr(now, name)
        ]
        if changed:
            raise UnreadableFile(f"changed since it was loaded: {'; '.join(changed)}")


class _StoredPixels:
    """One file's pixel data, read and decoded when one of its frames is first looked at; all of
    a multi-frame object's frames come from that one decode. The file is read again then, whole:
    a read looks at a few files of hundreds, and keeps no header of the others meanwhile."""

    def __init__(self, file: Path, identity: _Identity) -> None:
        self._file = file
        self._identity = identity
        self._array: np.ndarray | None = None
        self._failed: UndecodablePixels | None = None  # a damaged file is decoded once
        self._lock = threading.Lock()

    def frame(self, index: int) -> np.ndarray:
        with self._lock:
            if self._failed is not None:
                raise self._failed
            if self._array is None:
                try:
                    self._array = self._decoded()
                except UnreadableFile as exc:  # a damaged compressed frame, found when shown
                    self._failed = UndecodablePixels(
                        self._file, self._identity.sop_instance_uid, str(exc)
                    )
                    raise self._failed from None
        return self._array[index]

    def _decoded(self) -> np.ndarray:
        ds = parse(self._file)  # whole: what made it unreadable since it was loaded is why
        self._identity.check(ds)
        pixels = _decode(ds)
        colour = _is_colour(ds)
        if frame_count(ds) == 1 or pixels.ndim == (3 if colour else 2):
            pixels = pixels[np.newaxis]
        return pixels


def _read_video(ds: Dataset, known: Known) -> InstanceRead:
    """A DICOM video is demuxed now and decoded frame by frame when a tool asks for a time."""
    try:
        video = Video.from_dicom(ds)
        blank = np.zeros((int(ds.Rows), int(ds.Columns), 3), np.uint8)
        # One pattern frame for references and geometry; its pixels come from the video.
        [pattern] = _frames(ds, lambda _: blank, count=1)
        timeline = VideoTimeline.open(video, pattern)
    except VideoError as exc:
        raise UnreadableFile(f"video: {exc}") from None
    except Exception as exc:  # broken encapsulation, missing Rows/Columns, ...
        raise UnreadableFile(f"video: unreadable ({one_line(exc)})") from None
    return InstanceRead.of(ds, known, [timeline.first], timeline)


def _decode(ds: Dataset) -> np.ndarray:
    syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = pixel_array(ds)
    except NotImplementedError as exc:
        raise UnreadableFile(
            f"transfer syntax {syntax} has no available decoder ({one_line(exc)})"
        ) from None
    except Exception as exc:
        raise UnreadableFile(f"pixel data cannot be decoded ({syntax}): {one_line(exc)}") from None
    if attribute(ds, "PhotometricInterpretation") == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
        pixels = (pixels >> 8).astype(np.uint8) if pixels.dtype != np.uint8 else pixels
    return pixels


def _is_colour(ds: Dataset) -> bool:
    return int(attribute(ds, "SamplesPerPixel", 1)) == 3 or (
        attribute(ds, "PhotometricInterpretation") == "PALETTE COLOR"
    )


def _frames(ds: Dataset, pixels: Callable[[int], np.ndarray], count: int = 0) -> list[Frame]:
    """The first `count` frames of one instance (default: all), from its header; frame i's
    pixels are `pixels(i)`, asked for when something first looks at them."""
    count = count or frame_count(ds)
    colour = _is_colour(ds)
    times = _frame_times(ds, count)
    photometric = (
        "RGB" if colour else str(attribute(ds, "PhotometricInterpretation", "MONOCHROME2"))
    )
    instance = {  # what every frame of the instance shares
        "sop_instance_uid": str(attribute(ds, "SOPInstanceUID")),
        "sop_class_uid": str(attribute(ds, "SOPClassUID", "")),
        "series_instance_uid": str(attribute(ds, "SeriesInstanceUID")),
        "study_instance_uid": str(attribute(ds, "StudyInstanceUID")),
    }
    modality = str(attribute(ds, "Modality", "OT"))
    instance_number = int_or_none(attribute(ds, "InstanceNumber"))
    frames = []
    for i in range(count):
        attrs = _FrameAttributes(ds, i)
        frames.append(
            Frame(
                ref=ImageRef(frame=i + 1, **instance),
                pixels=partial(pixels, i),
                geometry=attrs.geometry(),
                modality=modality,
                photometric=photometric,
                slope=attrs.float("PixelValueTransformationSequence", "RescaleSlope", 1.0),
                intercept=attrs.float("PixelValueTransformationSequence", "RescaleIntercept", 0.0),
                windows=() if colour else attrs.windows(),
                time_s=times[i] if times else None,
                instance_number=instance_number,
            )
        )
    return frames


def frame_geometry(ds: Dataset, frame: int) -> Geometry:
    """Where frame `frame` (from 1) of an instance lies, from its header alone: what a derived
    object needs when the pixels are not loaded."""
    return _FrameAttributes(ds, frame - 1).geometry()


class _FrameAttributes:
    """Attributes of frame i: per-frame functional group, then shared group, then top level."""

    def __init__(self, ds: Dataset, index: int) -> None:
        self._ds = ds
        self._groups: list[Dataset] = []
        per_frame = attribute(ds, "PerFrameFunctionalGroupsSequence")
        if per_frame and index < len(per_frame):
            self._groups.append(per_frame[index])
        shared = attribute(ds, "SharedFunctionalGroupsSequence")
        if shared:
            self._groups.append(shared[0])

    def get(self, sequence: str, keyword: str):
        for group in self._groups:
            items = attribute(group, sequence)
            if items and tag(keyword) in items[0]:
                return attribute(items[0], keyword)
        return attribute(self._ds, keyword)

    def float(self, sequence: str, keyword: str, default: float) -> float:
        value = self.get(sequence, keyword)
        return float(value) if value not in (None, "") else default

    def geometry(self) -> Geometry:
        spacing = self.get("PixelMeasuresSequence", "PixelSpacing") or _detector_spacing(self._ds)
        position = self.get("PlanePositionSequence", "ImagePositionPatient")
        orientation = self.get("PlaneOrientationSequence", "ImageOrientationPatient")
        thickness = self.get("PixelMeasuresSequence", "SliceThickness")
        return Geometry(
            pixel_spacing=_measuring(_floats(spacing, 2)),
            slice_thickness=float(thickness) if thickness not in (None, "") else None,
            position=_floats(position, 3),
            orientation=_floats(orientation, 6),
            stated=stated_directions(attribute(self._ds, "PatientOrientation")),
        )

    def windows(self) -> tuple[Window, ...]:
        centers = _as_list(self.get("FrameVOILUTSequence", "WindowCenter"))
        widths = _as_list(self.get("FrameVOILUTSequence", "WindowWidth"))
        explanations = _as_list(attribute(self._ds, "WindowCenterWidthExplanation"))
        found = []
        for i, (center, width) in enumerate(zip(centers, widths, strict=False)):
            if float(width) >= 1:
                name = str(explanations[i]) if i < len(explanations) else "file"
                found.append(Window(float(center), float(width), name))
        return tuple(found)


def _detector_spacing(ds: Dataset) -> list[float] | None:
    """Projection images: ImagerPixelSpacing is at the detector; it is a patient size only once
    divided by the estimated magnification. Without that factor, sizes stay in pixels."""
    spacing = _floats(attribute(ds, "ImagerPixelSpacing"), 2)
    factor = attribute(ds, "EstimatedRadiographicMagnificationFactor")
    if spacing is None or not factor:
        return None
    return [v / float(factor) for v in spacing]


def _frame_times(ds: Dataset, count: int) -> list[float] | None:
    """Seconds from the first frame, from Frame Time Vector, Frame Time or Cine Rate."""
    if count < 2:
        return None
    vector = attribute(ds, "FrameTimeVector")
    if vector and len(vector) == count:  # increments in ms; the first should be 0 (often is not)
        times = np.cumsum([float(v) for v in vector]) / 1000
        return [float(t - times[0]) for t in times]
    rate = frame_rate(ds)
    return [i / rate for i in range(count)] if rate else None


def _measuring(spacing: tuple | None) -> tuple | None:
    """A pixel spacing that measures something: every value a positive, finite number of mm.
    Some systems write 0\\0 for a spacing they do not know; sizes then stay in pixels."""
    if spacing is None or not all(0 < v < math.inf for v in spacing):
        return None
    return spacing


def _as_list(value) -> list:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return list(value)
    return [value]


def _floats(value, count: int) -> tuple | None:
    values = _as_list(value)
    if len(values) != count:
        return None
    try:
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return None


def frame_count(ds: Dataset) -> int:
    """Number of Frames, 1 when absent or empty (single-frame objects)."""
    return int_or_none(attribute(ds, "NumberOfFrames")) or 1


def int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
