from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_agent.evaluation.cases import CaseFileError, read_cases
from edge_agent.evaluation.runner import asked
from edge_agent.evaluation.scoring import normalise, option_letter
from tests.edge_agent.evaluation.conftest import write_image


def test_vqa_rad_rows_become_closed_and_open_cases(vqa_set: Path):
    cases = read_cases(vqa_set)
    assert [(c.id, c.kind, c.answer) for c in cases.cases] == [
        ("vqa0", "open", "bright disc"),
        ("vqa1", "closed", "yes"),
        ("vqa2", "closed", "yes"),
    ]
    assert cases.cases[0].image.endswith("images/img0.png")
    assert cases.problems == ()


def test_multiple_choice_layouts_give_the_correct_letter(tmp_path: Path):
    write_image(tmp_path / "a.png", 8)
    omni = {  # OmniMedVQA: option_A.., the answer as text
        "question_id": "o1",
        "image_path": "a.png",
        "question": "What modality is this?",
        "option_A": "CT",
        "option_B": "MRI",
        "gt_answer": "MRI",
    }
    medxpert = {  # MedXpertQA-MM: options as a dict, label the letter, images a list
        "id": "m1",
        "images": ["a.png"],
        "question": "Which finding?",
        "options": {"A": "cyst", "B": "mass", "C": "normal"},
        "label": "C",
    }
    path = tmp_path / "mc.jsonl"
    path.write_text(json.dumps(omni) + "\n" + json.dumps(medxpert) + "\n")
    first, second = read_cases(path).cases
    assert (first.kind, first.answer, first.options) == ("choice", "B", ("CT", "MRI"))
    assert (second.kind, second.answer, second.options) == (
        "choice",
        "C",
        ("cyst", "mass", "normal"),
    )


def test_each_bad_row_is_named_with_its_problem_and_the_rest_are_kept(tmp_path: Path):
    write_image(tmp_path / "a.png", 8)
    lines = [
        json.dumps({"id": "ok", "image": "a.png", "question": "q?", "answer": "yes"}),
        "{not json",
        json.dumps({"id": "gone", "image": "missing.png", "question": "q?", "answer": "no"}),
        json.dumps({"id": "nothing", "image": "a.png", "question": "q?"}),
        json.dumps({"id": "box", "image": "a.png", "question": "q?", "box": [5, 5, 1, 9]}),
        json.dumps({"image": "a.png", "question": "q?", "options": ["x", "y"], "label": "D"}),
        json.dumps({"id": "ok", "image": "a.png", "question": "again?", "answer": "no"}),
    ]
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(lines) + "\n")
    cases = read_cases(path)
    assert [c.id for c in cases.cases] == ["ok"]
    problems = {p.where: p.problem for p in cases.problems}
    assert problems["cases.jsonl:2"].startswith("not JSON")
    assert "'missing.png' does not exist" in problems["cases.jsonl:3"]
    assert "no expected answer, region or measurement" in problems["cases.jsonl:4"]
    assert "x2 > x1" in problems["cases.jsonl:5"]
    assert "correct option 'D' is not one of A-B" in problems["cases.jsonl:6"]
    assert "used by an earlier row" in problems["cases.jsonl:7"]


def test_a_site_list_reads_studies_measurements_and_uids(site_list: Path, tmp_path: Path):
    cases = read_cases(site_list)
    ct1 = cases.cases[0]
    assert ct1.kind == "detect" and ct1.study.endswith("ct")
    assert (ct1.measurements[0].name, ct1.measurements[0].value) == ("long axis", 20.0)
    assert [p.where for p in cases.problems] == ["cases.csv:4"]
    uid_file = tmp_path / "uids.csv"
    uid_file.write_text("study_uid,question,answer\n1.2.3.4,q?,yes\n1.2.x,q?,no\n")
    by_uid = read_cases(uid_file)
    assert by_uid.cases[0].study_uid == "1.2.3.4"
    assert "is not a DICOM UID" in by_uid.problems[0].problem


def test_an_unreadable_case_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(CaseFileError, match=r"case files are \.csv, \.jsonl or \.json"):
        read_cases(tmp_path / "cases.txt")
    with pytest.raises(CaseFileError, match="cannot read case file"):
        read_cases(tmp_path / "absent.csv")


def test_answers_are_read_back_as_option_letters_and_normal_forms():
    options = ("computed tomography", "magnetic resonance")
    assert option_letter("B", options) == "B"
    assert option_letter("(A) computed tomography", options) == "A"
    assert option_letter("The answer is b.", options) == "B"
    assert option_letter("It is a magnetic resonance image", options) == "B"
    assert option_letter("either", options) == ""
    assert normalise("The  Liver, left lobe.") == "liver left lobe"


def test_a_multiple_choice_question_is_asked_with_its_lettered_options(tmp_path: Path):
    write_image(tmp_path / "a.png", 8)
    rows = [
        {
            "id": "o",
            "image": "a.png",
            "question": "Modality?",
            "options": ["CT", "MRI"],
            "label": "B",
        },
        {
            "id": "m",
            "image": "a.png",
            "question": "Which? Answer Choices: (A) cyst (B) mass",
            "options": {"A": "cyst", "B": "mass"},
            "label": "A",
        },
    ]
    path = tmp_path / "mc.json"
    path.write_text(json.dumps(rows))
    omni, medxpert = read_cases(path).cases
    assert asked(omni) == "Modality?\nOptions:\nA. CT\nB. MRI"
    assert asked(medxpert) == "Which? Answer Choices: (A) cyst (B) mass"  # listed once only
