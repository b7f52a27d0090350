"""The embedded default: a fixed, per-modality plan that drives the same tools as a model would.

It is a demonstration without an AI model. Its answer is built only from what the tools returned,
and the report says so plainly."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Generator
from dataclasses import dataclass

import cv2
import numpy as np

from edge_agent.agent import Answer, Claim, Decision, PolicyError, ReadContext, ToolCall
from edge_agent.trajectory import PolicyRecord
from imaging.windowing import preset
from tools.locate import CT_CLASSES, INTENSITY_CLASSES
from tools.observation import Candidate, LocatePayload, Observation, measurements_of
from tools.render import frame_view
from tools.workspace import Box, ShownSize, Workspace

DISCLAIMER = (
    "Demonstration without an AI model: a fixed rule-based protocol (HU / intensity thresholds, "
    "GrabCut or the configured segmentation model, measurements; for videos, frame-to-frame "
    "change) drove the tools; each step names the method that ran. Not a diagnosis; not for "
    "clinical use."
)

Plan = Generator[Decision, Observation, None]


@dataclass(frozen=True)
class ProtocolSettings:
    ct_captions: tuple[str, ...] = ("hypodense region", "hyperdense region")
    other_captions: tuple[str, ...] = ("hyperintense region",)
    candidates: int = 2  # how many located candidates are zoomed, segmented and measured
    zoom_margin: float = 0.5  # context around a candidate, as a fraction of its size
    video_moments: int = 2  # change points of a video looked at more closely
    window_frames: int = 6  # frames of each crop_video window
    min_change: float = 2.0  # mean grey-level change between overview frames that counts

    def __post_init__(self) -> None:
        if self.candidates < 0:  # a negative count would slice from the end of the list
            raise ValueError(f"candidates must be >= 0 (0 marks them only), not {self.candidates}")


class ProtocolPolicy:
    def __init__(self, settings: ProtocolSettings | None = None) -> None:
        self._settings = settings or ProtocolSettings()

    @property
    def record(self) -> PolicyRecord:
        return PolicyRecord(
            name="protocol",
            label="Protocol demonstration (no AI model)",
            disclaimer=DISCLAIMER,
        )

    @property
    def shown_size(self) -> ShownSize:
        """The protocol was trained on nothing: the configured size stands."""
        return ShownSize()

    def open(self, context: ReadContext) -> _PlanSession:
        return _PlanSession(_plan(context.workspace, self._settings, context.question))

    def close(self) -> None:
        """Nothing to free: the protocol holds no model."""


class _PlanSession:
    """Feeds each observation into the plan generator and returns its next decision."""

    profile = None  # the protocol speaks no prompt format

    def __init__(self, plan: Plan) -> None:
        self._plan = plan
        self._started = False

    def step(self, context: ReadContext) -> Decision:
        try:
            if not self._started:
                self._started = True
                return next(self._plan)
            return self._plan.send(context.observation)
        except StopIteration:
            raise PolicyError("the protocol plan ended without an answer") from None

    def close(self) -> None:
        self._plan.close()


def _plan(workspace: Workspace, settings: ProtocolSettings, question: str = "") -> Plan:
    if workspace.timeline is not None:
        yield from _video_plan(workspace, settings, question)
        return
    shown = sum(1 for image in workspace if image.tool == "shown")
    key = workspace.get(shown // 2)
    ct = key.frame.hounsfield
    index = key.index
    if ct:
        soft = preset("CT", "soft tissue")
        seen = yield ToolCall(
            "window",
            {"index": index, "center": soft.center, "width": soft.width},
            "Show the key slice in a soft-tissue window before looking for candidates.",
        )
        if not seen.error:
            index = seen.image.index
    classes = CT_CLASSES if ct else INTENSITY_CLASSES
    asked = _asked(question, classes)
    captions = asked or (settings.ct_captions if ct else settings.other_captions)
    located = yield ToolCall(
        "locate",
        {"index": index, "captions": list(captions)},
        f"Look for candidate regions: {', '.join(captions)}.",
    )
    findings = []
    candidates = located.payload.candidates if isinstance(located.payload, LocatePayload) else ()
    for candidate in candidates[: settings.candidates]:
        finding = yield from _examine(workspace, located, candidate, settings)
        findings.append(finding)
    notes = (_examined(len(candidates), settings.candidates), question_use(question, classes))
    yield _answer(located, findings, " ".join(n for n in notes if n))


def _asked(question: str, classes) -> tuple[str, ...]:
    """The tissue classes a question names ("is there a hypodense lesion?") as locate captions;
    none named: the configured captions."""
    lowered = question.lower()
    return tuple(f"{c.name} region" for c in classes if c.matches(lowered))


# Words that carry no request of their own; what is left of a question after these and the
# tissue words the protocol used is what it says it did not use.
_FILLER_WORDS = (
    "a an the is are there any this that these on in of and or with to for which what how do does "
    "show shows study image images it its be they them where see seen "
    # what the protocol does anyway: find regions that stand out, and measure them
    "region regions stand stands out large big size sizes measure measured"
)
_FILLER = frozenset(_FILLER_WORDS.split())


def question_use(question: str, classes=CT_CLASSES) -> str:
    """What of the question the protocol could use (the tissue classes it names) and, plainly,
    what it could not (anatomy, sizes, diagnoses: it has no rules for them)."""
    lowered = question.lower()
    used = [word for c in classes for word in c.words if c.matches(lowered) and word in lowered]
    rest = lowered
    for word in used:
        rest = re.sub(rf"\b{re.escape(word)}\b", " ", rest)
    unused = [w for w in re.findall(r"\w+(?:\.\w+)*", rest) if w not in _FILLER]  # any script
    if not unused:
        return ""
    head = (
        f"From the question the protocol used only {', '.join(repr(w) for w in used)} (the "
        "tissue class it looks for)"
        if used
        else "The protocol could not use the question: it looks for its configured tissue classes"
    )
    return (
        f"{head}; it could not use {', '.join(repr(w) for w in dict.fromkeys(unused))}: it has no "
        "rules for anatomy, size limits or diagnoses."
    )


def _examined(found: int, limit: int) -> str:
    if found <= limit:
        return ""
    return (
        f"{found} candidates found, {limit} examined (candidates = {limit} in "
        "[policy.protocol]); the others are marked on the locate image only."
    )


def _examine(workspace: Workspace, located: Observation, candidate: Candidate, settings) -> Plan:
    """Zoom on one candidate, outline it, measure it; returns the finding it supports."""
    box = candidate.bbox_2d
    label = f"candidate {candidate.rank} ({candidate.tissue})"
    zoom = yield ToolCall(
        "zoom_in",
        {"index": located.image.index, "bbox_2d": _padded(box, settings.zoom_margin)},
        f"Zoom on {label} to see its boundary.",
    )
    evidence = [located.image.index]
    if zoom.error:
        return Claim(f"{label.capitalize()}: zoom failed ({zoom.text})", tuple(evidence))
    evidence.append(zoom.image.index)
    inner = _box_on(workspace, located.image.index, zoom.image.index, box)
    outline = yield ToolCall(
        "segment", {"index": zoom.image.index, "bbox_2d": inner}, f"Outline {label}."
    )
    method = "not outlined, its box measured; "
    if outline.error:  # fall back to the candidate's box
        measured = yield ToolCall(
            "measure", {"index": zoom.image.index, "bbox_2d": inner}, f"Measure the box of {label}."
        )
    else:
        evidence.append(outline.image.index)
        method = f"outlined by {outline.payload.method}; "
        measured = yield ToolCall(
            "measure", {"index": outline.image.index}, f"Measure the outline of {label}."
        )
    if measured.error:
        return Claim(f"{label.capitalize()}: not measurable ({measured.text})", tuple(evidence))
    evidence.append(measured.image.index)
    values = ", ".join(m.describe() for m in measurements_of(measured.payload))
    return Claim(f"{label.capitalize()}: {method}{values}.", tuple(evidence))


def _video_plan(workspace: Workspace, settings: ProtocolSettings, question: str = "") -> Plan:
    """Overview -> the moments where the picture changes most -> a closer window and the frame
    at the sharpest change. Change is the mean grey-level difference between sampled frames."""
    overview = workspace.get(0)
    frames = overview.members
    changes = _changes(frames)
    ranked = sorted(range(len(changes)), key=lambda i: -changes[i])[: settings.video_moments]
    moments = sorted(i for i in ranked if changes[i] >= settings.min_change)
    findings = []
    for i in moments:
        first, last = frames[i], frames[i + 1]
        start, end = first.time_s or 0.0, last.time_s or 0.0
        window = yield ToolCall(
            "crop_video",
            {"start": _inside(first), "end": _inside(last), "n": settings.window_frames},
            f"The overview changes by {changes[i]:.1f} grey levels between {start:.2f} and "
            f"{end:.2f} s; look at that window frame by frame.",
        )
        if window.error:
            findings.append(Claim(f"{start:.2f}-{end:.2f} s: {window.text}", (overview.index,)))
            continue
        inner = window.image.members
        steps = _changes(inner)
        sharpest = inner[int(np.argmax(steps)) + 1] if steps else inner[0]
        frame = yield ToolCall(
            "get_frame",
            {"t": _inside(sharpest)},
            "Fetch the frame where the change is sharpest.",
        )
        evidence = (window.image.index,) + (() if frame.error else (frame.image.index,))
        findings.append(
            Claim(
                f"Change between {start:.2f} and {end:.2f} s (frames {first.ref.frame}-"
                f"{last.ref.frame}): mean grey-level difference {changes[i]:.1f}; "
                f"sharpest at {sharpest.time_s:.2f} s (frame {sharpest.ref.frame}).",
                evidence,
            )
        )
    yield _video_answer(overview, findings, question)


def _inside(frame) -> float:
    """The frame's start rounded *up* to the millisecond: a time the tools resolve to this frame.
    Rounded to nearest, 0.6333 s becomes 0.633 s, which is still the frame before."""
    return math.ceil((frame.time_s or 0.0) * 1000 - 1e-6) / 1000


def _changes(frames) -> list[float]:
    """Mean absolute grey-level difference between consecutive frames, on small thumbnails."""
    thumbs = [
        cv2.cvtColor(frame_view(f, 64), cv2.COLOR_RGB2GRAY).astype(np.float32) for f in frames
    ]
    return [
        float(np.abs(cv2.resize(b, a.shape[::-1]) - a).mean())
        for a, b in itertools.pairwise(thumbs)
    ]


def _video_answer(overview, findings: list[Claim], question: str = "") -> Answer:
    times = overview.times_s
    span = f"an overview of {len(times)} frames over {times[-1]:.1f} s"
    if not findings:
        text = f"The protocol's rules found no moment of change in {span}."
    else:
        text = (
            f"The protocol's rules marked {len(findings)} moment(s) of change in {span}. "
            + " ".join(c.text for c in findings)
        )
    if question_use(question, ()):
        text += " The protocol did not use the question: for a video it looks only for change."
    return Answer(
        text=f"Protocol demonstration (no AI model). {text}",
        findings=tuple(findings),
        thought="Summarise only where and when the picture changed.",
    )


def _padded(box, margin: float) -> list[float]:
    x1, y1, x2, y2 = box
    pad = max(4.0, margin * max(x2 - x1, y2 - y1))
    return [x1 - pad, y1 - pad, x2 + pad, y2 + pad]


def _box_on(workspace: Workspace, source_index: int, target_index: int, box) -> list[float]:
    """A box drawn on one image, expressed in another image's pixels via the source frame."""
    in_source: Box = workspace.get(source_index).to_source.map_box(tuple(box))
    on_target = workspace.get(target_index).to_source.inverse().map_box(in_source)
    return [round(v, 2) for v in on_target]


def _answer(located: Observation, findings: list[Claim], notes: str = "") -> Answer:
    if located.error:
        text = f"The protocol could not look for candidates: {located.text}"
    elif not findings:
        text = f"The protocol's rules found no candidate regions. {located.text}"
    else:
        text = (
            f"The protocol's rules marked {len(findings)} candidate region(s); each was zoomed, "
            "outlined and measured. " + " ".join(c.text for c in findings)
        )
    return Answer(
        text=f"Protocol demonstration (no AI model). {text} {notes}".rstrip(),
        findings=tuple(findings),
        thought="Summarise only what the tools measured.",
    )
