from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from edge_agent.agent import Answer, Claim, PolicyError, ToolCall
from edge_agent.config import Config
from edge_agent.evaluation.cases import read_cases
from edge_agent.evaluation.outputs import write_run_outputs
from edge_agent.evaluation.runner import load_results, run_eval
from edge_agent.trajectory import PolicyRecord
from tests.edge_agent.evaluation.conftest import write_image
from tools.workspace import ShownSize

ROOT = Path(__file__).resolve().parents[3]


class Scripted:
    """Plays fixed decisions per read, as a model might choose them."""

    record = PolicyRecord("scripted", "Scripted test policy", "test only")
    shown_size = ShownSize()  # the configured size stands
    profile = None  # no prompt format: the budget stands

    def __init__(self, decisions) -> None:
        self.decisions = decisions

    def open(self, context):
        self.left = iter(self.decisions)
        return self

    def step(self, context):
        decision = next(self.left)
        if isinstance(decision, Exception):
            raise decision
        return decision

    def close(self):
        pass


def test_a_vqa_set_and_a_site_list_run_through_with_failures_marked(
    vqa_set: Path, site_list: Path, tmp_path: Path
):
    vqa = run_eval(read_cases(vqa_set), Config(), tmp_path / "vqa")
    site_cases = read_cases(site_list)
    site = run_eval(site_cases, Config(), tmp_path / "site")
    assert [r.status for r in vqa] == ["done", "done", "done"]
    assert [(r.id, r.status) for r in site] == [("ct1", "done"), ("unreadable", "failed")]
    assert "not a DICOM" in site[1].reason or "no DICOM" in site[1].reason.lower()
    run = json.loads((tmp_path / "site" / "run.json").read_text())
    assert run["left_out"] == [{"row": "cases.csv:4", "problem": "no question"}]
    for result in (*vqa, site[0]):  # each read is kept for review
        assert (
            tmp_path
            / ("vqa" if result.id.startswith("vqa") else "site")
            / result.read
            / "trajectory.json"
        ).is_file()
    assert site[0].score.measurements[0].measured is not None  # the protocol measured a region
    metrics = write_run_outputs(tmp_path / "vqa", vqa)
    saved = json.loads((tmp_path / "vqa" / "metrics.json").read_text())
    closed = saved["closed_accuracy"]
    assert closed["n"] == 2 and closed["low"] <= closed["value"] <= closed["high"]
    assert saved["tool_call_accuracy"] == {
        "k": metrics.tool_call_accuracy.k,
        "n": metrics.tool_call_accuracy.n,
        "value": 1.0,
        "low": metrics.tool_call_accuracy.low,
        "high": 1.0,
    }
    assert saved["latency_s"]["p95"] >= saved["latency_s"]["p50"] > 0
    assert (tmp_path / "vqa" / "metrics.html").read_text().count("data:image/png") == 2


def test_a_run_killed_halfway_resumes_without_redoing_finished_cases(tmp_path: Path):
    rows = []
    count = 30  # ~80 ms a case: the kill lands with room to spare on a loaded machine
    for i in range(count):
        write_image(tmp_path / "set" / f"i{i}.png", 10 + 3 * i, size=128)
        rows.append(
            {"id": f"c{i:02d}", "image": f"i{i}.png", "question": "bright?", "answer": "yes"}
        )
    cases = tmp_path / "set" / "cases.jsonl"
    cases.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    command = [sys.executable, "-m", "edge_agent.cli", "eval", "run", str(cases), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while len(list(out.glob("cases/*/result.json"))) < 2 and time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("cases/*/result.json")}
    assert 2 <= len(done) < count, f"the kill came too late to test a resume: {sorted(done)}"
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    results = load_results(out)
    assert [r.id for r in results] == [f"c{i:02d}" for i in range(count)]
    assert all(r.status == "done" for r in results)
    for case_id, mtime in done.items():  # finished cases were not read again
        assert (out / "cases" / case_id / "result.json").stat().st_mtime_ns == mtime
    assert json.loads((out / "metrics.json").read_text())["cases"] == count


def test_malformed_and_invalid_calls_count_as_wrong_tool_calls(vqa_set: Path, tmp_path: Path):
    policy = Scripted(
        [
            ToolCall("zoom_in", {"index": 0, "bbox_2d": [1, 2]}),  # fails the schema
            ToolCall("teleport", {"index": 0}),  # no such tool
            ToolCall("zoom_in", {"index": 0, "bbox_2d": [900, 900, 990, 990]}),  # tool raises
            ToolCall("zoom_in", {"index": 0, "bbox_2d": [10, 10, 60, 60]}),  # the one valid call
            Answer("yes", (Claim("bright disc", (1,)),)),
        ]
    )
    results = run_eval(read_cases(vqa_set), Config(), tmp_path / "run", policy=policy)
    score = results[1].score
    assert (score.calls, score.valid_calls, score.correct) == (4, 1, True)
    unparseable = Scripted([PolicyError("reply did not parse")])
    broken = run_eval(read_cases(vqa_set), Config(), tmp_path / "run2", policy=unparseable)
    assert [(r.score.calls, r.score.valid_calls) for r in broken] == [(1, 0)] * 3
    assert broken[0].score.ended == "policy_error"


def test_a_damaged_result_in_a_run_folder_is_bad_input_naming_the_file(tmp_path):
    import pytest

    from edge_agent.evaluation.runner import RunFolderError, load_result

    result = tmp_path / "cases" / "c1" / "result.json"
    result.parent.mkdir(parents=True)
    for damage in ("{not json", '{"id": "c1", "from_a_later_version": 1}'):
        result.write_text(damage)
        with pytest.raises(RunFolderError, match=r"c1/result\.json is not a case result"):
            load_result(tmp_path, "c1")


def test_a_tiny_random_model_without_its_grammar_scores_no_valid_call(onnx_llm, vqa_set, tmp_path):
    # the real model path: unconstrained replies from random weights never follow the format,
    # and each such reply is a wrong tool call, not a read left out of the count
    from edge_agent.agent import Budget
    from edge_agent.config import PolicySettings, ReportSettings
    from edge_agent.policies.onnx_trt import OnnxTrtSettings
    from tools.onnx_runtime import RuntimeSettings

    settings = OnnxTrtSettings(
        model_dir=str(onnx_llm),
        runtime=RuntimeSettings(providers=("cpu",)),
        grammar=False,
        max_think_tokens=16,
    )
    config = Config(
        budget=Budget(max_turns=2, max_new_tokens=64),
        policy=PolicySettings(name="onnx_trt", onnx_trt=settings),
        report=ReportSettings(dicom=False),
    )
    results = run_eval(read_cases(vqa_set), config, tmp_path / "free")
    assert [r.status for r in results] == ["done"] * 3, [r.reason for r in results]
    metrics = write_run_outputs(tmp_path / "free", results)
    rate = metrics.tool_call_accuracy
    assert (rate.k, rate.n) == (0, 3)  # one unparseable reply per read, each counted wrong
