"""The protocol policy looks for what the question names, and answers even when tools refuse."""

from __future__ import annotations

from edge_agent.agent import Budget, run
from edge_agent.evaluation.runner import refusing
from edge_agent.policies.protocol import ProtocolPolicy
from tests.support import disc, phantom_frame
from tools.toolbox import default_toolbox
from tools.workspace import Workspace


def ct_workspace() -> Workspace:
    ws = Workspace()
    ws.show(phantom_frame(disc((120, 120), (60, 60), 12, (0.5, 0.5), 10, 60)))
    return ws


def located_captions(question: str) -> list[str]:
    trajectory = run(ct_workspace(), question, ProtocolPolicy(), default_toolbox(), Budget())
    return next(s.arguments["captions"] for s in trajectory.steps if s.tool == "locate")


def test_a_question_naming_a_tissue_class_is_what_the_protocol_locates():
    assert located_captions("Is there a hypodense lesion larger than 10 mm?") == [
        "hypodense region"
    ]
    assert located_captions("Which regions stand out?") == [
        "hypodense region",
        "hyperdense region",
    ]


def test_with_every_tool_refused_the_protocol_still_answers_without_findings():
    tools = refusing(default_toolbox())
    trajectory = run(ct_workspace(), "q", ProtocolPolicy(), tools, Budget())
    assert trajectory.end_reason == "answer"
    assert [s.tool for s in trajectory.steps] == ["window", "locate"]
    assert all(s.error and "switched off" in s.observation for s in trajectory.steps)
    assert "could not look for candidates" in trajectory.answer.text
    assert trajectory.answer.findings == ()
