"""Time in a study: a timeline of frames, from a cine (frames already decoded, with their Frame
Time / Frame Time Vector / Cine Rate) or a compressed video held in memory (DICOM video with
encapsulated H.264 / HEVC / MPEG-2, or a plain MP4). A video frame at time t costs decoding from
the key frame before it, never from the start, and nothing is written to disk."""

from __future__ import annotations

import bisect
import io
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydicom import Dataset
from pydicom.encaps import generate_fragments

from imaging.errors import BadInput
from imaging.header import attribute

if TYPE_CHECKING:
    from imaging.frame import Frame

# Transfer syntax -> the demuxer for the raw elementary stream DICOM carries.
_VIDEO = {
    "1.2.840.10008.1.2.4.100": "mpegvideo",  # MPEG-2 Main Profile / Main Level
    "1.2.840.10008.1.2.4.101": "mpegvideo",  # MPEG-2 Main Profile / High Level
    "1.2.840.10008.1.2.4.102": "h264",  # MPEG-4 AVC/H.264 High Profile / Level 4.1
    "1.2.840.10008.1.2.4.103": "h264",  # ... BD-compatible
    "1.2.840.10008.1.2.4.104": "h264",  # ... for 2D video
    "1.2.840.10008.1.2.4.105": "h264",  # ... for 3D video
    "1.2.840.10008.1.2.4.106": "h264",  # ... Stereo High Profile
    "1.2.840.10008.1.2.4.107": "hevc",  # HEVC/H.265 Main Profile / Level 5.1
    "1.2.840.10008.1.2.4.108": "hevc",  # HEVC/H.265 Main 10 Profile / Level 5.1
}
# Each (but HEVC) also has a "Fragmentable" syntax (UID + ".1"): the same stream, split across
# fragments, which are joined before demuxing anyway.
VIDEO_SYNTAXES = {
    **_VIDEO,
    **{f"{uid}.1": demuxer for uid, demuxer in _VIDEO.items() if demuxer != "hevc"},
}


class VideoError(BadInput):
    """The video cannot be decoded as declared (truncated, unsupported, no frames)."""


@dataclass(frozen=True, eq=False)
class VideoFrame:
    pixels: np.ndarray  # RGB uint8
    number: int  # 1-based, as DICOM frame numbers
    time_s: float  # seconds from the first frame (its time stamp, or (number - 1) / rate)


class Video:
    """Demuxed once into packets and a key-frame index; frames are decoded on demand."""

    def __init__(
        self,
        data: bytes,
        demuxer: str | None,
        frame_rate: float | None = None,
        declared_frames: int | None = None,
    ) -> None:
        import av

        try:
            with av.open(io.BytesIO(data), format=demuxer) as container:
                stream = container.streams.video[0]
                self.codec = stream.codec_context.name
                self._extradata = stream.codec_context.extradata  # MP4: SPS/PPS live here
                rate = frame_rate or (float(stream.average_rate) if stream.average_rate else None)
                self._packets, stamps = [], []
                for packet in container.demux(stream):
                    if packet.size:
                        self._packets.append((bytes(packet), packet.is_keyframe))
                        stamps.append(packet.pts)
                time_base = stream.time_base
        except (av.error.FFmpegError, IndexError) as exc:
            raise VideoError(f"not a decodable video stream: {exc}") from None
        if not self._packets or not rate:
            raise VideoError("the video has no frames or no frame rate")
        self._times = _display_times(stamps, time_base, rate, given=frame_rate is not None)
        if declared_frames and len(self._packets) < declared_frames:
            raise VideoError(
                f"bitstream truncated: {len(self._packets)} of {declared_frames} declared frames"
            )
        self.frame_rate = rate
        self._keys = [i for i, (_, key) in enumerate(self._packets) if key]
        if not self._keys or self._keys[0] != 0:
            raise VideoError("the stream does not start with a key frame")
        self.decoded = 0  # frames the last call decoded (what a benchmark reads)

    @classmethod
    def from_dicom(cls, ds: Dataset) -> Video:
        syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
        if syntax not in VIDEO_SYNTAXES:
            raise VideoError(f"transfer syntax {syntax} is not a video transfer syntax")
        data = b"".join(generate_fragments(ds.PixelData))
        frames = int(attribute(ds, "NumberOfFrames") or 0) or None
        return cls(data, VIDEO_SYNTAXES[syntax], frame_rate(ds), frames)

    @classmethod
    def from_file(cls, path: Path) -> Video:
        return cls(Path(path).read_bytes(), None)

    @property
    def frame_count(self) -> int:
        return len(self._packets)

    @property
    def duration_s(self) -> float:
        """Until the last frame's end (it lasts as long as the one before it)."""
        return _end(self._times, 1 / self.frame_rate)

    def frame_at(self, t: float) -> VideoFrame:
        """The frame shown at `t` seconds: the last one starting at or before t."""
        check_time(t, self.duration_s)
        return self._decode(_index_at(self._times, t))

    def _decode(self, index: int) -> VideoFrame:
        """Decode from the key frame at or before `index`; frames come out in display order,
        and a closed GOP starts displaying at its key frame."""
        import av

        key = self._keys[bisect.bisect_right(self._keys, index) - 1]
        codec = av.CodecContext.create(self.codec, "r")
        if self._extradata:
            codec.extradata = self._extradata
        shown = key
        self.decoded = 0
        try:
            for data, _ in [*self._packets[key:], (None, False)]:
                packet = av.Packet(data) if data is not None else None
                for frame in codec.decode(packet):
                    self.decoded += 1
                    if shown == index:
                        return VideoFrame(
                            frame.to_ndarray(format="rgb24"), index + 1, self._times[index]
                        )
                    shown += 1
        except av.error.FFmpegError as exc:
            raise VideoError(f"frame {index + 1} cannot be decoded: {exc}") from None
        raise VideoError(f"frame {index + 1} is missing from the bitstream (truncated?)")


def _index_at(times: Sequence[float], t: float) -> int:
    """The frame shown at `t`: the last one starting at or before it (with float slack)."""
    return max(0, bisect.bisect_right(times, t + 1e-6) - 1)


def _end(times: Sequence[float], alone: float) -> float:
    """When the last frame ends: it lasts as long as the one before it (`alone` if none)."""
    return times[-1] + ((times[-1] - times[-2] if len(times) > 1 else 0.0) or alone)


def _display_times(stamps: list, time_base, rate: float, *, given: bool) -> list[float]:
    """Seconds from the first frame, in display order. A container's presentation time stamps
    where it has them for every frame (a phone's or a screen recorder's video changes its rate
    as it goes); a DICOM object's own frame rate (`given`), or frames at the stream's rate, where
    not (a raw stream has none)."""
    if not given and time_base and stamps and None not in stamps:
        ordered = sorted(stamps)  # decoding order differs from display order with B-frames
        if len(set(ordered)) == len(ordered):
            return [float((pts - ordered[0]) * time_base) for pts in ordered]
    return [i / rate for i in range(len(stamps))]


def frame_rate(ds: Dataset) -> float | None:
    """Frames per second of a cine or video, from Frame Time first: Cine Rate is a whole number
    (30 for a 29.97 fps video drifts 0.6 s in ten minutes)."""
    if frame_time := attribute(ds, "FrameTime"):
        return 1000.0 / float(frame_time)
    if cine_rate := attribute(ds, "CineRate"):
        return float(cine_rate)
    return None


def check_time(t: float, duration_s: float) -> None:
    if not 0 <= t < duration_s:
        raise VideoError(f"t = {t:g} s is outside the video (0 to {duration_s:.3f} s)")


class Timeline(ABC):
    """Frames by time, for the video tools: seconds from the first frame, frames numbered from 1."""

    frame_count: int
    duration_s: float

    @abstractmethod
    def frame_at(self, t: float) -> Frame:
        """The frame shown at `t` seconds, with its exact frame number and time."""

    def check_time(self, t: float) -> None:
        check_time(t, self.duration_s)

    def frames_between(self, start: float, end: float, count: int) -> list[Frame]:
        """`count` distinct frames spread evenly over [start, end]; fewer if the window is short."""
        if not 0 <= start < end or count < 1:
            raise VideoError(f"window {start:g}-{end:g} s with {count} frame(s) is empty")
        self.check_time(start)
        times = np.linspace(start, min(end, self.duration_s), count) if count > 1 else [start]
        frames: dict[int, Frame] = {}
        for t in times:
            frame = self.frame_at(min(float(t), self.duration_s - 1e-9))  # the end is the last
            frames.setdefault(frame.ref.frame, frame)
        return list(frames.values())


class CineTimeline(Timeline):
    """A multi-frame cine whose frames are decoded already (ultrasound, angiography loops)."""

    def __init__(self, frames: Sequence[Frame]) -> None:
        self._frames = sorted(frames, key=lambda f: f.time_s or 0.0)
        self._times = [f.time_s or 0.0 for f in self._frames]
        self.frame_count = len(self._frames)
        self.duration_s = _end(self._times, 1.0)

    def frame_at(self, t: float) -> Frame:
        self.check_time(t)
        return self._frames[_index_at(self._times, t)]


class VideoTimeline(Timeline):
    """A compressed video; `first` is its decoded first frame, the pattern for every other one."""

    def __init__(self, video: Video, first: Frame) -> None:
        self.video = video
        self.first = first
        self.frame_count = video.frame_count
        self.duration_s = video.duration_s

    @classmethod
    def open(cls, video: Video, pattern: Frame) -> VideoTimeline:
        """`pattern` carries the object's references and geometry; its pixels are replaced."""
        decoded = video.frame_at(0.0)
        first = replace(pattern, pixels=decoded.pixels, time_s=0.0, photometric="RGB")
        return cls(video, first)

    def frame_at(self, t: float) -> Frame:
        decoded = self.video.frame_at(t)  # checks t
        return replace(
            self.first,
            ref=replace(self.first.ref, frame=decoded.number),
            pixels=decoded.pixels,
            time_s=decoded.time_s,
        )
