from __future__ import annotations

import itertools

import pytest

from edge_agent.agent import Answer, Budget, Claim, PolicyError, ReadContext, ToolCall, run
from edge_agent.trajectory import PolicyRecord, Trajectory
from imaging.records import to_plain
from tests.support import disc, phantom_frame
from tools.registry import Tool, Toolbox
from tools.toolbox import default_toolbox
from tools.workspace import ShownSize, Workspace


class Scripted:
    """A policy that plays a fixed list of decisions: a stand-in for a model's choices."""

    record = PolicyRecord("scripted", "Scripted test policy", "test only")
    shown_size = ShownSize()  # the configured size stands
    profile = None  # no prompt format: the budget stands

    def __init__(self, decisions) -> None:
        self.decisions = iter(decisions)
        self.seen: list[ReadContext] = []
        self.closed = False

    def open(self, context):
        return self

    def step(self, context):
        self.seen.append(context)
        decision = next(self.decisions)
        if isinstance(decision, Exception):
            raise decision
        return decision

    def close(self):
        self.closed = True


def workspace() -> Workspace:
    ws = Workspace()
    ws.show(phantom_frame(disc((100, 100), (50, 50), 10, (0.5, 0.5), 60, -100)))
    return ws


def test_a_mistaken_call_is_fed_back_and_the_read_goes_on():
    policy = Scripted(
        [
            ToolCall("zoom_in", {"index": 0, "bbox_2d": [500, 500, 600, 600]}, "look"),
            ToolCall("zoom_in", {"index": 0, "bbox_2d": [20, 20, 80, 80]}, "look again"),
            ToolCall("measure", {"index": 1, "bbox_2d": [0, 0, 512, 512]}),
            Answer("a disc", (Claim("disc of 60 HU", (1, 2)),)),
        ]
    )
    trajectory = run(workspace(), "what is it?", policy, default_toolbox(), Budget())
    first, second, third = trajectory.steps
    assert first.error and "lies outside image #0" in first.observation
    assert policy.seen[1].observation.error  # the policy read the error before its next step
    assert not second.error and second.image == 1
    assert to_plain(third.payload)["measurements"][0]["name"] == "area"
    assert trajectory.end_reason == "answer"
    assert trajectory.answer.findings[0].evidence == (1, 2)
    assert [image.step for image in trajectory.images] == [None, 2, 3]
    assert policy.closed


def test_trajectory_round_trips_through_json():
    policy = Scripted(
        [
            ToolCall("zoom_in", {"index": 0, "bbox_2d": [20, 20, 80, 80]}),
            Answer("done", (Claim("seen", (1,)),)),
        ]
    )
    trajectory = run(workspace(), "q", policy, default_toolbox(), Budget())
    again = Trajectory.from_json(trajectory.to_json())
    assert again == trajectory
    assert again.to_json() == trajectory.to_json()


def test_max_turns_ends_the_read_and_says_so():
    zooms = (ToolCall("zoom_in", {"index": 0, "bbox_2d": [0, 0, 50, 50]}) for _ in range(99))
    trajectory = run(workspace(), "q", Scripted(zooms), default_toolbox(), Budget(max_turns=4))
    assert trajectory.answer is None
    assert trajectory.end_reason == "max_turns" and len(trajectory.steps) == 4
    assert "4 tool calls" in trajectory.end_detail


def test_the_time_limit_ends_the_read_and_says_so():
    ticks = itertools.count(0, 10.0)  # every clock reading is 10 s later
    zooms = (ToolCall("zoom_in", {"index": 0, "bbox_2d": [0, 0, 50, 50]}) for _ in range(99))
    trajectory = run(
        workspace(),
        "q",
        Scripted(zooms),
        default_toolbox(),
        Budget(time_limit_s=45),
        clock=lambda: next(ticks),
    )
    assert trajectory.end_reason == "time_limit" and trajectory.answer is None
    assert 0 < len(trajectory.steps) < 5


def test_a_tool_that_crashes_becomes_an_observation():
    def broken(arguments, ws):
        raise ZeroDivisionError("division by zero")

    toolbox = Toolbox([Tool("broken", "always fails", {"type": "object"}, broken)])
    policy = Scripted([ToolCall("broken", {}), Answer("gave up")])
    trajectory = run(workspace(), "q", policy, toolbox, Budget())
    assert trajectory.steps[0].error
    assert "ZeroDivisionError" in trajectory.steps[0].observation
    assert trajectory.answer.text == "gave up"


def test_an_answer_citing_a_missing_image_goes_back_to_the_policy():
    policy = Scripted(
        [
            Answer("first try", (Claim("x", (7,)),)),
            Answer("second try", (Claim("x", (0,)),)),
        ]
    )
    trajectory = run(workspace(), "q", policy, default_toolbox(), Budget())
    assert trajectory.steps[0].tool == "answer" and trajectory.steps[0].error
    assert "cites image(s) [7]" in trajectory.steps[0].observation
    assert trajectory.answer.text == "second try"


def test_a_policy_that_gives_up_is_recorded():
    policy = Scripted([PolicyError("model emitted nothing usable")])
    trajectory = run(workspace(), "q", policy, default_toolbox(), Budget())
    assert trajectory.end_reason == "policy_error"
    assert trajectory.end_detail == "model emitted nothing usable"
    assert policy.closed


def test_a_policy_bug_is_raised_not_hidden():
    policy = Scripted([KeyError("bug")])
    with pytest.raises(KeyError):
        run(workspace(), "q", policy, default_toolbox(), Budget())
    assert policy.closed


def test_protocol_plan_answers_from_tool_results_only(sample_study):
    from edge_agent.policies.protocol import ProtocolPolicy
    from edge_agent.selection import select
    from imaging.study import load_study

    chosen = select(load_study(sample_study), ("CT",), 3)
    ws = Workspace()
    for frame in chosen.frames:
        ws.show(frame)
    trajectory = run(ws, "q", ProtocolPolicy(), default_toolbox(), Budget())
    tools_used = [s.tool for s in trajectory.steps]
    assert tools_used[:2] == ["window", "locate"] and "measure" in tools_used
    measured = [s for s in trajectory.steps if s.tool == "measure" and not s.error]
    assert len(trajectory.answer.findings) == len(measured) == 2
    for finding, step in zip(trajectory.answer.findings, measured, strict=True):
        area = to_plain(step.payload)["measurements"][0]["value"]
        assert f"area {area:g} mm²" in finding.text and step.image in finding.evidence


def test_a_finding_without_evidence_goes_back_to_the_policy():
    policy = Scripted(
        [
            Answer("first", (Claim("unsupported", ()),)),
            Answer("second", (Claim("seen", (0,)),)),
        ]
    )
    trajectory = run(workspace(), "q", policy, default_toolbox(), Budget())
    assert "a finding that cites no image" in trajectory.steps[0].observation
    assert trajectory.answer.text == "second"


def test_a_read_shows_images_at_the_size_the_policy_declares(sample_study, tmp_path):
    from edge_agent.config import Config, ReadSettings, ReportSettings
    from edge_agent.read import read_study

    config = Config(read=ReadSettings(shown_size=100), report=ReportSettings(dicom=False))
    sized = Scripted([Answer("seen", (Claim("first image", (0,)),))])
    sized.shown_size = ShownSize(max_side=64)
    declared = read_study(sample_study, tmp_path / "a", config, policy=sized).trajectory
    plain = Scripted([Answer("seen", (Claim("first image", (0,)),))])
    configured = read_study(sample_study, tmp_path / "b", config, policy=plain).trajectory
    assert {max(r.width, r.height) for r in declared.images} == {64}
    assert {max(r.width, r.height) for r in configured.images} == {100}
