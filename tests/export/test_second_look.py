"""The second-look task, its SFT samples and the trainer: deterministic, in the runtime's format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_agent.evaluation.cases import read_cases
from edge_agent.evaluation.scoring import iou
from edge_agent.formats import load_profile
from edge_agent.formats.ophiuchus import OphiuchusFormat
from edge_agent.formats.question import Question
from export.look_samples import PROFILE, render_sample
from export.second_look import CELL, GRID, SHOWN, make_case, write_case_set
from tools.toolbox import default_toolbox


@pytest.fixture(scope="module")
def toolbox():
    box = default_toolbox()
    yield box
    box.close()


def test_a_case_is_the_same_for_the_same_seed_and_number_and_differs_otherwise():
    first, again, other = make_case(3, 7), make_case(3, 7), make_case(3, 8)
    np.testing.assert_array_equal(first.pixels, again.pixels)
    assert (first.row, first.col, first.answer) == (again.row, again.col, again.answer)
    assert not np.array_equal(first.pixels, other.pixels)


def test_answers_and_cells_are_spread_over_a_set():
    cases = [make_case(0, n) for n in range(200)]
    horizontal = sum(c.answer == "horizontal" for c in cases)
    assert 70 <= horizontal <= 130  # near half: the no-tools chance level is 50 %
    assert len({(c.row, c.col) for c in cases}) == GRID * GRID


def test_the_taught_zoom_box_overlaps_the_lesion_by_more_than_half():
    for n in range(50):
        case = make_case(0, n)
        scale = case.pixels.shape[0] / SHOWN
        zoom = [v * scale for v in case.zoom_box]
        assert iou(zoom, case.lesion_box) >= 0.5
        assert case.zoom_box[2] - case.zoom_box[0] < CELL


def test_the_stripes_show_in_the_lesion_at_source_resolution():
    case = make_case(0, 5)
    x1, y1, x2, y2 = (int(v) for v in case.lesion_box)
    inner = case.pixels[y1 + 10 : y2 - 10, x1 + 10 : x2 - 10].astype(float)
    along_rows = np.abs(np.diff(inner, axis=0)).mean()
    along_cols = np.abs(np.diff(inner, axis=1)).mean()
    # horizontal stripes change from row to row, not along a row
    if case.answer == "horizontal":
        assert along_rows > 3 * along_cols
    else:
        assert along_cols > 3 * along_rows


def test_the_case_set_is_read_by_eval_as_multiple_choice(tmp_path):
    path = write_case_set(tmp_path, 4, seed=1)
    case_set = read_cases(path)
    assert [c.kind for c in case_set.cases] == ["choice"] * 4
    rows = json.loads(path.read_text())
    assert [c.answer for c in case_set.cases] == [r["answer_letter"] for r in rows]
    assert all((tmp_path / r["image"]).is_file() for r in rows)


def test_a_sample_is_the_runtime_prompt_and_replies_the_format_reads_back(toolbox):
    case = make_case(0, 2)
    sample = render_sample(case, toolbox)
    profile = load_profile(PROFILE)
    prompt = sample.pieces[0].text
    assert prompt.startswith("<|im_start|>system\n" + profile.system)
    assert "A. horizontal\nB. vertical" in prompt
    assert len(sample.images) == 2 and sample.images[0].shape == (256, 256, 3)
    replies = [p.text for p in sample.pieces if p.trained and p.text != "<|im_end|>"]
    form = OphiuchusFormat(profile, originals=1, question=Question.parse(case.question))
    call = form.parse(replies[0], 1)
    assert call.tool == "zoom_in" and call.arguments["bbox_2d"] == case.zoom_box
    assert form.parse(replies[1], 2).answer == case.letter
    # every reply ends with the chat template's end of turn, trained as the model's to write
    trained = [p.text for p in sample.pieces if p.trained]
    assert trained.count("<|im_end|>") == 2


def test_the_trainer_takes_the_same_steps_twice(tmp_path):
    from export.train_agent import Schedule, train_tiny_agent

    schedule = Schedule(vision_steps=1, locate_steps=1, full_steps=1, batch=2)
    curves = []
    for name in ("a", "b"):
        train_tiny_agent(tmp_path / name, schedule, seed=0)
        rows = [json.loads(line) for line in (tmp_path / name / "learning-curve.jsonl").open()]
        curves.append([(r["stage"], r["loss"]) for r in rows])
    assert [stage for stage, _ in curves[0]] == ["vision", "locate", "full"]
    assert curves[0] == curves[1]
    weights = [(tmp_path / n / "model.safetensors").read_bytes() for n in ("a", "b")]
    assert weights[0] == weights[1]
    # no time box unless asked: every step ran, on the threads the record names
    record = json.loads((tmp_path / "a" / "edge-agent-tiny.json").read_text())
    assert record["schedule"]["minutes"] is None
    assert record["cut"] == [] and record["threads"] == 2


def test_a_time_box_names_the_stages_it_cut(tmp_path):
    """Opt-in: a stage stopped before its steps is reported, not passed off as the reference."""
    from export.train_agent import Schedule, train_tiny_agent

    schedule = Schedule(vision_steps=1, locate_steps=1, full_steps=1, batch=2, minutes=1e-9)
    trained = train_tiny_agent(tmp_path / "cut", schedule, seed=0)
    assert [(c.stage, c.taken, c.steps) for c in trained.cut] == [
        ("vision", 0, 1),
        ("locate", 0, 1),
        ("full", 0, 1),
    ]
    record = json.loads((tmp_path / "cut" / "edge-agent-tiny.json").read_text())
    assert [c["stage"] for c in record["cut"]] == ["vision", "locate", "full"]
