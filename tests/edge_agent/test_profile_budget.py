"""A model read runs under its prompt profile: at most the profile's max_steps turns (what the
checkpoint was trained for), recorded with the profile's label; MedScope's get_frame is our
get_frame's sheet of the three nearest frames; a provisional format says so in the reports."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np

from edge_agent.agent import Budget, run
from edge_agent.formats import format_for
from edge_agent.policies.session import ModelSession
from edge_agent.report.files import write_evidence, write_reports
from edge_agent.trajectory import PolicyRecord
from imaging.video import CineTimeline
from tests.edge_agent.test_session import Scripted
from tests.support import phantom_frame
from tools.toolbox import default_toolbox
from tools.video import show_overview
from tools.workspace import Workspace

ZOOM = (
    '<think>look</think> Action: Zoom-in\n```json\n[{"index": 1, "bbox_2d": [1, 2, 30, 40]}]\n```'
)


class _Model:
    """A model policy on the scripted back end, under each read's default profile."""

    record = PolicyRecord("scripted", "Scripted model", "test only", model={"file": "x.gguf"})

    def __init__(self, replies: list[str]) -> None:
        self.backend = Scripted(replies)

    def open(self, context):
        return ModelSession(self.backend, format_for(context))

    def close(self) -> None:
        pass


def test_a_model_read_takes_at_most_the_profiles_max_steps_and_records_them():
    workspace = Workspace()
    workspace.show(phantom_frame(np.full((64, 64), 40)), max_side=64)
    model = _Model([ZOOM] * 10)
    trajectory = run(workspace, "Lesion?", model, default_toolbox(), Budget(max_turns=16))
    assert trajectory.end_reason == "max_turns" and len(trajectory.steps) == 6
    assert trajectory.end_detail == "6 tool calls without an answer"
    assert (trajectory.policy.prompt_profile, trajectory.policy.max_turns) == ("ophiuchus-v1", 6)
    fewer = run(workspace, "Lesion?", _Model([ZOOM] * 10), default_toolbox(), Budget(max_turns=2))
    assert len(fewer.steps) == 2 and fewer.policy.max_turns == 2  # the smaller of the two


def _cine(count: int = 30, step_s: float = 0.1) -> CineTimeline:
    frames = [
        replace(phantom_frame(np.full((32, 48), 10 * k), modality="US"), time_s=k * step_s)
        for k in range(count)
    ]
    frames = [replace(f, ref=replace(f.ref, frame=k + 1)) for k, f in enumerate(frames)]
    return CineTimeline(frames)


def test_medscopes_get_frame_shows_the_three_nearest_frames_and_the_reports_say_provisional(
    tmp_path,
):
    workspace = Workspace(_cine())
    show_overview(workspace, 8, 512)
    model = _Model(
        [
            '<think>when</think><tool_call>{"name": "get_frame", "arguments": '
            '{"timestamp": 1.22}}</tool_call>',
            "<think>seen</think><answer>a change at 1.2 s</answer>",
        ]
    )
    trajectory = run(workspace, "What happens?", model, default_toolbox(), Budget())
    assert trajectory.end_reason == "answer", trajectory.end_detail
    step = trajectory.steps[0]
    assert step.tool == "get_frame" and step.arguments == {"t": 1.22, "nearest": 3}
    sheet = trajectory.images[step.image]
    assert sheet.frames == (12, 13, 14) and sheet.times_s == (1.1, 1.2, 1.3)  # around 1.22 s
    label = "medscope-provisional (provisional format)"
    assert trajectory.policy.prompt_profile == label
    assert step.usage.prompt_profile == label
    write_evidence(workspace, trajectory, tmp_path)
    write_reports(trajectory, tmp_path)
    assert json.loads((tmp_path / "report.json").read_text())["prompt_profile"] == label
    assert label in (tmp_path / "report.html").read_text()
