"""The trained reference agent (export/reference_agent), exported by our own code and run by the
real runtimes (llama.cpp, ONNX Runtime) through the real read path on held-out cases."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from edge_agent.config import Config, PolicySettings
from edge_agent.evaluation.cases import read_cases as read_case_file
from edge_agent.evaluation.compare import compare_runs
from edge_agent.evaluation.runner import refusing, run_eval
from edge_agent.policies import make_policy
from edge_agent.policies.onnx_trt import OnnxTrtSettings
from export.look_check import read_cases, reference_policy
from export.reference_agent import CHECKPOINT, export_reference, held_out
from export.second_look import SHOWN, write_case_set
from export.train_agent import HELD_OUT_SEED
from tests.support import run_cli
from tools.toolbox import default_toolbox

HELD_OUT = 20


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return export_reference(CHECKPOINT, tmp_path_factory.mktemp("reference"))


@pytest.fixture(scope="module")
def f16_summary(built):
    return _summary(built, "model-f16.gguf")


def _summary(built, text_file: str, count: int = HELD_OUT, no_tools: bool = False):
    settings = reference_policy(built.gguf, text_file)
    policy = make_policy(settings)
    toolbox = default_toolbox()
    try:
        tools = refusing(toolbox) if no_tools else toolbox
        return read_cases(held_out(count), Config(policy=settings), policy, tools)
    finally:
        policy.close()
        toolbox.close()


def test_the_committed_checkpoint_was_trained_on_the_task():
    record = json.loads((CHECKPOINT / "edge-agent-tiny.json").read_text())
    assert record["task"] == "second-look" and record["profile"] == "ophiuchus-v1"
    assert (CHECKPOINT / "model.safetensors").stat().st_size < 4 * 2**20


def test_it_zooms_on_the_lesion_then_answers_held_out_cases(f16_summary):
    assert f16_summary.zoom_hits >= 0.9, f16_summary.results
    assert f16_summary.accuracy >= 0.9, f16_summary.results


def test_without_its_second_look_it_does_no_better_than_chance(built):
    summary = _summary(built, "model-f16.gguf", no_tools=True)
    assert summary.accuracy <= 0.6, summary.results


def test_q8_0_reads_as_f16_does(built, f16_summary):
    q8 = _summary(built, "model-q8_0.gguf")
    assert [r.answered for r in q8.results] == [r.answered for r in f16_summary.results]


def test_eval_compares_f16_q8_0_q4_0_and_onnx_on_the_held_out_set(built, tmp_path):
    cases = read_case_file(write_case_set(tmp_path / "cases", 10, HELD_OUT_SEED))
    runs = {}
    for name in ("f16", "q8_0", "q4_0", "onnx"):
        if name == "onnx":
            onnx = OnnxTrtSettings(model_dir=str(built.onnx), image_size=SHOWN, n_ctx=4096)
            settings = PolicySettings(name="onnx_trt", onnx_trt=onnx)
        else:
            settings = reference_policy(built.gguf, f"model-{name}.gguf")
        runs[name] = tmp_path / name
        results = run_eval(cases, replace(Config(), policy=settings), runs[name])
        assert all(r.status == "done" for r in results), [r.reason for r in results]
        accuracy = sum(r.score.correct for r in results) / len(results)
        if name != "q4_0":  # q4_0 is reported, not held to a bar
            assert accuracy >= 0.9, (name, [r.score.predicted for r in results])
    comparison = compare_runs([runs["f16"], runs["q8_0"], runs["q4_0"], runs["onnx"]])
    f16_q8 = comparison.pairings[0]
    assert f16_q8.b.endswith("q8_0") and f16_q8.paired == len(cases.cases), f16_q8
    assert f16_q8.flips == (), f16_q8.flips


def test_train_tiny_agent_trains_exports_and_reads_in_one_command(tmp_path):
    """The one command that rebuilds the agent, cut to seconds here by a time box (the committed
    checkpoint is the full run's, which has none): it says loudly that these weights are not
    the reference's, and exits 0 only when the held-out read it reports is right."""
    out = tmp_path / "agent"
    (out / "gguf").mkdir(parents=True)
    (out / "gguf" / "stale.gguf").write_bytes(b"an earlier build")
    done = run_cli(
        "export", "train-tiny-agent", out, "--minutes", "0.02", "--check", "1", "--force"
    )  # fmt: skip
    read = re.search(r"held-out, q8_0: (\d)/1 answered correctly", done.stdout)
    assert read, done.stdout + done.stderr
    assert done.returncode == (0 if read[1] == "1" else 1)
    assert "cut by the time box" in done.stderr and "NOT the reference" in done.stderr
    assert re.search(r"trained in [\d.]+ min on 2 thread\(s\) \(budget 30 min\)", done.stdout)
    for name in ("hf/model.safetensors", "hf/learning-curve.jsonl", "gguf/model-q4_0.gguf"):
        assert (out / name).is_file(), name
    assert (out / "onnx" / "manifest.json").is_file()
    assert not (out / "gguf" / "stale.gguf").exists()
    record = json.loads((out / "hf" / "edge-agent-tiny.json").read_text())
    assert record["threads"] == 2 and record["cut"], record


def test_train_tiny_agent_refuses_a_time_box_of_zero(tmp_path):
    done = run_cli("export", "train-tiny-agent", tmp_path / "agent", "--minutes", "0")
    assert done.returncode == 2 and "--minutes must be positive" in done.stderr
    assert not (tmp_path / "agent").exists()


@pytest.mark.parametrize("part", ["hf", "gguf", "onnx"])
def test_train_tiny_agent_keeps_an_earlier_build_unless_forced(tmp_path, part):
    """Refused before any training, in one line: nothing of OUT is touched."""
    out = tmp_path / "agent"
    (out / part).mkdir(parents=True)
    (out / part / "model.bin").write_bytes(b"an earlier build")
    # a short time box: a version that trained first would still end in seconds
    done = run_cli("export", "train-tiny-agent", out, "--check", "0", "--minutes", "0.01")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--force" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert (out / part / "model.bin").read_bytes() == b"an earlier build"
    assert sorted(p.name for p in out.iterdir()) == [part]


def test_train_tiny_agent_refuses_an_out_that_is_a_file(tmp_path):
    out = tmp_path / "agent"
    out.write_text("not a folder")
    done = run_cli("export", "train-tiny-agent", out, "--check", "0")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "is a file, not a folder" in done.stderr
    assert out.read_text() == "not a folder"
