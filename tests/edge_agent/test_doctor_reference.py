"""`doctor`'s known-answer check: the reference agent reads built-in cases on this workstation's
llama.cpp build and tools, and a model that cannot answer them is red."""

from __future__ import annotations

import shutil

import pytest

from export.reference_agent import CHECKPOINT, FOLDER, PRE_TOKENIZER
from export.train_agent import Schedule, train_tiny_agent
from tests.support import run_cli


def _exported(hf, models):
    done = run_cli(
        "export", "gguf", hf, "--out", models / FOLDER, "--quant", "q8_0",
        "--pre-tokenizer", PRE_TOKENIZER,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return models


def _known_answer_line(done) -> str:
    [line] = [row for row in done.stdout.splitlines() if "│ known-answer read" in row]
    return line


@pytest.fixture(scope="module")
def reference_models(tmp_path_factory):
    return _exported(CHECKPOINT, tmp_path_factory.mktemp("models"))


def test_doctor_reads_the_built_in_cases_right_with_the_reference_agent(
    reference_models, tmp_path, monkeypatch
):
    monkeypatch.setenv("COLUMNS", "400")
    done = run_cli("doctor", "--out", tmp_path, "--models", reference_models)
    line = _known_answer_line(done)
    assert "FAIL" not in line and "ok" in line
    assert "4/4 answered correctly, 4/4 zooms on the lesion" in line
    assert "model-q8_0.gguf" in line


def test_a_site_reading_only_ct_and_mr_still_passes_the_known_answer_read(
    reference_models, tmp_path, monkeypatch
):
    """The built-in cases are PNGs (modality OT): the site's [read] modalities are for its own
    studies, not for the check of its llama.cpp build."""
    monkeypatch.setenv("COLUMNS", "400")
    config = tmp_path / "edge-agent.toml"
    config.write_text('[read]\nmodalities = ["CT", "MR"]\n')
    done = run_cli("doctor", "--out", tmp_path, "--models", reference_models, "--config", config)
    line = _known_answer_line(done)
    assert "FAIL" not in line and "4/4 answered correctly" in line, line


def test_an_untrained_model_in_the_reference_folder_is_red(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    untrained = tmp_path / "hf"
    train_tiny_agent(untrained, Schedule(vision_steps=0, locate_steps=0, full_steps=0))
    models = _exported(untrained, tmp_path / "models")
    done = run_cli("doctor", "--out", tmp_path, "--models", models)
    line = _known_answer_line(done)
    assert "FAIL" in line
    assert done.returncode == 1 and "known-answer read" in done.stdout.splitlines()[-1]


def test_a_reference_folder_without_its_manifest_is_a_red_line_not_an_exit(
    reference_models, tmp_path, monkeypatch
):
    """Without manifest.json nothing names the vision projector: the known-answer read is red
    with the reason, and doctor still reports every other check."""
    monkeypatch.setenv("COLUMNS", "400")
    models = tmp_path / "models"
    shutil.copytree(reference_models, models)
    (models / FOLDER / "manifest.json").unlink()
    done = run_cli("doctor", "--out", tmp_path, "--models", models / FOLDER)
    line = _known_answer_line(done)
    assert "FAIL" in line and "manifest" in line, line
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr
