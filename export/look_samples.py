"""SFT samples for the second-look task: an oracle policy (the Policy protocol: zoom on the lesion,
then answer) runs through the agent loop on the real tools, and each turn is written by the same
code a model session uses (`formats.chat.turn_input` with the prompt profile), so a sample is
exactly the text and images the runtime shows a model, plus the replies it should write."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_agent.agent import Answer, Budget, Claim, Decision, ReadContext, ToolCall, run
from edge_agent.formats import format_for, load_profile
from edge_agent.formats.chat import turn_input
from edge_agent.formats.profile import Profile
from edge_agent.formats.turns import ProfileFormat
from edge_agent.policies.onnx_trt import IMAGE as IMAGE_MARKER  # the chat template's image
from edge_agent.policies.session import END_OF_REPLY
from edge_agent.trajectory import PolicyRecord
from export.second_look import SHOWN, LookCase
from tools.registry import Toolbox
from tools.workspace import ShownSize, Workspace

PROFILE = "ophiuchus-v1"  # the image reads' default profile: what the reference agent speaks
LOOK_THOUGHT = "The lesion is too small to read at this size; zoom in on it."
ANSWER_THOUGHT = "The zoomed lesion shows {answer} stripes."


@dataclass(frozen=True)
class Piece:
    text: str
    trained: bool  # a reply the model learns to write (loss on it), else prompt


@dataclass(frozen=True)
class Sample:
    pieces: tuple[Piece, ...]
    images: tuple[np.ndarray, ...]  # RGB as shown to the model, in marker order


def zoom_reply(profile: Profile, index: int, box: list[int]) -> str:
    """A Zoom-in call on trained image `index` in the profile's trained syntax."""
    spec = profile.action_for("zoom_in")
    call = f"{spec.action}\n```json\n{json.dumps([{'index': index, 'bbox_2d': box}])}\n```"
    wrapped = f"<tool_call>{call}</tool_call>" if profile.tool_call_wrapper else call
    return f"<think> {LOOK_THOUGHT} </think> Action: {wrapped}"


def answer_reply(profile: Profile, answer: str, letter: str) -> str:
    thought = ANSWER_THOUGHT.format(answer=answer)
    return (
        f"<think> {thought} </think> Action: {profile.answer_action}\n<answer> {letter} </answer>"
    )


def decided(form: ProfileFormat, reply: str, context: ReadContext) -> Decision:
    """What the runtime makes of `reply`: the format parses it (trained indices, the profile's
    fixed arguments), so the oracle's call runs exactly as a model's would."""
    parsed = form.parse(reply, len(context.workspace))
    if parsed.tool is not None:
        return ToolCall(parsed.tool, parsed.arguments, parsed.thought)
    evidence = (form.newest_shown(context.workspace),)
    text = f"{parsed.answer}. {parsed.option}"
    return Answer(text, (Claim(text, evidence),), parsed.thought)


class OraclePolicy:
    """Knows the lesion: zooms on its cell's taught box, then answers the option letter."""

    def __init__(self, case: LookCase, profile: Profile) -> None:
        self.case, self.profile = case, profile
        self.pieces: list[Piece] = []
        self.images: list[np.ndarray] = []

    @property
    def record(self) -> PolicyRecord:
        return PolicyRecord(name="oracle", label="second-look oracle", disclaimer="synthetic")

    @property
    def shown_size(self) -> ShownSize:
        return ShownSize(max_side=SHOWN)

    def open(self, context: ReadContext) -> _OracleSession:
        return _OracleSession(self, format_for(context, self.profile))

    def close(self) -> None:
        """Nothing to free."""


class _OracleSession:
    def __init__(self, policy: OraclePolicy, form: ProfileFormat) -> None:
        self.policy, self.format = policy, form
        self.profile = form.profile
        self.seen, self.pending = 0, ""

    def step(self, context: ReadContext) -> Decision:
        text, pictures = turn_input(self.format, context, self.seen, IMAGE_MARKER, self.pending)
        self.seen = len(context.workspace)
        case, policy = self.policy.case, self.policy
        if not context.steps:
            reply = zoom_reply(self.profile, self.format.shown(1).trained_index(0), case.zoom_box)
        else:
            reply = answer_reply(self.profile, case.answer, case.letter)
        if text.startswith(END_OF_REPLY):  # the end of the last reply is the model's to write
            policy.pieces.append(Piece(END_OF_REPLY.rstrip("\n"), True))
            text = text[len(END_OF_REPLY.rstrip("\n")) :]
        policy.pieces += [Piece(text, False), Piece(reply, True)]
        policy.images += pictures
        self.pending = END_OF_REPLY
        return decided(self.format, reply, context)

    def close(self) -> None:
        policy = self.policy
        if policy.pieces and policy.pieces[-1].trained:
            policy.pieces.append(Piece(END_OF_REPLY.rstrip("\n"), True))


def case_study(case: LookCase, folder: Path) -> Path:
    """The case as `eval` reads an image: its PNG in `folder` made into a one-image study
    (`folder`/input)."""
    from edge_agent.evaluation.sources import image_study

    png = folder / f"{case.id}.png"
    cv2.imwrite(str(png), case.pixels)
    return image_study(png, folder / "input")


def workspace_for(case: LookCase, scratch: Path) -> Workspace:
    """The case's image as a read shows it: its one-image study, loaded and shown at the
    reference agent's size."""
    from imaging.study import load_study

    study = load_study(case_study(case, scratch))
    workspace = Workspace()
    workspace.show(study.series[0].frames[0], max_side=SHOWN)
    return workspace


def render_sample(case: LookCase, toolbox: Toolbox, profile: Profile | None = None) -> Sample:
    """One two-turn trajectory (zoom, answer) as the runtime's turn texts and images."""
    policy = OraclePolicy(case, profile or load_profile(PROFILE))
    with tempfile.TemporaryDirectory(prefix="edge-agent-look-") as scratch:
        workspace = workspace_for(case, Path(scratch))
        trajectory = run(workspace, case.question, policy, toolbox, Budget())
    if trajectory.answer is None:
        raise RuntimeError(f"the oracle did not answer case {case.id}: {trajectory.end_detail}")
    return Sample(tuple(policy.pieces), tuple(policy.images))
