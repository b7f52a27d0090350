"""The protocol policy on the built-in lesion-insertion set (real CT anatomy, known lesions)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from edge_agent.config import Config, PolicySettings
from edge_agent.evaluation.cases import read_cases
from edge_agent.evaluation.compare import compare_runs
from edge_agent.evaluation.insertion import (
    SOURCES,
    TOLERANCE_MM,
    build_insertion_set,
    ground_truth_failures,
    lesions,
)
from edge_agent.evaluation.metrics import compute
from edge_agent.evaluation.outputs import write_run_outputs
from edge_agent.evaluation.runner import run_eval
from edge_agent.policies.protocol import ProtocolSettings
from tools.observation import Observation
from tools.registry import Tool, Toolbox
from tools.toolbox import default_toolbox

# The protocol zooms, outlines and measures its `candidates` largest located regions; at three,
# CT lesions of 15 mm and more outrank the scan's own hypodense structures on this slice. On the
# MR slice smaller lesions can merge with bright liver in `locate` (seed 16's 20 mm one does):
# the test asks the 25 mm one there.
CONFIG = Config(policy=PolicySettings(protocol=ProtocolSettings(candidates=3)))


@pytest.fixture(scope="module")
def insertion(tmp_path_factory) -> tuple[Path, list]:
    folder = tmp_path_factory.mktemp("insertion")
    cases = build_insertion_set(folder / "set", seed=16, count=3, mr_count=1)
    return folder, run_eval(read_cases(cases), CONFIG, folder / "run")


def test_the_set_is_deterministic_and_its_truth_is_written(tmp_path: Path):
    first = build_insertion_set(tmp_path / "a", seed=7, count=2, mr_count=1)
    second = build_insertion_set(tmp_path / "b", seed=7, count=2, mr_count=1)
    assert first.read_text() == second.read_text()
    for lesion in (*lesions(SOURCES[0], 7, 2), *lesions(SOURCES[1], 7, 1)):
        a = (tmp_path / "a" / "studies" / lesion.id / "slice.dcm").read_bytes()
        assert a == (tmp_path / "b" / "studies" / lesion.id / "slice.dcm").read_bytes()
    truth = json.loads((tmp_path / "a" / "lesions.json").read_text())
    assert [(x["id"], x["diameter_mm"]) for x in truth["lesions"]] == [
        ("ct-lesion-01", 25.0),
        ("ct-lesion-02", 20.0),
        ("mr-lesion-01", 25.0),
    ]
    assert lesions(SOURCES[0], 8, 2) != lesions(SOURCES[0], 7, 2)


def test_the_protocol_finds_and_measures_the_inserted_lesions(insertion):
    folder, results = insertion
    assert ground_truth_failures(results) == []
    write_run_outputs(folder / "run", results)
    groups = json.loads((folder / "run" / "metrics.json").read_text())["groups"]
    assert sorted(groups) == ["ct 15 mm", "ct 20 mm", "ct 25 mm", "mr 25 mm"]
    assert groups["ct 15 mm"]["detection"] == {
        "k": 1,
        "n": 1,
        "value": 1.0,
        "low": 0.2065,
        "high": 1.0,
    }
    metrics = compute(results)
    assert metrics.detection.k == metrics.detection.n == 4
    assert metrics.recall_at_05.k == 4  # the outline's box matches the lesion's, IoU >= 0.5
    assert metrics.measurement_abs_error.mean <= TOLERANCE_MM
    for result in results:
        [measured] = result.score.measurements
        assert abs(measured.error) <= TOLERANCE_MM, (result.id, measured)


def test_a_tool_chain_that_shrinks_lesions_fails_the_ground_truth(insertion, tmp_path: Path):
    folder, _ = insertion
    cases = read_cases(folder / "set" / "cases.jsonl")
    tools = default_toolbox(CONFIG.tools)
    shrinking = Toolbox(
        [shrunk(tools[name]) if name == "measure" else tools[name] for name in tools.names]
    )
    one = replace(cases, cases=cases.cases[:1])  # the 25 mm lesion, measured 20 % short
    results = run_eval(one, CONFIG, tmp_path / "run", toolbox=shrinking)
    [failure] = ground_truth_failures(results)
    assert failure.startswith("ct-lesion-01: long axis") and "25 mm lesion" in failure


def shrunk(measure: Tool) -> Tool:
    """The measure tool reporting every length 20 % short: a deliberately broken tool chain."""

    def run(arguments, workspace) -> Observation:
        seen = measure.run(arguments, workspace)
        values = [
            {**m, "value": round(m["value"] * 0.8, 2)} if m["unit"] == "mm" else m
            for m in seen.payload["measurements"]
        ]
        return replace(seen, payload={**seen.payload, "measurements": values})

    return Tool(measure.name, measure.description, measure.parameters, run)


def test_compare_with_tools_against_the_no_tools_baseline(insertion):
    folder, with_tools = insertion
    cases = read_cases(folder / "set" / "cases.jsonl")
    without = run_eval(cases, CONFIG, folder / "no-tools", no_tools=True)
    assert all(r.score.calls and not r.score.valid_calls for r in without)  # every call refused
    comparison = compare_runs([folder / "run", folder / "no-tools"])
    [pairing] = comparison.pairings
    assert [f.case for f in pairing.flips] == [r.id for r in with_tools]
    assert (pairing.test.only_a, pairing.test.only_b) == (4, 0)
    assert pairing.test.p_value == 0.125  # exact binomial: 2 * (1/2)^4
    assert all(Path(f.read_a).is_file() and Path(f.read_b).is_file() for f in pairing.flips)
