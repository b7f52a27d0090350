"""A run folder resumes only what still stands: the same settings, the same rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from edge_agent.agent import Answer
from edge_agent.config import Config, PolicySettings
from edge_agent.evaluation.cases import read_cases
from edge_agent.evaluation.runner import RunFolderError, run_eval
from edge_agent.policies.model_settings import LlamaCppSettings
from tests.edge_agent.evaluation.conftest import write_image
from tests.edge_agent.evaluation.test_runner import Scripted

ROOT = Path(__file__).resolve().parents[3]
HEADER = "image_name,question,answer\n"


def eval_cli(*arguments: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "eval", *map(str, arguments)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def vqa_csv(folder: Path, answers: list[str]) -> Path:
    """A VQA-RAD style CSV without ids: each case is known by its row and question."""
    for i in range(len(answers)):
        write_image(folder / f"img{i}.png", 10 + 4 * i)
    rows = "".join(f"img{i}.png,Is there a bright region?,{a}\n" for i, a in enumerate(answers))
    path = folder / "cases.csv"
    path.write_text(HEADER + rows)
    return path


def results_of(run: Path) -> dict[str, tuple[str, int]]:
    """Each case's expected answer and when its result was written."""
    found = {}
    for path in run.glob("cases/*/result.json"):
        found[path.parent.name] = (
            json.loads(path.read_text())["expected"],
            path.stat().st_mtime_ns,
        )
    return found


def test_a_run_folder_made_with_other_settings_is_refused_and_left_as_it_was(tmp_path: Path):
    cases, run = vqa_csv(tmp_path, ["yes", "no"]), tmp_path / "run"
    assert eval_cli("run", cases, "--out", run).returncode == 0
    made, written = (run / "run.json").read_text(), results_of(run)
    refused = eval_cli("run", cases, "--out", run, "--no-tools")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"error: {run} was made with other settings (no_tools): use a new --out"
    ]
    assert (run / "run.json").read_text() == made and results_of(run) == written
    again = eval_cli("run", cases, "--out", run)  # the same settings: a resume, nothing read again
    assert again.returncode == 0, again.stderr
    assert results_of(run) == written
    fresh = eval_cli("run", cases, "--out", tmp_path / "no-tools", "--no-tools")
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads((tmp_path / "no-tools" / "run.json").read_text())["no_tools"] is True


def test_an_edited_row_is_read_again_and_a_removed_row_is_no_longer_counted(tmp_path: Path):
    cases, run = vqa_csv(tmp_path, ["yes", "no", "yes"]), tmp_path / "run"
    assert eval_cli("run", cases, "--out", run).returncode == 0
    first = results_of(run)
    assert sorted(expected for expected, _ in first.values()) == ["no", "yes", "yes"]
    lines = cases.read_text().splitlines(keepends=True)
    cases.write_text(lines[0] + lines[1] + lines[2].replace(",no", ",yes"))  # fixed; row 4 gone
    edited = eval_cli("run", cases, "--out", run)
    assert edited.returncode == 0, edited.stderr
    now = results_of(run)
    changed = [case for case in first if now[case] != first[case]]
    assert [now[case][0] for case in changed] == ["yes"]  # only the edited row was read again
    assert json.loads((run / "metrics.json").read_text())["closed_accuracy"]["n"] == 2
    assert eval_cli("run", cases, "--out", tmp_path / "fresh").returncode == 0
    compared = eval_cli("compare", run, tmp_path / "fresh", "--out", tmp_path / "cmp")
    assert compared.returncode == 0, compared.stderr
    assert ": 2 paired," in compared.stderr
    saved = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [metrics["cases"] for metrics in saved["metrics"]] == [2, 2]


def test_a_changed_model_file_is_other_settings_and_an_unchanged_one_is_not_hashed_again(
    tmp_path: Path,
):
    cases = read_cases(vqa_csv(tmp_path, ["yes"]))
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF weights one")
    config = Config(
        policy=PolicySettings(name="llama_cpp", llama_cpp=LlamaCppSettings(model=str(model)))
    )
    run = tmp_path / "run"
    scripted = Scripted([Answer("yes")])
    run_eval(cases, config, run, policy=scripted)
    recorded = json.loads((run / "run.json").read_text())["files"][str(model)]
    recorded["sha256"] = "0" * 64  # what run.json says is trusted while size and time match
    saved = json.loads((run / "run.json").read_text())
    saved["files"][str(model)] = recorded
    saved["settings"]["models"][str(model)] = recorded["sha256"]
    (run / "run.json").write_text(json.dumps(saved))
    [resumed] = run_eval(cases, config, run, policy=scripted)
    assert resumed.status == "done"
    model.write_bytes(b"GGUF weights two, requantised")
    with pytest.raises(RunFolderError, match=rf"{run} was made with other settings \(models\."):
        run_eval(cases, config, run, policy=scripted)
    other_budget = replace(config, budget=replace(config.budget, max_turns=3))
    with pytest.raises(RunFolderError, match=r"budget\.max_turns"):
        run_eval(cases, other_budget, tmp_path / "run", policy=scripted)
