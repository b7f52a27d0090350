"""The embedded default: a fixed, per-modality plan that drives the same tools as a model would.

It is a demonstration without an AI model. Its answer is built only from what the tools returned,
and the report says so plainly."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

from edge_agent.agent import Answer, Claim, Decision, PolicyError, ReadContext, ToolCall
from edge_agent.trajectory import PolicyRecord
from edge_agent.windowing import preset
from tools.measure import describe
from tools.observation import Observation
from tools.workspace import Box, Workspace

DISCLAIMER = (
    "Demonstration without an AI model: a fixed rule-based protocol (HU / intensity thresholds, "
    "GrabCut or the configured segmentation model, measurements) drove the tools; each step "
    "names the method that ran. Not a diagnosis; not for clinical use."
)

Plan = Generator[Decision, Observation, None]


@dataclass(frozen=True)
class ProtocolSettings:
    ct_captions: tuple[str, ...] = ("hypodense region", "hyperdense region")
    other_captions: tuple[str, ...] = ("hyperintense region",)
    candidates: int = 2  # how many located candidates are zoomed, segmented and measured
    zoom_margin: float = 0.5  # context around a candidate, as a fraction of its size


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

    def open(self, context: ReadContext) -> _PlanSession:
        return _PlanSession(_plan(context.workspace, self._settings))

    def close(self) -> None:
        """Nothing to free: the protocol holds no model."""


class _PlanSession:
    """Feeds each observation into the plan generator and returns its next decision."""

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


def _plan(workspace: Workspace, settings: ProtocolSettings) -> Plan:
    shown = sum(1 for image in workspace if image.tool == "shown")
    key = workspace.get(shown // 2)
    ct = key.frame.value_unit == "[hnsf'U]"
    index = key.index
    if ct:
        soft = preset("CT", "soft tissue")
        seen = yield ToolCall(
            "window",
            {"index": index, "center": soft.center, "width": soft.width},
            "Show the key slice in a soft-tissue window before looking for candidates.",
        )
        index = seen.image.index
    captions = settings.ct_captions if ct else settings.other_captions
    located = yield ToolCall(
        "locate",
        {"index": index, "captions": list(captions)},
        f"Look for candidate regions: {', '.join(captions)}.",
    )
    findings = []
    for candidate in located.payload.get("candidates", [])[: settings.candidates]:
        finding = yield from _examine(workspace, located, candidate, settings)
        findings.append(finding)
    yield _answer(located, findings)


def _examine(workspace: Workspace, located: Observation, candidate: dict, settings) -> Plan:
    """Zoom on one candidate, outline it, measure it; returns the finding it supports."""
    box = candidate["bbox_2d"]
    label = f"candidate {candidate['rank']} ({candidate['class']})"
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
    if outline.error:  # fall back to the candidate's box
        measured = yield ToolCall(
            "measure", {"index": zoom.image.index, "bbox_2d": inner}, f"Measure the box of {label}."
        )
    else:
        evidence.append(outline.image.index)
        measured = yield ToolCall(
            "measure", {"index": outline.image.index}, f"Measure the outline of {label}."
        )
    if measured.error:
        return Claim(f"{label.capitalize()}: not measurable ({measured.text})", tuple(evidence))
    evidence.append(measured.image.index)
    values = ", ".join(describe(m) for m in measured.payload["measurements"])
    return Claim(f"{label.capitalize()}: {values}.", tuple(evidence))


def _padded(box, margin: float) -> list[float]:
    x1, y1, x2, y2 = box
    pad = max(4.0, margin * max(x2 - x1, y2 - y1))
    return [x1 - pad, y1 - pad, x2 + pad, y2 + pad]


def _box_on(workspace: Workspace, source_index: int, target_index: int, box) -> list[float]:
    """A box drawn on one image, expressed in another image's pixels via the source frame."""
    in_source: Box = workspace.get(source_index).to_source.map_box(tuple(box))
    on_target = workspace.get(target_index).to_source.inverse().map_box(in_source)
    return [round(v, 2) for v in on_target]


def _answer(located: Observation, findings: list[Claim]) -> Answer:
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
        text=f"Protocol demonstration (no AI model). {text}",
        findings=tuple(findings),
        thought="Summarise only what the tools measured.",
    )
