"""The protocol policy looks for what the question names, and answers even when tools refuse."""

from __future__ import annotations

import json

from edge_agent.agent import Budget, run
from edge_agent.config import Config
from edge_agent.evaluation.runner import refusing
from edge_agent.policies.protocol import ProtocolPolicy, question_use
from tests.support import disc, phantom_frame, run_cli
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


def test_the_answer_says_which_words_of_the_question_the_protocol_could_not_use():
    trajectory = run(
        ct_workspace(), "Hypodense liver lesion?", ProtocolPolicy(), default_toolbox(), Budget()
    )
    assert "used only 'hypodense'" in trajectory.answer.text
    assert "could not use 'liver', 'lesion'" in trajectory.answer.text
    default = run(
        ct_workspace(), Config().read.question, ProtocolPolicy(), default_toolbox(), Budget()
    )
    assert "could not use" not in default.answer.text  # the question the protocol was made for


def test_words_in_any_script_are_named_whole():
    assert "could not use 'läsion', 'im', '肝臓', 'nodules', '1.5'" in question_use(
        "Hyperdense Läsion im 肝臓? nodules. ≥1.5"
    )


def test_a_read_says_how_many_candidates_it_left_out_and_how_each_was_outlined(sample_study):
    done = run_cli("read", sample_study, "--out", sample_study.parent / "out")
    assert done.returncode == 0, done.stderr
    answer = json.loads((sample_study.parent / "out" / "report.json").read_text())["answer"]
    assert "3 candidates found, 2 examined (candidates = 2 in [policy.protocol])" in answer
    assert answer in done.stdout  # printed as written, not eaten as markup
    assert answer.count("outlined by ") == 2
    assert "otsu threshold (weight-free fallback: GrabCut found no foreground)" in answer
