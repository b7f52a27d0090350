"""`edge-agent ask`: follow-up questions about a finished protocol read, answered from its
measurements, appended to the trajectory, report.json, report.html and a new SR instance."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from edge_agent.followup import Comparison, parse_comparison
from tests.peers import dciodvfy_errors
from tests.support import run_cli


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> Path:
    from edge_agent.sample import write_sample_study

    folder = tmp_path_factory.mktemp("ask")
    study = write_sample_study(folder / "study")
    done = run_cli("read", study, "--out", folder / "out")
    assert done.returncode == 0, done.stderr
    return folder / "out"


def _sr_text(path: Path) -> str:
    """Every TEXT value of the SR tree, joined."""

    def texts(items):
        for item in items:
            if "TextValue" in item:
                yield str(item.TextValue)
            yield from texts(item.get("ContentSequence", []))

    return " ".join(texts(pydicom.dcmread(path).ContentSequence))


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Which are larger than 2 cm?", Comparison(True, 20.0, False)),
        ("any lesion smaller than 1.5cm", Comparison(False, 15.0, False)),
        ("Which exceed 300 mm2?", Comparison(True, 300.0, True)),
        ("Larger than 4 cm²?", Comparison(True, 400.0, True)),
        ("Is it malignant?", None),
    ],
)
def test_a_size_comparison_is_read_from_the_question(question, expected):
    assert parse_comparison(question) == expected


def test_a_size_question_is_answered_from_the_measurements_and_joins_every_report(result):
    sop_before = pydicom.dcmread(result / "dicom" / "sr.dcm").SOPInstanceUID
    done = run_cli("ask", result, "Which candidates are larger than 28 mm?")
    assert done.returncode == 0, done.stderr
    answer = (
        "1 of the 2 measured finding(s) have a long axis larger than 28 mm: finding(s) 1. "
        "Measured: finding 1: 30.49 mm; finding 2: 25.1 mm."
    )
    assert answer in done.stdout
    report = json.loads((result / "report.json").read_text())
    (follow_up,) = report["follow_ups"]
    assert follow_up["question"] == "Which candidates are larger than 28 mm?"
    assert answer in follow_up["answer"]
    (cited,) = follow_up["findings"]
    assert cited["key_image"] == report["findings"][0]["key_image"]
    assert cited["measurements"] == report["findings"][0]["measurements"]
    trajectory = json.loads((result / "trajectory.json").read_text())
    assert [f["question"] for f in trajectory["follow_ups"]] == [follow_up["question"]]
    page = (result / "report.html").read_text()
    assert "Q1: Which candidates are larger than 28 mm?" in page
    sr = pydicom.dcmread(result / "dicom" / "sr.dcm")
    assert sr.SOPInstanceUID != sop_before  # a new SR instance, the follow-up in its text
    assert "Follow-up: Which candidates are larger than 28 mm?" in _sr_text(
        result / "dicom" / "sr.dcm"
    )


def test_what_the_protocol_cannot_answer_it_says_and_questions_accumulate(result):
    done = run_cli("ask", result, "Is it malignant?")
    assert done.returncode == 0, done.stderr
    assert "The protocol cannot answer this follow-up" in done.stdout
    report = json.loads((result / "report.json").read_text())
    assert [f["question"] for f in report["follow_ups"]][-1] == "Is it malignant?"
    assert report["follow_ups"][-1]["findings"] == []


def test_the_new_sr_names_the_one_it_replaces_as_its_predecessor(result):
    before = pydicom.dcmread(result / "dicom" / "sr.dcm")
    done = run_cli("ask", result, "How many candidates?")
    assert done.returncode == 0, done.stderr
    after = pydicom.dcmread(result / "dicom" / "sr.dcm")
    assert after.SOPInstanceUID != before.SOPInstanceUID
    (study,) = after.PredecessorDocumentsSequence
    assert study.StudyInstanceUID == before.StudyInstanceUID == after.StudyInstanceUID
    (series,) = study.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == before.SeriesInstanceUID
    (instance,) = series.ReferencedSOPSequence
    assert instance.ReferencedSOPInstanceUID == before.SOPInstanceUID
    assert instance.ReferencedSOPClassUID == before.SOPClassUID
    assert dciodvfy_errors(result / "dicom" / "sr.dcm") == []


def test_a_model_read_without_its_saved_session_takes_no_follow_up_and_says_why(result, tmp_path):
    copy = tmp_path / "model-read"
    copy.mkdir()
    trajectory = json.loads((result / "trajectory.json").read_text())
    trajectory["policy"] = {**trajectory["policy"], "name": "llama_cpp", "label": "AI model m"}
    (copy / "trajectory.json").write_text(json.dumps(trajectory))
    done = run_cli("ask", copy, "Which are larger than 1 cm?")
    assert done.returncode == 2
    assert "keeps no model session" in done.stderr and "--keep-session" in done.stderr
    assert "Traceback" not in done.stderr


def test_read_interactive_takes_follow_ups_until_an_empty_line(tmp_path):
    from edge_agent.sample import write_sample_study

    study = write_sample_study(tmp_path / "study")
    script = Path(sys.executable).parent / "edge-agent"
    done = subprocess.run(
        [script, "read", study, "--out", tmp_path / "out", "--interactive"],
        input="Which candidates are larger than 28 mm?\nHow many candidates?\n\nnot asked\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [f["question"] for f in report["follow_ups"]] == [
        "Which candidates are larger than 28 mm?",
        "How many candidates?",
    ]
    assert done.stdout.index("report: ") < done.stdout.index("Q1: Which candidates")


def test_a_follow_up_writes_a_new_sr_and_leaves_the_reads_other_objects_as_they_are(result):
    """Its findings are the read's: a new SEG, key objects and captures (new UIDs) would be
    filed twice by a PACS that OUT/dicom is sent to again."""
    objects = {p.name: p.read_bytes() for p in (result / "dicom").iterdir() if p.name != "sr.dcm"}
    assert {"seg.dcm", "ko.dcm"} < set(objects)
    done = run_cli("ask", result, "Which are larger than 1 cm?")
    assert done.returncode == 0, done.stderr
    assert {
        p.name: p.read_bytes() for p in (result / "dicom").iterdir() if p.name != "sr.dcm"
    } == objects


def test_a_read_again_of_the_study_names_the_last_reads_sr_as_its_predecessor(tmp_path):
    """The service reads a study again when late instances came: one report in two versions
    for the PACS, not two reports."""
    from edge_agent.config import Config
    from edge_agent.read import read_study
    from edge_agent.sample import write_sample_study

    study = write_sample_study(tmp_path / "study")
    first = read_study(study, tmp_path / "job1", Config())
    again = read_study(study, tmp_path / "job2", Config(), replaces=tmp_path / "job1")
    before, after = (pydicom.dcmread(r.dicom[0]) for r in (first, again))
    (earlier,) = after.PredecessorDocumentsSequence
    (series,) = earlier.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == before.SeriesInstanceUID
    assert series.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == before.SOPInstanceUID
    assert {p.name for p in again.dicom} == {p.name for p in first.dicom}  # every object again
