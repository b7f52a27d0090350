"""The onnx_trt policy on the tiny model exported by our own code: whole reads on CPU."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from edge_agent.agent import Budget
from edge_agent.config import Config, PolicySettings, ReportSettings
from edge_agent.policies import make_policy
from edge_agent.policies.onnx_trt import OnnxTrtSettings
from edge_agent.read import read_study
from imaging.errors import BadInput
from tests.support import decisions, reads_on_one_policy, run_cli, two_turns_with_a_zoom
from tools.onnx_runtime import RuntimeSettings

TOOLS = {"zoom_in", "segment", "locate"}


def _config(onnx_llm: Path, max_new_tokens: int = 512, **overrides) -> Config:
    settings = OnnxTrtSettings(
        model_dir=str(onnx_llm), runtime=RuntimeSettings(providers=("cpu",)), **overrides
    )
    return Config(
        budget=Budget(max_turns=3, max_new_tokens=max_new_tokens),
        policy=PolicySettings(name="onnx_trt", onnx_trt=settings),
        report=ReportSettings(dicom=False),
    )


@pytest.fixture(scope="module")
def read(onnx_llm, tmp_path_factory):
    from edge_agent.sample import write_sample_study

    folder = tmp_path_factory.mktemp("onnx-read")
    return read_study(write_sample_study(folder / "study"), folder / "out", _config(onnx_llm))


def test_a_read_under_the_grammar_takes_valid_actions(read):
    trajectory = read.trajectory
    assert trajectory.end_reason in ("answer", "max_turns"), trajectory.end_detail
    assert trajectory.steps and all(step.tool in TOOLS for step in trajectory.steps)
    report = json.loads((read.out_dir / "report.json").read_text())
    assert report["policy"] == "onnx_trt" and report["model"]["grammar"] == "gbnf (llguidance)"


def test_each_turn_evaluates_only_what_it_adds(read):
    steps = read.trajectory.steps
    first = steps[0].usage
    assert len(steps) >= 2 and first.past == 0
    # one shown 512x512 image (the central key slice, as trained), resized to 224x224 by the
    # tiny processor: 8x8 tokens
    assert first.images == 1 and first.image_tokens == 64
    for before, step in itertools.pairwise(steps):
        # the cache holds every earlier prompt and reply; this turn evaluated only its own input
        added = before.usage.prompt_tokens + before.usage.generated
        assert step.usage.past == before.usage.past + added, step.number
        assert step.usage.prompt_tokens < first.prompt_tokens
        made_image = before.image is not None
        assert step.usage.images == (1 if made_image else 0)
        assert (step.usage.image_tokens > 0) == made_image


def test_an_image_a_tool_made_enters_the_next_turn_after_the_cache(read, onnx_llm):
    first, second, cached = two_turns_with_a_zoom(
        _config(onnx_llm).policy,
        read.selection.frames,
        lambda session: session.backend.cache.length,  # the decoder's own KV cache, not our count
    )
    assert first.images == 1 and first.past == 0
    # the zoom, 512 x 410, becomes 224 x 196 under the tiny processor's 224² pixel limit: 8 x 7
    # tokens; it and its text come after everything the first turn put in the cache
    assert second.images == 1 and second.image_tokens == 56
    assert second.past == first.prompt_tokens + first.generated
    assert cached == second.past + second.prompt_tokens + second.generated


def test_without_the_grammar_a_nonsense_reply_is_a_recorded_policy_error(onnx_llm, tmp_path):
    from edge_agent.sample import write_sample_study

    study = write_sample_study(tmp_path / "study")
    free = read_study(study, tmp_path / "out", _config(onnx_llm, 64, grammar=False))
    trajectory = free.trajectory
    # random weights: the greedy reply is not the Ophiuchus format
    assert trajectory.end_reason == "policy_error" and trajectory.answer is None
    assert "not grammar-constrained: grammar = false" in trajectory.end_detail
    saved = json.loads((tmp_path / "out" / "trajectory.json").read_text())
    assert saved["end_reason"] == "policy_error" and saved["end_detail"] == trajectory.end_detail
    assert json.loads((tmp_path / "out" / "report.json").read_text())["model"]["grammar"] == "none"


def test_the_record_names_both_models_with_their_hashes(read, onnx_llm):
    model = read.trajectory.policy.model
    manifest = json.loads((onnx_llm / "manifest.json").read_text())
    hashes = {f["name"]: f["sha256"] for f in manifest["files"]}
    assert model["sha256"] == hashes["decoder_model_merged.onnx"] and model["provider"] == "cpu"
    assert model["vision_sha256"] == hashes[model["vision"]] == hashes["vision_encoder.onnx"]
    report = json.loads((read.out_dir / "report.json").read_text())
    assert report["model"] == model


def test_greedy_decoding_is_deterministic_and_the_model_is_reused(read, onnx_llm, tmp_path):
    study = next(iter(read.study.files.values())).parent
    again = reads_on_one_policy(study, _config(onnx_llm), tmp_path)
    assert decisions(again[0]) == decisions(again[1]) == decisions(read.trajectory)
    first, second = (run.steps[0].usage for run in again)
    # the system prompt is evaluated once per loaded model; the second read starts after it
    assert first.past == 0 and first.prompt_evaluated == first.prompt_tokens
    assert second.past > 100 and second.past + second.prompt_tokens == first.prompt_tokens
    assert second.prompt_evaluated == second.prompt_tokens == first.prompt_evaluated - second.past


def test_a_turn_that_would_overflow_the_context_is_refused(onnx_llm, sample_study, tmp_path):
    short = read_study(sample_study, tmp_path / "out", _config(onnx_llm, n_ctx=256))
    assert short.trajectory.end_reason == "policy_error"
    assert (
        "context full" in short.trajectory.end_detail
        and "n_ctx is 256" in short.trajectory.end_detail
    )


def test_a_missing_model_folder_is_a_config_error(tmp_path):
    settings = PolicySettings(name="onnx_trt", onnx_trt=OnnxTrtSettings(model_dir=str(tmp_path)))
    with pytest.raises(BadInput, match=r"no manifest\.json"):
        make_policy(settings)


def test_the_cli_reads_with_the_onnx_policy(onnx_llm, sample_study, tmp_path):
    done = run_cli(
        "read",
        sample_study,
        "--out",
        tmp_path / "out",
        "--policy",
        "onnx-trt",
        "--model",
        onnx_llm,
    )
    assert done.returncode == 0, done.stderr
    assert "AI model decoder_model_merged.onnx (ONNX Runtime, cpu)" in done.stdout
    assert "<think>" in done.stdout and "Action: " in done.stdout  # streamed as decoded
    missing = run_cli(
        "read", sample_study, "--out", tmp_path / "x", "--policy", "onnx-trt", "--model", tmp_path
    )
    assert missing.returncode == 2 and "no manifest.json" in missing.stderr
