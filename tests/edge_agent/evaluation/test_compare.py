from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.evaluation.compare import compare_runs
from edge_agent.evaluation.runner import CaseResult, RunInfo
from edge_agent.evaluation.scoring import Score
from edge_agent.evaluation.stats import mcnemar, percentile, wilson
from imaging.records import to_plain

ROOT = Path(__file__).resolve().parents[3]


def write_run(folder: Path, right: dict[str, bool]) -> Path:
    """A run folder as the runner leaves it, with known right and wrong closed answers."""
    for case_id, correct in right.items():
        score = Score("yes" if correct else "no", correct, None, 2, 2, None, None, (), 1.5, 0, 0)
        result = CaseResult(
            case_id,
            "closed",
            "q?",
            "yes",
            "done",
            read=f"cases/{case_id}/read",
            score=score,
            row=f"row-{case_id}",
        )
        path = folder / "cases" / case_id / "result.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(to_plain(result)))
    rows = {case_id: f"row-{case_id}" for case_id in right}
    info = RunInfo("cases.csv", "protocol", False, len(rows), rows=rows)
    (folder / "run.json").write_text(json.dumps(to_plain(info)))
    return folder


def test_compare_reports_exactly_the_flipped_cases_and_mcnemars_p(tmp_path: Path):
    ids = [f"case{i:02d}" for i in range(12)]
    a = {i: True for i in ids} | {"case10": False, "case11": False}
    b = dict(a) | {"case01": False, "case04": False, "case07": False, "case10": True}
    comparison = compare_runs([write_run(tmp_path / "A", a), write_run(tmp_path / "B", b)])
    [pairing] = comparison.pairings
    assert [(f.case, f.outcome_a, f.outcome_b) for f in pairing.flips] == [
        ("case01", "right", "wrong"),
        ("case04", "right", "wrong"),
        ("case07", "right", "wrong"),
        ("case10", "wrong", "right"),
    ]
    assert pairing.paired == 12
    assert (pairing.test.only_a, pairing.test.only_b) == (3, 1)
    assert pairing.test.p_value == 0.625  # exact: 2 * (1 + 4) / 16
    assert pairing.flips[0].read_a == str(tmp_path / "A" / "cases/case01/read/report.html")
    assert [m.closed_accuracy.k for m in comparison.metrics] == [10, 8]


def test_the_compare_command_prints_the_table_and_writes_its_page(tmp_path: Path):
    write_run(tmp_path / "A", {"c1": True, "c2": True})
    write_run(tmp_path / "B", {"c1": True, "c2": False})
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_agent.cli",
            "eval",
            "compare",
            tmp_path / "A",
            tmp_path / "B",
            "--out",
            tmp_path / "cmp",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert "closed accuracy" in done.stdout
    assert "flipped c2: right -> wrong" in done.stderr
    page = (tmp_path / "cmp" / "compare.html").read_text()
    assert "McNemar p = 1" in page and page.count("data:image/png") == 2


def test_wilson_intervals_and_mcnemar_match_published_values():
    rate = wilson(81, 263)  # Wilson (1927) / Newcombe (1998) example: 0.2553-0.3662
    assert (rate.low, rate.high) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson(0, 10).low == 0.0 and wilson(0, 10).high == pytest.approx(0.2775, abs=1e-4)
    assert wilson(0, 0).value is None
    assert mcnemar(0, 5).p_value == 0.0625
    large = mcnemar(30, 10)  # chi-square with continuity: (|30-10|-1)^2/40 = 9.025
    assert large.method.startswith("chi-square") and large.p_value == pytest.approx(
        0.00266, abs=1e-5
    )
    assert percentile([1, 2, 3, 4], 50) == 2.5
