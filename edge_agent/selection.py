"""Which series to read and which of its frames to show first."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imaging.errors import NoReadableImages
from imaging.frame import Frame
from imaging.instance import UndecodablePixels
from imaging.study import Series, Study
from imaging.video import Timeline

DEFAULT_MODALITIES = ("CT", "MR", "PT", "CR", "DX", "MG", "US", "XA", "NM", "ES", "XC", "OT")


@dataclass(frozen=True)
class Selection:
    study: Study  # as read: less any file whose pixels did not decode, which it lists as skipped
    series: Series
    frames: tuple[Frame, ...]
    reason: str
    timeline: Timeline | None = None  # a cine or video: the read starts from its overview


def select(study: Study, modalities: tuple[str, ...], key_frames: int) -> Selection:
    """Pick the series by rule, then its key frames; the reason is recorded with the read.
    The frames shown are decoded here, the first time anything looks at their pixels: a file
    that does not decode is skipped, as loading skips a damaged file, and the choice is made
    again among the rest."""
    while True:
        selection = _select(study, modalities, key_frames)
        try:
            for frame in _shown_first(selection):
                _ = frame.pixels
        except UndecodablePixels as damaged:
            study = study.without(damaged)
        else:
            return selection


def _shown_first(selection: Selection) -> tuple[Frame, ...]:
    """The frames a read shows before its first step. A cine loop is one file, decoded at once
    by its first frame; a video's first frame was decoded when it was opened."""
    timeline = selection.timeline
    if timeline is None:
        return selection.frames
    return () if selection.series.video else (timeline.frame_at(0.0),)


def _select(study: Study, modalities: tuple[str, ...], key_frames: int) -> Selection:
    candidates = [s for s in study.series if s.modality in modalities]
    if not candidates:
        found = ", ".join(sorted({s.modality for s in study.series}))
        raise NoReadableImages(
            f"no series of a readable modality ({', '.join(modalities)}); the study has: {found}"
        )
    series = min(candidates, key=lambda s: _rank(s, modalities))
    timeline = series.timeline
    frames = () if timeline else _key_frames(series, key_frames)
    if timeline:
        kind = "video" if series.video else "cine"
        shape = f"{kind}, {timeline.frame_count} frames, {timeline.duration_s:.1f} s"
        showing = "an overview of the whole timeline"
    else:
        shape = f"{len(series.frames)} frame(s){', axial' if _is_axial(series) else ''}"
        showing = "frame(s) " + ", ".join(str(series.frames.index(f) + 1) for f in frames)
    number = series.number if series.number is not None else "?"
    reason = (
        f"series {number} ({series.modality}, {shape}) of {len(study.series)}; showing {showing}"
    )
    return Selection(study, series, frames, reason, timeline)


def _rank(series: Series, modalities: tuple[str, ...]) -> tuple:
    """Not a localizer, preferred modality, axial, most frames, lowest series number."""
    localizer = any(t.upper() in ("LOCALIZER", "SCOUT") for t in series.image_type)
    return (
        localizer,
        modalities.index(series.modality),
        not _is_axial(series),
        -(series.video.frame_count if series.video else len(series.frames)),
        series.number if series.number is not None else 1 << 30,
    )


def _is_axial(series: Series) -> bool:
    normal = series.frames[0].geometry.normal
    return normal is not None and abs(float(normal[2])) > 0.8


def _key_frames(series: Series, count: int) -> tuple[Frame, ...]:
    """A volume shows `count` slices spread over its central part, symmetric about the centre:
    one slice is the central one, which is what a profile showing one image shows of `count`
    (formats/shown.py picks the central key slices). A cine or video has its overview instead."""
    frames = series.frames
    if len(frames) <= count:
        return frames
    spread = np.linspace(0.2, 0.8, count) if count > 1 else np.array([0.5])
    picks = spread * (len(frames) - 1)
    return tuple(frames[i] for i in sorted({round(float(p)) for p in picks}))
