"""The study model: a DICOM folder becomes Study -> Series -> Frame, each frame with an ImageRef."""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut
from pydicom.uid import generate_uid

from imaging.errors import NoReadableImages
from imaging.frame import Frame, Geometry, ImageRef
from imaging.video import (
    VIDEO_SYNTAXES,
    CineTimeline,
    Timeline,
    Video,
    VideoError,
    VideoTimeline,
    frame_rate,
)
from imaging.windowing import Window

log = logging.getLogger(__name__)

# Objects that carry Pixel Data but are not images to read: derived results and dose grids.
NOT_SOURCE_IMAGES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation Storage",
    "1.2.840.10008.5.1.4.1.1.481.2": "RT Dose Storage",
}

Progress = Callable[[int, int, Path], None]
VIDEO_FILES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")  # read with `read FILE`


@dataclass(frozen=True)
class Series:
    uid: str
    modality: str
    number: int | None
    description: str
    image_type: tuple[str, ...]
    frames: tuple[Frame, ...]  # a video series holds its first frame; the rest is in `video`
    video: Timeline | None = None  # compressed video, decoded on demand

    @cached_property  # the loops are grouped once per series
    def timeline(self) -> Timeline | None:
        """Frames by time, for a cine or a video; None for still images and volumes. A series
        of several cine loops (each timed from 0) is read by its longest loop."""
        if self.video is not None:
            return self.video
        loops: dict[str, list[Frame]] = {}
        for frame in self.frames:  # stills (no time) beside the loops are not part of one
            if frame.time_s is not None:
                loops.setdefault(frame.ref.sop_instance_uid, []).append(frame)
        longest = max(loops.values(), key=len, default=[])
        if len(loops) > 1:
            log.info("series %s: %d cine loops, reading the longest", self.uid, len(loops))
        return CineTimeline(longest) if len(longest) > 1 else None


@dataclass(frozen=True)
class SkippedFile:
    path: Path
    reason: str


@dataclass(frozen=True)
class Study:
    uid: str
    series: tuple[Series, ...]
    skipped: tuple[SkippedFile, ...] = field(default=())
    files: Mapping[str, Path] = field(default_factory=dict)  # SOP Instance UID -> file

    def header(self, sop_instance_uid: str) -> Dataset:
        """A source instance's attributes without pixel data, for references in derived objects."""
        return pydicom.dcmread(self.files[sop_instance_uid], stop_before_pixels=True)


class UnreadableFile(Exception):
    """One file cannot contribute frames; the reason is what the user sees."""


def load_study(path: Path, progress: Progress | None = None) -> Study:
    """Read every DICOM image under `path`; unreadable files are skipped and reported, not fatal.
    A plain video file (MP4 and the like) is read as a study of its own."""
    if Path(path).is_file() and Path(path).suffix.lower() in VIDEO_FILES:
        return _video_file_study(Path(path))
    files = list(candidate_files(Path(path)))
    per_study: dict[str, list[_Read]] = {}
    skipped: list[SkippedFile] = []
    paths: dict[str, Path] = {}
    for number, file in enumerate(files, 1):
        try:
            read = _read_file(file)
        except UnreadableFile as exc:
            log.warning("skipped %s: %s", file, exc)
            skipped.append(SkippedFile(file, str(exc)))
        else:
            ds = read.ds
            per_study.setdefault(str(ds.StudyInstanceUID), []).append(read)
            paths[str(ds.SOPInstanceUID)] = file
        if progress:
            progress(number, len(files), file)
    if not per_study:
        raise NoReadableImages(_nothing_readable_message(Path(path), files, skipped))
    if len(per_study) > 1:
        raise NoReadableImages(
            f"{path} holds {len(per_study)} studies ({', '.join(sorted(per_study))}); "
            "point at one study's folder"
        )
    [(uid, items)] = per_study.items()
    return Study(uid=uid, series=_group_series(items), skipped=tuple(skipped), files=paths)


def _video_file_study(path: Path) -> Study:
    """A video that is not DICOM: its UIDs are derived from its bytes (a re-read names it the
    same), and with no source instances there is nothing for DICOM outputs to reference."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    study, series, instance = (generate_uid(entropy_srcs=[digest, part]) for part in "123")
    pattern = Frame(
        ref=ImageRef(instance, 1, "", series, study),
        pixels=np.zeros((1, 1, 3), np.uint8),
        geometry=Geometry(),
        modality="OT",
        photometric="RGB",
    )
    try:
        timeline = VideoTimeline.open(Video(data, None), pattern)
    except VideoError as exc:
        raise NoReadableImages(f"{path}: {exc}") from None
    only = Series(series, "OT", None, path.name, (), (timeline.first,), timeline)
    return Study(uid=study, series=(only,))


def _nothing_readable_message(path: Path, files: list[Path], skipped: list[SkippedFile]) -> str:
    if not files:
        return f"no files found under {path}"
    reasons = "; ".join(f"{s.path.name}: {s.reason}" for s in skipped[:5])
    more = f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""
    return f"no readable DICOM images under {path}: {reasons}{more}"


def candidate_files(path: Path) -> Iterator[Path]:
    """The files a study path holds, in a stable order: the file itself, or every file below
    the folder but hidden ones."""
    if path.is_file():
        yield path
        return
    if not path.is_dir():
        raise NoReadableImages(f"{path} does not exist")
    for root, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            if not name.startswith("."):
                yield Path(root) / name


@dataclass(frozen=True)
class _Read:
    ds: Dataset
    frames: list[Frame]
    video: Timeline | None = None


def _read_file(file: Path) -> _Read:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(file)
    except InvalidDicomError:
        raise UnreadableFile("not a DICOM Part 10 file (no 'DICM' preamble / file meta)") from None
    except Exception as exc:  # pydicom raises many types on damaged files
        raise UnreadableFile(f"unreadable DICOM: {_one_line(exc)}") from None
    sop_class = str(ds.get("SOPClassUID", ""))
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        name = getattr(ds.get("SOPClassUID"), "name", sop_class) or "unknown SOP class"
        raise UnreadableFile(f"no pixel data ({name}), not an image")
    if sop_class in NOT_SOURCE_IMAGES:
        raise UnreadableFile(f"{NOT_SOURCE_IMAGES[sop_class]} is not a source image")
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        if not ds.get(keyword):
            raise UnreadableFile(f"missing {keyword}")
    if ds.file_meta.get("TransferSyntaxUID") in VIDEO_SYNTAXES:
        return _read_video(ds)
    return _Read(ds, _frames(ds, _decode(ds)))


def _read_video(ds: Dataset) -> _Read:
    """A DICOM video is demuxed now and decoded frame by frame when a tool asks for a time."""
    try:
        video = Video.from_dicom(ds)
        blank = np.zeros((int(ds.Rows), int(ds.Columns), 3), np.uint8)
        # One pattern frame for references and geometry; its pixels come from the video.
        [pattern] = _frames(ds, blank[np.newaxis])
        timeline = VideoTimeline.open(video, pattern)
    except VideoError as exc:
        raise UnreadableFile(f"video: {exc}") from None
    except Exception as exc:  # broken encapsulation, missing Rows/Columns, ...
        raise UnreadableFile(f"video: unreadable ({_one_line(exc)})") from None
    del ds.PixelData  # the video holds the stream; keep one copy of a long video in memory
    return _Read(ds, [timeline.first], timeline)


def _decode(ds: Dataset) -> np.ndarray:
    syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = ds.pixel_array
    except NotImplementedError as exc:
        raise UnreadableFile(
            f"transfer syntax {syntax} has no available decoder ({_one_line(exc)})"
        ) from None
    except Exception as exc:
        raise UnreadableFile(f"pixel data cannot be decoded ({syntax}): {_one_line(exc)}") from None
    if ds.get("PhotometricInterpretation") == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
        pixels = (pixels >> 8).astype(np.uint8) if pixels.dtype != np.uint8 else pixels
    return pixels


def _frames(ds: Dataset, pixels: np.ndarray) -> list[Frame]:
    count = frame_count(ds)
    colour = int(ds.get("SamplesPerPixel", 1)) == 3 or ds.get("PhotometricInterpretation") == (
        "PALETTE COLOR"
    )
    if count == 1 or pixels.ndim == (3 if colour else 2):
        pixels = pixels[np.newaxis]
    times = _frame_times(ds, len(pixels))
    photometric = "RGB" if colour else str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    frames = []
    for i, array in enumerate(pixels):
        attrs = _FrameAttributes(ds, i)
        frames.append(
            Frame(
                ref=ImageRef(
                    sop_instance_uid=str(ds.SOPInstanceUID),
                    frame=i + 1,
                    sop_class_uid=str(ds.get("SOPClassUID", "")),
                    series_instance_uid=str(ds.SeriesInstanceUID),
                    study_instance_uid=str(ds.StudyInstanceUID),
                ),
                pixels=array,
                geometry=attrs.geometry(),
                modality=str(ds.get("Modality", "OT")),
                photometric=photometric,
                slope=attrs.float("PixelValueTransformationSequence", "RescaleSlope", 1.0),
                intercept=attrs.float("PixelValueTransformationSequence", "RescaleIntercept", 0.0),
                windows=() if colour else attrs.windows(),
                time_s=times[i] if times else None,
                instance_number=int_or_none(ds.get("InstanceNumber")),
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
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
        if per_frame and index < len(per_frame):
            self._groups.append(per_frame[index])
        shared = ds.get("SharedFunctionalGroupsSequence")
        if shared:
            self._groups.append(shared[0])

    def get(self, sequence: str, keyword: str):
        for group in self._groups:
            items = group.get(sequence)
            if items and keyword in items[0]:
                return items[0][keyword].value
        return self._ds.get(keyword)

    def float(self, sequence: str, keyword: str, default: float) -> float:
        value = self.get(sequence, keyword)
        return float(value) if value not in (None, "") else default

    def geometry(self) -> Geometry:
        spacing = self.get("PixelMeasuresSequence", "PixelSpacing") or _detector_spacing(self._ds)
        position = self.get("PlanePositionSequence", "ImagePositionPatient")
        orientation = self.get("PlaneOrientationSequence", "ImageOrientationPatient")
        thickness = self.get("PixelMeasuresSequence", "SliceThickness")
        return Geometry(
            pixel_spacing=_floats(spacing, 2),
            slice_thickness=float(thickness) if thickness not in (None, "") else None,
            position=_floats(position, 3),
            orientation=_floats(orientation, 6),
        )

    def windows(self) -> tuple[Window, ...]:
        centers = _as_list(self.get("FrameVOILUTSequence", "WindowCenter"))
        widths = _as_list(self.get("FrameVOILUTSequence", "WindowWidth"))
        explanations = _as_list(self._ds.get("WindowCenterWidthExplanation"))
        found = []
        for i, (center, width) in enumerate(zip(centers, widths, strict=False)):
            if float(width) >= 1:
                name = str(explanations[i]) if i < len(explanations) else "file"
                found.append(Window(float(center), float(width), name))
        return tuple(found)


def _detector_spacing(ds: Dataset) -> list[float] | None:
    """Projection images: ImagerPixelSpacing is at the detector; it is a patient size only once
    divided by the estimated magnification. Without that factor, sizes stay in pixels."""
    spacing = _floats(ds.get("ImagerPixelSpacing"), 2)
    factor = ds.get("EstimatedRadiographicMagnificationFactor")
    if spacing is None or not factor:
        return None
    return [v / float(factor) for v in spacing]


def _frame_times(ds: Dataset, count: int) -> list[float] | None:
    """Seconds from the first frame, from Frame Time Vector, Frame Time or Cine Rate."""
    if count < 2:
        return None
    vector = ds.get("FrameTimeVector")
    if vector and len(vector) == count:  # increments in ms; the first should be 0 (often is not)
        times = np.cumsum([float(v) for v in vector]) / 1000
        return [float(t - times[0]) for t in times]
    rate = frame_rate(ds)
    return [i / rate for i in range(count)] if rate else None


def _group_series(items: Iterable[_Read]) -> tuple[Series, ...]:
    by_uid: dict[str, tuple[Dataset, list[Frame]]] = {}
    videos: dict[str, Timeline] = {}
    for read in items:
        uid = str(read.ds.SeriesInstanceUID)
        if read.video is not None:
            first = videos.get(uid)
            if first is not None:  # one timeline per series
                if first.first.ref != read.video.first.ref:
                    log.warning("series %s holds more than one video; reading the first", uid)
                continue  # or a copy of the same video
            videos[uid] = read.video
        _, collected = by_uid.setdefault(uid, (read.ds, []))
        known = {f.ref for f in collected}
        # A copy of a file adds nothing.
        collected.extend(f for f in read.frames if f.ref not in known)
    series = [
        Series(
            uid=uid,
            modality=str(ds.get("Modality", "OT")),
            number=int_or_none(ds.get("SeriesNumber")),
            description=str(ds.get("SeriesDescription", "")),
            image_type=tuple(str(v) for v in _as_list(ds.get("ImageType"))),
            frames=tuple(sorted(frames, key=_frame_order)),
            video=videos.get(uid),
        )
        for uid, (ds, frames) in by_uid.items()
    ]
    return tuple(sorted(series, key=lambda s: (s.number is None, s.number or 0, s.uid)))


def _frame_order(frame: Frame) -> tuple:
    """Slice position along the normal when known, then instance number, then frame number."""
    along = frame.geometry.slice_position_mm
    return (
        along is None,
        along or 0.0,
        frame.instance_number is None,
        frame.instance_number or 0,
        frame.ref.frame,
    )


def _one_line(exc: Exception) -> str:
    return " | ".join(line.strip() for line in str(exc).splitlines() if line.strip())


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
    return int_or_none(ds.get("NumberOfFrames")) or 1


def int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
