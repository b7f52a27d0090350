"""The study model: a DICOM folder becomes Study -> Series -> Frame, each frame with an ImageRef."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from imaging.errors import NoReadableImages
from imaging.frame import Frame, Geometry, ImageRef
from imaging.header import SharedValues, UnreadableFile, attribute, image_header
from imaging.instance import InstanceRead, SeriesHeader, UndecodablePixels, read_instance
from imaging.video import CineTimeline, Timeline, Video, VideoError, VideoTimeline

log = logging.getLogger(__name__)

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
        """A source instance's attributes without pixel data, for references in derived objects:
        read again from its file, which must still hold the instance loaded."""
        file = self.files[sop_instance_uid]
        try:
            ds = image_header(file)
            now = attribute(ds, "SOPInstanceUID")
        except UnreadableFile as exc:
            raise NoReadableImages(f"{file} changed since it was loaded: {exc}") from None
        if now != sop_instance_uid:
            raise NoReadableImages(
                f"{file} changed since it was loaded: it holds SOP Instance UID {now or 'none'}, "
                f"not {sop_instance_uid}"
            )
        return ds

    def without(self, damaged: UndecodablePixels) -> Study:
        """The study less the damaged file, now listed as skipped: what loading does with a
        file whose pixel data is found undecodable only when a frame of it is first shown."""
        uid = damaged.sop_instance_uid
        series = []
        for one in self.series:
            frames = tuple(f for f in one.frames if f.ref.sop_instance_uid != uid)
            if len(frames) == len(one.frames):
                series.append(one)
            elif frames:
                series.append(replace(one, frames=frames))
        log.warning("skipped %s: %s", damaged.file, damaged.reason)
        skipped = (*self.skipped, SkippedFile(damaged.file, damaged.reason))
        if not series:
            where = f"study {self.uid}"
            raise NoReadableImages(_nothing_readable_message(where, [damaged.file], skipped))
        files = {key: path for key, path in self.files.items() if key != uid}
        return replace(self, series=tuple(series), skipped=skipped, files=files)


def load_study(path: Path, progress: Progress | None = None) -> Study:
    """Read every DICOM image under `path`; unreadable files are skipped and reported, not fatal.
    A plain video file (MP4 and the like) is read as a study of its own."""
    if Path(path).is_file() and Path(path).suffix.lower() in VIDEO_FILES:
        return _video_file_study(Path(path))
    skipped: list[SkippedFile] = []

    def skip(file: SkippedFile) -> None:
        log.warning("skipped %s: %s", file.path, file.reason)
        skipped.append(file)

    files = list(candidate_files(Path(path), skip))
    per_study: dict[str, list[InstanceRead]] = {}
    paths: dict[str, Path] = {}
    known: dict[str, SeriesHeader] = {}
    shared = SharedValues()
    for number, file in enumerate(files, 1):
        try:
            read = read_instance(file, known, shared)
        except UnreadableFile as exc:
            skip(SkippedFile(file, str(exc)))
        else:
            per_study.setdefault(read.study_uid, []).append(read)
            known.setdefault(read.series.uid, read.series)
            paths[read.sop_instance_uid] = file
        if progress:
            progress(number, len(files), file)
    if not per_study:
        raise NoReadableImages(_nothing_readable_message(str(path), files, skipped))
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


def _nothing_readable_message(where: str, files: list[Path], skipped: Sequence[SkippedFile]) -> str:
    if not files and not skipped:
        return f"no files found under {where}"
    return f"no readable DICOM images under {where}: {skip_reasons(skipped)}"


def skip_reasons(skipped: Sequence[SkippedFile]) -> str:
    """The first few skipped files, each named with its reason, on one line."""
    reasons = "; ".join(f"{s.path.name}: {s.reason}" for s in skipped[:5])
    return reasons + (f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else "")


def candidate_files(
    path: Path, unlisted: Callable[[SkippedFile], None] | None = None
) -> Iterator[Path]:
    """The files a study path holds, in a stable order: the file itself, or every regular file
    below the folder but hidden ones. A folder linked into it is followed once, unless it holds
    the study folder (a link up would read the folders beside it, or loop). A folder that cannot
    be listed, and an entry that is not a regular file (a pipe would block its read, a link to
    nothing), go to `unlisted` with the reason: otherwise missing from the study unnoticed."""
    if path.is_file():
        yield path
        return
    if not path.is_dir():
        raise NoReadableImages(f"{path} does not exist")

    def skip(where: Path, reason: str) -> None:
        if unlisted is not None:
            unlisted(SkippedFile(where, reason))

    top = os.path.realpath(path)
    seen: set[str] = set()
    walk = os.walk(
        path,
        onerror=lambda e: skip(Path(e.filename), f"folder not listed: {e.strerror}"),
        followlinks=True,
    )
    for root, dirs, names in walk:
        real = os.path.realpath(root)
        if real in seen or (real != top and (top + os.sep).startswith(real + os.sep)):
            dirs.clear()
            continue
        seen.add(real)
        dirs.sort()
        for file in (Path(root) / name for name in sorted(names) if not name.startswith(".")):
            if file.is_file():
                yield file
            else:
                skip(file, "not a regular file (a pipe, a device, or a link to nothing)")


def _group_series(items: Iterable[InstanceRead]) -> tuple[Series, ...]:
    by_uid: dict[str, tuple[SeriesHeader, dict[ImageRef, Frame]]] = {}
    videos: dict[str, Timeline] = {}
    for read in items:
        uid = read.series.uid
        if read.video is not None:
            first = videos.get(uid)
            if first is not None:  # one timeline per series
                if first.first.ref != read.video.first.ref:
                    log.warning("series %s holds more than one video; reading the first", uid)
                continue  # or a copy of the same video
            videos[uid] = read.video
        _, collected = by_uid.setdefault(uid, (read.series, {}))
        for frame in read.frames:  # a copy of a file adds nothing
            collected.setdefault(frame.ref, frame)
    series = [
        Series(
            uid=uid,
            modality=header.modality,
            number=header.number,
            description=header.description,
            image_type=header.image_type,
            frames=tuple(sorted(frames.values(), key=_frame_order)),
            video=videos.get(uid),
        )
        for uid, (header, frames) in by_uid.items()
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
