"""A read with the tiny GGUF under the Ophiuchus profile: one image at turn 1 (the central key
slice, trained index 1), and every call names an image the model has been shown."""

from __future__ import annotations

import pytest

from edge_agent.agent import Budget
from edge_agent.config import Config, PolicySettings, ReportSettings
from edge_agent.policies.llama_cpp import LlamaCppSettings
from edge_agent.read import read_study

TOOLS = {"zoom_in", "segment", "locate"}


@pytest.fixture(scope="module")
def read(exported, tmp_path_factory):
    from edge_agent.sample import write_sample_study

    settings = LlamaCppSettings(
        model=str(exported / "model-q8_0.gguf"),
        mmproj=str(exported / "mmproj-f16.gguf"),
        n_ctx=8192,
        profile="ophiuchus-v1",
        max_think_tokens=16,  # random weights ramble; a short thought keeps the test quick
    )
    config = Config(
        budget=Budget(max_turns=4, max_new_tokens=400),
        policy=PolicySettings(name="llama_cpp", llama_cpp=settings),
        report=ReportSettings(dicom=False),
    )
    folder = tmp_path_factory.mktemp("profile-read")
    return read_study(write_sample_study(folder / "study"), folder / "out", config)


def test_turn_one_shows_one_image_and_every_call_names_a_shown_one(read):
    trajectory = read.trajectory
    assert trajectory.end_reason in ("answer", "max_turns"), trajectory.end_detail
    originals = [image for image in trajectory.images if image.tool == "shown"]
    assert trajectory.steps, "the model took at least one turn"
    assert trajectory.steps[0].usage.images == 1
    central = len(originals) // 2  # trained index 1
    shown = {central}
    for step in trajectory.steps:
        assert step.tool in TOOLS  # the grammar allows nothing else
        assert step.arguments["index"] in shown, (step.number, step.arguments, shown)
        if step.tool == "locate":  # the trained caption string, as our one-item list
            assert len(step.arguments["captions"]) == 1
        if step.image is not None:
            shown.add(step.image)


def test_each_step_records_its_prompt_profile(read):
    assert {step.usage.prompt_profile for step in read.trajectory.steps} == {"ophiuchus-v1"}


def test_a_thought_at_its_token_bound_is_closed_by_the_session_under_the_grammar(
    exported, tmp_path, monkeypatch
):
    """max_think_tokens = 1: after one thought token the session writes </think> itself; the
    grammar accepts it (llama.cpp's sampler follows the forced tokens) and the reply goes on."""
    from edge_agent.policies import session as core
    from edge_agent.sample import write_sample_study

    forced = []
    original = core.ModelSession._force
    monkeypatch.setattr(
        core.ModelSession,
        "_force",
        lambda self, decoder, tokens, text: (
            forced.append(len(tokens)),
            original(self, decoder, tokens, text),
        ),
    )
    settings = LlamaCppSettings(
        model=str(exported / "model-q8_0.gguf"),
        mmproj=str(exported / "mmproj-f16.gguf"),
        profile="ophiuchus-v1",
        max_think_tokens=1,
    )
    config = Config(
        budget=Budget(max_turns=2, max_new_tokens=400),
        policy=PolicySettings(name="llama_cpp", llama_cpp=settings),
        report=ReportSettings(dicom=False),
    )
    result = read_study(write_sample_study(tmp_path / "study"), tmp_path / "out", config)
    trajectory = result.trajectory
    assert trajectory.end_reason in ("answer", "max_turns"), trajectory.end_detail
    assert forced, "the thought reached its bound and was closed by the session"
    assert all(len(step.thought) <= 8 for step in trajectory.steps)  # one token's worth


def test_the_profile_flag_overrides_the_model_folders_and_a_wrong_one_is_refused(
    exported, tmp_path
):
    from edge_agent.sample import write_sample_study
    from edge_agent.trajectory import Trajectory
    from tests.support import run_cli

    study = write_sample_study(tmp_path / "study")
    model = ("--model", exported / "model-q8_0.gguf", "--mmproj", exported / "mmproj-f16.gguf")
    config = tmp_path / "edge-agent.toml"
    config.write_text(
        "[budget]\nmax_turns = 1\n[report]\ndicom = false\n"
        "[policy.llama_cpp]\nmax_think_tokens = 16\n"
    )
    args = ("read", study, "--policy", "llama-cpp", *model, "--config", config)
    done = run_cli(*args, "--out", tmp_path / "out", "--profile", "ophiuchus-v1-sft")
    assert done.returncode == 0, done.stderr
    steps = Trajectory.load(tmp_path / "out" / "trajectory.json").steps
    assert steps and {step.usage.prompt_profile for step in steps} == {"ophiuchus-v1-sft"}
    wrong = run_cli(*args, "--out", tmp_path / "wrong", "--profile", "ophiuchus-v9")
    assert wrong.returncode == 2 and "no profile named 'ophiuchus-v9'" in wrong.stderr
    assert "Traceback" not in wrong.stderr and not (tmp_path / "wrong").exists()
