"""The record of one read: every image, step, timing and the answer; reports derive from it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.usage import TurnUsage
from imaging.errors import TrajectoryError
from imaging.frame import ImageRef
from imaging.records import RecordError, from_plain, to_plain
from tools.observation import NoPayload, Payload

# 2: images keep their mask (mask_file) and the trajectory names its source study (source_path), so
# a replay can write the DICOM objects too. Version 1 still loads; its replay writes no DICOM.
# 3: images say where their frame lies (instance number, slice position, mm per pixel) and the
# trajectory names its series (number, description), for the reader's report, and keeps the
# follow-up questions asked after the answer. 2 loads without.
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
EVIDENCE_FILE = r"evidence/[A-Za-z0-9_.-]+\.png"


@dataclass(frozen=True)
class ImageRecord:
    """A workspace image: where its PNG is, and how its pixels map back to the source frame."""

    index: int
    file: str  # relative to the read's output folder
    width: int
    height: int
    source: ImageRef
    to_source: tuple[float, ...]  # 2x3 affine, row-major
    roi_px: tuple[float, ...]  # x1, y1, x2, y2 in source pixels
    tool: str
    parent: int | None = None
    step: int | None = None  # the step whose tool made it; None for shown originals
    window: dict | None = None
    frames: tuple[int, ...] = ()  # frame numbers of a cine / video image (all of a sheet's)
    times_s: tuple[float, ...] = ()  # when those frames were shown, seconds from the start
    frame_files: tuple[str, ...] = ()  # a contact sheet's frames, one PNG each
    mask_file: str | None = None  # the mask a tool outlined, on the source grid (255 = inside)
    # Where the source frame lies, in a reader's terms (None where the file does not say).
    instance_number: int | None = None
    slice_position_mm: float | None = None  # along the slice normal
    mm_per_px: float | None = None  # across this image's columns: its scale bar
    edges: tuple[str, ...] = ()  # patient directions at the left, right, top, bottom edges

    def __post_init__(self) -> None:
        # Names are joined to an output folder: never let a trajectory point outside it.
        for name in self.files:
            if not re.fullmatch(EVIDENCE_FILE, name) or ".." in name:
                raise ValueError(f"image file {name!r} is not an evidence/NAME.png path")

    @property
    def files(self) -> tuple[str, ...]:
        """Every PNG behind this image: itself, a contact sheet's frames, then its mask."""
        return (self.file, *self.frame_files, *((self.mask_file,) if self.mask_file else ()))

    @property
    def time_window_s(self) -> tuple[float, float] | None:
        return (min(self.times_s), max(self.times_s)) if self.times_s else None


@dataclass(frozen=True)
class StepRecord:
    number: int
    tool: str
    arguments: dict
    thought: str = ""
    observation: str = ""
    image: int | None = None
    payload: Payload = field(default_factory=NoPayload)
    error: bool = False
    started_s: float = 0.0  # since the read began
    policy_s: float = 0.0
    tool_s: float = 0.0
    usage: TurnUsage | None = None  # token counts and timings of a model policy's turn


@dataclass(frozen=True)
class ClaimRecord:
    text: str
    evidence: tuple[int, ...]  # workspace image indices


@dataclass(frozen=True)
class AnswerRecord:
    text: str
    thought: str = ""
    findings: tuple[ClaimRecord, ...] = ()
    usage: TurnUsage | None = None


@dataclass(frozen=True)
class FollowUpRecord:
    """A question asked after the answer, about the same read, and what was answered."""

    question: str
    answer: str
    findings: tuple[ClaimRecord, ...] = ()
    asked_at: str = ""
    # a model's follow-up continues the read's session: the steps it took (tool calls, appended
    # to the trajectory's steps), its answer turn's usage, and why it ended
    steps: tuple[int, ...] = ()
    usage: TurnUsage | None = None
    end_reason: str = "answer"


@dataclass(frozen=True)
class PolicyRecord:
    name: str
    label: str
    disclaimer: str
    model: dict | None = None  # file name and SHA-256 of a model policy's weights
    # A model read's prompt profile, by label ("... (provisional format)" when provisional), and
    # the tool calls the read allowed: the budget's max_turns, capped by the profile's max_steps.
    prompt_profile: str = ""
    max_turns: int | None = None


@dataclass(frozen=True)
class Trajectory:
    study_instance_uid: str
    series_instance_uid: str
    modality: str
    question: str
    policy: PolicyRecord
    images: tuple[ImageRecord, ...]
    steps: tuple[StepRecord, ...]
    answer: AnswerRecord | None
    end_reason: str  # "answer", "max_turns", "time_limit", "policy_error"
    end_detail: str = ""
    selection: str = ""  # which series and frames were shown, and why
    started_at: str = ""
    duration_s: float = 0.0
    software: dict = field(default_factory=dict)
    source_path: str = ""  # the study folder (or file) read: a replay writes DICOM from it
    series_number: int | None = None
    series_description: str = ""
    follow_ups: tuple[FollowUpRecord, ...] = ()  # `edge-agent ask`, in the order asked
    version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(to_plain(self), indent=2, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> Trajectory:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TrajectoryError(f"trajectory is not JSON: {exc}") from None
        found = data.get("version") if isinstance(data, dict) else None
        if found not in READABLE_VERSIONS:
            raise TrajectoryError(
                f"trajectory format version {found!r} is not one this edge-agent reads "
                f"({', '.join(map(str, READABLE_VERSIONS))})"
            )
        try:
            trajectory = from_plain(cls, data, "trajectory")
        except RecordError as exc:
            raise TrajectoryError(str(exc)) from None
        trajectory.check_citations()
        return trajectory

    @classmethod
    def load(cls, path: Path) -> Trajectory:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise TrajectoryError(f"cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:  # a DICOM file or an image given by mistake
            raise TrajectoryError(
                f"{path} is not a trajectory: not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
        return cls.from_json(text)

    def image(self, index: int) -> ImageRecord:
        return self.images[index]

    def check_citations(self) -> None:
        """Every finding (of the answer and of each follow-up) cites at least one image, and
        only images the read made: what the reports and DICOM objects index. A live read's
        answers are held to this before they are taken; a file is held to it when loaded."""
        answered = self.answer.findings if self.answer else ()
        for claim in (*answered, *(c for f in self.follow_ups for c in f.findings)):
            if not claim.evidence:
                raise TrajectoryError(
                    f"finding {claim.text!r} cites no evidence image; it cannot be reported"
                )
            missing = [i for i in claim.evidence if not 0 <= i < len(self.images)]
            if missing:
                raise TrajectoryError(
                    f"finding {claim.text!r} cites image(s) {missing} the read never made"
                )
