"""The agent loop: ask the policy for a step, run the tool, feed the observation back,
until an answer or a budget ends the read. Every end is recorded with its reason."""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from edge_agent import __version__
from edge_agent.trajectory import (
    AnswerRecord,
    ClaimRecord,
    ImageRecord,
    PolicyRecord,
    StepRecord,
    Trajectory,
)
from edge_agent.usage import TurnUsage
from tools.errors import ToolError
from tools.observation import Observation
from tools.registry import Toolbox
from tools.workspace import ShownSize, Workspace, WorkspaceImage

if TYPE_CHECKING:
    from edge_agent.formats.profile import Profile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    max_turns: int = 16  # tool calls before the read ends without an answer
    time_limit_s: float = 300.0
    # per turn, for model policies: room for a whole thought (1 024 tokens in the shipped
    # profiles) and the call or answer after it
    max_new_tokens: int = 2048

    def __post_init__(self) -> None:
        if self.max_turns < 1 or self.time_limit_s <= 0 or self.max_new_tokens < 1:
            raise ValueError(f"budget values must be positive: {self}")


@dataclass(frozen=True)
class ToolCall:
    tool: str
    arguments: Mapping
    thought: str = ""
    usage: TurnUsage | None = None  # a model policy's cost of the turn


@dataclass(frozen=True)
class Claim:
    """One finding as the policy states it, citing the workspace images that show it."""

    text: str
    evidence: tuple[int, ...]


@dataclass(frozen=True)
class Answer:
    text: str
    findings: tuple[Claim, ...] = ()
    thought: str = ""
    usage: TurnUsage | None = None


Decision = ToolCall | Answer


class PolicyError(Exception):
    """The policy could not produce a step (e.g. a model emitted something unusable)."""


@dataclass(frozen=True)
class ReadContext:
    """What a policy sees at each step. `steps` holds everything so far, oldest first."""

    question: str
    workspace: Workspace
    toolbox: Toolbox
    budget: Budget
    steps: tuple[StepRecord, ...] = ()
    observation: Observation | None = None  # the newest one


class PolicySession(Protocol):
    # the prompt profile a model session speaks (its max_steps caps the read's turns); None for
    # a policy without one
    profile: Profile | None

    def step(self, context: ReadContext) -> Decision: ...

    def close(self) -> None: ...


class Policy(Protocol):
    @property
    def record(self) -> PolicyRecord: ...

    @property
    def shown_size(self) -> ShownSize:
        """How large the images the policy was trained to see are (the shown images are
        resized to it); empty leaves the size to the configuration."""
        ...

    def open(self, context: ReadContext) -> PolicySession:
        """One session per read: model policies keep their KV cache in it."""
        ...

    def close(self) -> None:
        """Free what the policy holds across reads (a loaded model)."""
        ...


StepCallback = Callable[[StepRecord], None]


def run(
    workspace: Workspace,
    question: str,
    policy: Policy,
    toolbox: Toolbox,
    budget: Budget,
    *,
    on_step: StepCallback | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Trajectory:
    """Read the shown images in `workspace` (index 0..n-1) and return the whole trajectory."""
    if not len(workspace):
        raise ValueError("the workspace holds no shown images")
    started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    start = clock()
    context = ReadContext(question, workspace, toolbox, budget)
    session = policy.open(context)
    record, budget = _under_profile(policy.record, budget, session.profile)
    context = replace(context, budget=budget)
    try:
        context, answer, end = turns(session, context, on_step=on_step, clock=clock, start=start)
    finally:
        session.close()
    end_reason, end_detail = end
    if answer is None:
        log.warning("read ended without an answer: %s (%s)", end_reason, end_detail)
    made_by = {s.image: s.number for s in context.steps if s.image is not None}
    return Trajectory(
        study_instance_uid=workspace.get(0).frame.ref.study_instance_uid,
        series_instance_uid=workspace.get(0).frame.ref.series_instance_uid,
        modality=workspace.get(0).frame.modality,
        question=question,
        policy=record,
        images=tuple(image_record(image, made_by.get(image.index)) for image in workspace),
        steps=context.steps,
        answer=answer,
        end_reason=end_reason,
        end_detail=end_detail,
        started_at=started_at,
        duration_s=round(clock() - start, 3),
        software={"edge_agent": __version__},
    )


def turns(
    session: PolicySession,
    context: ReadContext,
    *,
    on_step: StepCallback | None = None,
    clock: Callable[[], float] = time.monotonic,
    start: float | None = None,
) -> tuple[ReadContext, AnswerRecord | None, tuple[str, str]]:
    """Steps of one session until an answer or the budget ends them (the budget counts the
    steps taken here: a follow-up after a read gets its own); the context with every step, the
    answer, and why it ended. `start`: when the read began (its time limit counts from it)."""
    start, first = clock() if start is None else start, len(context.steps)
    while (end := _budget_end(context.budget, len(context.steps) - first, clock() - start)) is None:
        t0 = clock()
        try:
            decision = session.step(context)
        except PolicyError as exc:
            log.warning("policy gave up: %s", exc)
            return context, None, ("policy_error", str(exc))
        policy_s = clock() - t0
        if isinstance(decision, Answer) and not _missing_evidence(decision, context.workspace):
            return context, _answer_record(decision), ("answer", "")
        step, observation = _take_step(decision, context, start, policy_s, clock)
        context = replace(context, steps=(*context.steps, step), observation=observation)
        if on_step:
            on_step(step)
    return context, None, end


def _under_profile(
    record: PolicyRecord, budget: Budget, profile: Profile | None
) -> tuple[PolicyRecord, Budget]:
    """A model read takes at most the turns its checkpoint was trained for (the profile's
    max_steps) and records its profile, so a provisional format says so in the record."""
    if profile is None:
        return record, budget
    budget = replace(budget, max_turns=min(budget.max_turns, profile.max_steps))
    return replace(record, prompt_profile=profile.label, max_turns=budget.max_turns), budget


def _budget_end(budget: Budget, steps: int, elapsed: float) -> tuple[str, str] | None:
    if elapsed >= budget.time_limit_s:
        return "time_limit", f"{elapsed:.1f} s used of the {budget.time_limit_s:g} s limit"
    if steps >= budget.max_turns:
        return "max_turns", f"{budget.max_turns} tool calls without an answer"
    return None


def _take_step(
    decision: Decision, context: ReadContext, start: float, policy_s: float, clock
) -> tuple[StepRecord, Observation]:
    """Run a tool call, or turn back an answer that cites images that do not exist; either way
    a mistake becomes an error observation the policy reads and can correct."""
    t0 = clock()
    if isinstance(decision, Answer):
        missing = _missing_evidence(decision, context.workspace)
        problem = missing if isinstance(missing, str) else f"image(s) {missing}, which do not exist"
        observation = Observation.failure(
            f"the answer cites {problem}; images #0..#{len(context.workspace) - 1} exist"
        )
        decision = ToolCall("answer", {"text": decision.text}, decision.thought, decision.usage)
    else:
        observation = _observe(decision, context)
    return (
        StepRecord(
            number=len(context.steps) + 1,
            tool=decision.tool,
            arguments=dict(decision.arguments),
            thought=decision.thought,
            observation=observation.text,
            image=observation.image.index if observation.image is not None else None,
            payload=observation.payload,
            error=observation.error,
            started_s=round(t0 - start - policy_s, 3),
            policy_s=round(policy_s, 3),
            tool_s=round(clock() - t0, 3),
            usage=decision.usage,
        ),
        observation,
    )


def _observe(call: ToolCall, context: ReadContext) -> Observation:
    try:
        return context.toolbox.call(call.tool, call.arguments, context.workspace)
    except ToolError as exc:
        return Observation.failure(str(exc))
    except Exception as exc:  # a tool's own bug must not end a read; it is logged in full
        log.exception("tool %s failed", call.tool)
        return Observation.failure(f"tool {call.tool} failed: {type(exc).__name__}: {exc}")


def _missing_evidence(answer: Answer, workspace: Workspace) -> list[int] | str:
    """What is wrong with the answer's citations: missing images, a finding citing none, or
    nothing (an empty list)."""
    if any(not claim.evidence for claim in answer.findings):
        return "a finding that cites no image"
    cited = {index for claim in answer.findings for index in claim.evidence}
    return sorted(i for i in cited if not 0 <= i < len(workspace))


def _answer_record(answer: Answer) -> AnswerRecord:
    return AnswerRecord(
        text=answer.text,
        thought=answer.thought,
        findings=tuple(ClaimRecord(c.text, tuple(c.evidence)) for c in answer.findings),
        usage=answer.usage,
    )


# The name of every evidence file a read writes (an image, its mask, a contact sheet's frames).
EVIDENCE_NAME = re.compile(r"\d{3,}_[A-Za-z0-9_.-]+\.png")


def evidence_file(image: WorkspaceImage) -> str:
    return f"evidence/{image.index:03d}_{image.tool}.png"


def mask_file(image: WorkspaceImage) -> str | None:
    """A tool's mask is kept beside the image, so the SEG and SR outlines can be written again
    from the output folder alone."""
    if image.mask is None:
        return None
    return evidence_file(image).removesuffix(".png") + "_mask.png"


def frame_files(image: WorkspaceImage) -> tuple[str, ...]:
    """A contact sheet's frames are kept as evidence of their own, full size."""
    stem = evidence_file(image).removesuffix(".png")
    return tuple(f"{stem}_frame{frame.ref.frame:05d}.png" for frame in image.members)


def image_record(image: WorkspaceImage, step: int | None) -> ImageRecord:
    timed = bool(image.times_s)
    return ImageRecord(
        index=image.index,
        file=evidence_file(image),
        width=image.size[0],
        height=image.size[1],
        source=image.frame.ref,
        to_source=tuple(round(v, 9) for v in image.to_source.matrix),
        roi_px=tuple(round(v, 3) for v in image.source_roi),
        tool=image.tool,
        parent=image.parent,
        step=step,
        window=image.window.to_json() if image.window else None,
        frames=tuple(f.ref.frame for f in image.members or (image.frame,)) if timed else (),
        times_s=tuple(round(t, 6) for t in image.times_s),
        frame_files=frame_files(image),
        mask_file=mask_file(image),
        instance_number=image.frame.instance_number,
        slice_position_mm=_rounded(image.frame.geometry.slice_position_mm, 3),
        mm_per_px=_rounded(_mm_per_px(image), 6),
        # a zoom or resize keeps the axes (the affine only scales and shifts); a sheet has many
        edges=() if image.members else tuple(image.frame.geometry.edge_letters),
    )


def _mm_per_px(image: WorkspaceImage) -> float | None:
    """Millimetres per pixel along the image's rows: the source's column spacing times how many
    source pixels one shown pixel spans."""
    spacing = image.frame.geometry.pixel_spacing
    if spacing is None or image.members:  # a contact sheet has no one scale
        return None
    a, _, _, d, _, _ = image.to_source.matrix
    return math.hypot(a, d) * spacing[1]


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
