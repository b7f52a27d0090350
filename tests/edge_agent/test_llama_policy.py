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
from tests.support import (
    decisions,
    model_options,
    reads_on_one_policy,
    run_cli,
    two_turns_with_a_zoom,
)
from tools.toolbox import ToolSettings, default_toolbox

TOOLS = {"zoom_in", "segment", "locate"}


def _config(exported: Path, **overrides) -> Config:
    settings = LlamaCppSettings(
        model=str(exported / "model-q8_0.gguf"),
        mmproj=str(exported / "mmproj-f16.gguf"),
        n_ctx=8192,  # the trained system prompt alone is ~2200 tiny-tokenizer tokens
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


# Each shown 512 x 512 image becomes 504 x 504 for the tiny model's mmproj: 36 x 36 patches of
# 14 px, merged 2 x 2: 18 x 18 = 324 image tokens.
SHOWN_IMAGE_TOKENS = 324


def test_a_read_with_the_tiny_gguf_completes_with_valid_actions(read):
    trajectory = read.trajectory
    # random weights, greedy: the model zooms every turn and never answers within max_turns = 5
    assert trajectory.end_reason == "max_turns", trajectory.end_detail
    assert len(trajectory.steps) == 5 and trajectory.answer is None
    toolbox = default_toolbox(ToolSettings())
    for step in trajectory.steps:
        assert step.tool in TOOLS  # the grammar allows nothing else
        schema = toolbox[step.tool].parameters  # the trained arguments, and what the profile adds
        assert set(schema["required"]) <= set(step.arguments) <= set(schema["properties"])
    report = json.loads((read.out_dir / "report.json").read_text())
    assert report["policy"] == "llama_cpp" and report["model"]["file"] == "model-q8_0.gguf"
    assert len(report["model"]["sha256"]) == 64
    assert report["findings"] == []  # no answer, no finding: nothing is made up
    files = [name for image in trajectory.images for name in image.files]
    assert len(files) == 3 and all((read.out_dir / name).is_file() for name in files)


def test_shown_images_are_resized_for_the_model_and_map_back(read):
    shown = [image for image in read.trajectory.images if image.tool == "shown"]
    assert len(shown) == 3
    assert [(image.width, image.height) for image in shown] == [(512, 512)] * 3
    assert [image.to_source[0] for image in shown] == [pytest.approx(128 / 512)] * 3


def test_each_turn_evaluates_only_what_it_adds(read):
    steps = read.trajectory.steps
    assert len(steps) == 5
    for step in steps:
        usage = step.usage
        # llama.cpp's own counter of prompt tokens evaluated, per turn, against what the turn
        # added: nothing earlier was evaluated again.
        assert usage.prompt_evaluated == usage.prompt_tokens > 0, step.number
        assert usage.generated > 0 and usage.prefill_ms > 0 and usage.decode_ms > 0
    first = steps[0].usage
    # one image at turn 1, as trained
    assert (first.past, first.images, first.image_tokens) == (0, 1, SHOWN_IMAGE_TOKENS)
    for before, step in itertools.pairwise(steps):
        # the cache holds every earlier prompt and reply; this turn added only its own input
        added = before.usage.prompt_tokens + before.usage.generated
        assert step.usage.past == before.usage.past + added, step.number
        assert before.image is None and before.error  # every zoom was refused: no new image
        assert (step.usage.images, step.usage.image_tokens) == (0, 0)
        assert step.usage.prompt_tokens < first.prompt_tokens


def test_an_image_a_tool_made_enters_the_next_turn_after_the_cache(read, exported):
    first, second, _ = two_turns_with_a_zoom(_config(exported).policy, read.selection.frames)
    # one image at turn 1, as trained
    assert (first.past, first.images, first.image_tokens) == (0, 1, SHOWN_IMAGE_TOKENS)
    # the zoom, 512 x 410, becomes 504 x 420 for the mmproj: 18 x 15 merged patches; it and its
    # text come after everything the first turn put in the cache, and only they are evaluated
    assert (second.images, second.image_tokens) == (1, 18 * 15)
    assert second.past == first.prompt_tokens + first.generated
    assert second.prompt_evaluated == second.prompt_tokens > second.image_tokens
    assert second.generated > 0  # decoding went on from the cache after an M-RoPE image


def test_the_same_seed_gives_the_same_trajectory_also_on_a_reused_model(read, exported, tmp_path):
    study = next(iter(read.study.files.values())).parent
    runs = reads_on_one_policy(study, _config(exported), tmp_path)
    assert len(runs) == 2 and len(runs[1].steps) == len(read.trajectory.steps) == 5
    assert decisions(runs[0]) == decisions(runs[1]) == decisions(read.trajectory)
    for step in runs[1].steps:  # llama.cpp evaluated each turn's input once
        assert step.usage.prompt_evaluated == step.usage.prompt_tokens > 0


def test_the_system_prompt_is_evaluated_once_per_model_load(read, exported, tmp_path):
    study = next(iter(read.study.files.values())).parent
    first, second = (
        run.steps[0].usage for run in reads_on_one_policy(study, _config(exported), tmp_path)
    )
    # the first read of a loaded model evaluates its whole first turn, the system prompt too
    assert first.past == 0 and first.prompt_evaluated == first.prompt_tokens
    # the second starts after the kept system prompt: only the rest of its first turn (the
    # question and the image) is evaluated
    assert second.past > 1000  # the trained system prompt, ~2200 tiny-tokenizer tokens
    assert second.past + second.prompt_tokens == first.prompt_tokens
    assert second.prompt_evaluated == second.prompt_tokens == first.prompt_evaluated - second.past
    assert second.image_tokens == first.image_tokens == SHOWN_IMAGE_TOKENS


def test_running_out_of_context_ends_the_read_with_the_reason(exported, tmp_path):
    from edge_agent.sample import write_sample_study

    study = write_sample_study(tmp_path / "study")
    short = read_study(study, tmp_path / "out", _config(exported, n_ctx=768))
    assert short.trajectory.end_reason == "policy_error" and short.trajectory.steps == ()
    assert short.trajectory.end_detail.startswith("context full: 0 tokens in the KV cache")
    assert "plus up to 512 for the reply, n_ctx is 768" in short.trajectory.end_detail
    assert (tmp_path / "out" / "report.json").is_file()


def test_the_cli_reads_with_a_model(exported, sample_study, tmp_path):
    done = run_cli("read", sample_study, "--out", tmp_path / "out", *model_options(exported))
    assert done.returncode == 0, done.stderr
    assert "AI model model-q8_0.gguf" in done.stdout
    assert "<think>" in done.stdout and "Action: " in done.stdout  # streamed live
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["policy"] == "llama_cpp"
