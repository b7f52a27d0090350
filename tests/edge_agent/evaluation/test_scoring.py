"""Answers scored as a reader of VQA-RAD or SLAKE would score them."""

from __future__ import annotations

import json
from pathlib import Path

from edge_agent.agent import Answer
from edge_agent.config import Config
from edge_agent.evaluation.cases import read_cases
from edge_agent.evaluation.outputs import write_run_outputs
from edge_agent.evaluation.runner import run_eval
from tests.edge_agent.evaluation.conftest import write_image
from tests.edge_agent.evaluation.test_runner import Scripted

# VQA-RAD's CLOSED questions: (question, expected answer, the model's reply, right?)
CLOSED = [
    ("Is this a CT or an MRI?", "CT", "CT", True),
    ("Is this an axial or a coronal image?", "axial", "This is an Axial slice.", True),
    ("Which side is the mass on?", "left", "The mass is on the left.", True),
    ("Which lung is affected?", "right lung", "The left lung.", False),
    ("Is this a T1 or T2 image?", "T2", "T1", False),
    ("Is there a mass?", "yes", "Yes, there is a mass.", True),
    ("Is the liver enlarged?", "no", "Yes.", False),
]


class Replying(Scripted):
    """Answers each question with its reply, as a model might."""

    def __init__(self, replies: dict[str, str]) -> None:
        self.replies = replies

    def open(self, context):
        return self

    def step(self, context):
        return Answer(self.replies[context.question])


def test_closed_answers_that_are_not_yes_or_no_are_right_when_the_reply_names_them(
    tmp_path: Path,
):
    write_image(tmp_path / "img0.png", 12)
    rows = [
        {"image_name": "img0.png", "question": q, "answer": a, "answer_type": "CLOSED"}
        for q, a, _, _ in CLOSED
    ]
    cases = tmp_path / "vqa_rad.jsonl"
    cases.write_text("".join(json.dumps(row) + "\n" for row in rows))
    policy = Replying({q: reply for q, _, reply, _ in CLOSED})
    results = run_eval(read_cases(cases), Config(), tmp_path / "run", policy=policy)
    assert [r.score.correct for r in results] == [right for *_, right in CLOSED]
    write_run_outputs(tmp_path / "run", results)
    closed = json.loads((tmp_path / "run" / "metrics.json").read_text())["closed_accuracy"]
    assert (closed["k"], closed["n"]) == (4, 7)
