"""The llama.cpp policy on the tiny GGUF built by our own export: a whole read, incremental."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from edge_agent.agent import Budget
from edge_agent.config import Config, PolicySettings, ReportSettings
from edge_agent.policies.llama_cpp import LlamaCppSettings
from edge_agent.read import read_study
from tests.support import decisions, reads_on_one_policy, run_cli

TOOLS = {"zoom_in", "segment", "locate"}


def _config(exported: Path, **overrides) -> Config:
    settings = LlamaCppSettings(
        model=str(exported / "model-q8_0.gguf"),
        mmproj=str(exported / "mmproj-f16.gguf"),
        n_ctx=4096,
    )
    settings = LlamaCppSettings(**{**settings.__dict__, **overrides})
    return Config(
        budget=Budget(max_turns=5, max_new_tokens=512),
        policy=PolicySettings(name="llama_cpp", llama_cpp=settings),
        report=ReportSettings(dicom=False),
    )


@pytest.fixture(scope="module")
def read(exported, tmp_path_factory):
    from edge_agent.sample import write_sample_study

    folder = tmp_path_factory.mktemp("llm")
    study = write_sample_study(folder / "study")
    return read_study(study, folder / "out", _config(exported))


def test_a_read_with_the_tiny_gguf_completes_with_valid_actions(read):
    trajectory = read.trajectory
    assert trajectory.end_reason in ("answer", "max_turns"), trajectory.end_detail
    assert trajectory.steps, "the model took at least one turn"
    for step in trajectory.steps:
        assert step.tool in TOOLS  # the grammar allows nothing else
    report = json.loads((read.out_dir / "report.json").read_text())
    assert report["policy"] == "llama_cpp" and report["model"]["file"] == "model-q8_0.gguf"
    assert len(report["model"]["sha256"]) == 64
    for finding in report["findings"]:
        assert all((read.out_dir / e["image"]).is_file() for e in finding["evidence"])


def test_shown_images_are_resized_for_the_model_and_map_back(read):
    shown = [image for image in read.trajectory.images if image.tool == "shown"]
    assert all(max(image.width, image.height) == 512 for image in shown)
    assert all(image.to_source[0] == pytest.approx(128 / 512) for image in shown)


def test_each_turn_evaluates_only_what_it_adds(read):
    steps = read.trajectory.steps
    for step in steps:
        usage = step.usage
        # llama.cpp's own counter of prompt tokens evaluated, per turn, against what the turn
        # added: nothing earlier was evaluated again.
        assert usage["prompt_evaluated"] == usage["prompt_tokens"], step.number
    first = steps[0].usage
    assert first["images"] == 1 and first["image_tokens"] > 0  # one image at turn 1, as trained
    for before, step in itertools.pairwise(steps):
        made_image = before.image is not None
        assert step.usage["images"] == (1 if made_image else 0)
        assert step.usage["prompt_tokens"] < first["prompt_tokens"]


def test_the_same_seed_gives_the_same_trajectory_also_on_a_reused_model(read, exported, tmp_path):
    study = next(iter(read.study.files.values())).parent
    runs = reads_on_one_policy(study, _config(exported), tmp_path)
    assert decisions(runs[0]) == decisions(runs[1]) == decisions(read.trajectory)
    for step in runs[1].steps:  # the second read started from an empty context
        assert step.usage["prompt_evaluated"] == step.usage["prompt_tokens"]


def test_running_out_of_context_ends_the_read_with_the_reason(exported, tmp_path):
    from edge_agent.sample import write_sample_study

    study = write_sample_study(tmp_path / "study")
    short = read_study(study, tmp_path / "out", _config(exported, n_ctx=768))
    assert short.trajectory.end_reason == "policy_error"
    assert "context full" in short.trajectory.end_detail
    assert (tmp_path / "out" / "report.json").is_file()


def test_the_cli_reads_with_a_model(exported, sample_study, tmp_path):
    done = run_cli(
        "read",
        sample_study,
        "--out",
        tmp_path / "out",
        "--policy",
        "llama-cpp",
        "--model",
        exported / "model-q8_0.gguf",
        "--mmproj",
        exported / "mmproj-f16.gguf",
    )
    assert done.returncode == 0, done.stderr
    assert "AI model model-q8_0.gguf" in done.stdout
    assert "<think>" in done.stdout and "Action: " in done.stdout  # streamed live
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["policy"] == "llama_cpp"
