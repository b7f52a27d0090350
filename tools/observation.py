"""What a tool returns: text for the policy, an optional new image, and a typed payload.

Each tool has its payload record; the trajectory keeps it as plain JSON under the same keys
(`imaging.records.to_plain`), and reading a trajectory tells them apart by their keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from imaging.records import NOT_RECORDED, from_plain, to_plain
from imaging.windowing import Window
from tools.measurement import Measurement, Unit
from tools.workspace import WorkspaceImage


@dataclass(frozen=True)
class ModelUse:
    """A model a tool ran: "<folder>/<file>" and its SHA-256, which the SR statement names."""

    file: str
    sha256: str | None
    provider: str = ""
    export: str = ""  # the export folder, for a segment model
    files: Mapping[str, str | None] = field(default_factory=dict)  # every file that ran, by hash

    @classmethod
    def of(cls, record) -> ModelUse:
        """From a model's own record (a mapping or a dataclass with these keys)."""
        return from_plain(cls, to_plain(record), "model record")


@dataclass(frozen=True)
class ZoomPayload:
    bbox_2d: tuple[float, ...]  # the box asked for, on the image as shown
    source_box_px: tuple[float, ...]  # the same box in source pixels


@dataclass(frozen=True)
class WindowPayload:
    window: Window


@dataclass(frozen=True)
class SegmentPayload:
    method: str  # which method made the mask (a model, or the weight-free fallback)
    bbox_2d: tuple[float, ...]
    score: float | None = None  # the model's own estimate of its IoU
    model: ModelUse | None = None


@dataclass(frozen=True)
class Candidate:
    """One located region, in the pixels of the image the locate call named."""

    caption: str
    tissue: str = field(metadata={"plain": "class"})  # the class or prompt that matched
    bbox_2d: tuple[int, ...]
    area: float
    area_unit: Unit
    mean_value: float
    method: str
    rank: int = 0  # 1 = first; set once all candidates are ranked
    score: float | None = None  # a model's presence score for the prompt
    probability: float | None = None  # the model's mean probability inside the region


@dataclass(frozen=True)
class LocatePayload:
    method: str
    candidates: tuple[Candidate, ...]
    unsupported: tuple[str, ...]  # captions no method knows
    model: ModelUse | None = None
    scores: Mapping[str, float] | None = None  # presence score per prompt the model answered
    # The union of the candidates' regions, on the grid of the image locate was called on: what a
    # model trained on BiomedParse's output is shown painted in. Pixels, not a record: the
    # trajectory keeps the candidates' boxes, not this.
    mask: np.ndarray | None = field(default=None, compare=False, repr=False, metadata=NOT_RECORDED)


@dataclass(frozen=True)
class MeasurePayload:
    measurements: tuple[Measurement, ...]


@dataclass(frozen=True)
class FramePayload:
    frame: int  # DICOM frame number, from 1
    time_s: float


@dataclass(frozen=True)
class SheetPayload:
    frames: tuple[int, ...]
    times_s: tuple[float, ...]


@dataclass(frozen=True)
class NoPayload:
    """A failed call, or an answer turned back: the text says it all."""


Payload = (
    ZoomPayload
    | WindowPayload
    | SegmentPayload
    | LocatePayload
    | MeasurePayload
    | FramePayload
    | SheetPayload
    | NoPayload
)


@dataclass(frozen=True)
class Observation:
    text: str
    image: WorkspaceImage | None = None
    payload: Payload = field(default_factory=NoPayload)
    error: bool = False

    @classmethod
    def failure(cls, message: str) -> Observation:
        return cls(text=message, error=True)


def measurements_of(payload: Payload) -> tuple[Measurement, ...]:
    """What a step measured; nothing for the other tools."""
    return payload.measurements if isinstance(payload, MeasurePayload) else ()


def model_of(payload: Payload) -> ModelUse | None:
    """The model a step's tool ran, if it ran one."""
    return payload.model if isinstance(payload, (SegmentPayload, LocatePayload)) else None
