"""Compare runs on the same cases: metrics side by side, accuracy paired per case (McNemar),
and the cases whose outcome flipped, with both reads to open."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_agent.evaluation.metrics import Metrics, compute
from edge_agent.evaluation.runner import CaseResult, load_results
from edge_agent.evaluation.stats import McNemar, mcnemar
from imaging.errors import BadInput


@dataclass(frozen=True)
class Flip:
    case: str
    outcome_a: str  # "right" / "wrong"
    outcome_b: str
    read_a: str  # report.html of each read, as a path
    read_b: str


@dataclass(frozen=True)
class Pairing:
    """Run `a` (the first) against run `b` on the cases both finished."""

    a: str
    b: str
    paired: int
    test: McNemar
    flips: tuple[Flip, ...]


@dataclass(frozen=True)
class Comparison:
    runs: tuple[str, ...]
    metrics: tuple[Metrics, ...]
    pairings: tuple[Pairing, ...]


def outcome(result: CaseResult) -> bool | None:
    """Right or wrong for a paired test: the answer for question cases, detection for regions;
    a failed read is wrong; None when the case has nothing to be right about."""
    if result.status != "done" or result.score is None:
        return False
    if result.score.correct is not None:
        return result.score.correct
    return result.score.detected


def compare_runs(folders: Sequence[Path]) -> Comparison:
    if len(folders) < 2:
        raise BadInput("compare needs at least two run folders")
    runs = []
    for folder in folders:
        results = load_results(Path(folder))
        if not results:
            raise BadInput(f"{folder} holds no finished cases (cases/*/result.json)")
        runs.append(results)
    pairings = tuple(
        pair(Path(folders[0]), runs[0], Path(folder), results)
        for folder, results in zip(folders[1:], runs[1:], strict=True)
    )
    return Comparison(tuple(str(f) for f in folders), tuple(compute(r) for r in runs), pairings)


def pair(
    folder_a: Path, results_a: Sequence[CaseResult], folder_b: Path, results_b: Sequence[CaseResult]
) -> Pairing:
    by_id = {r.id: r for r in results_b}
    flips, only_a, only_b, paired = [], 0, 0, 0
    for a in results_a:
        b = by_id.get(a.id)
        if b is None or outcome(a) is None or outcome(b) is None:
            continue
        paired += 1
        right_a, right_b = bool(outcome(a)), bool(outcome(b))
        if right_a == right_b:
            continue
        only_a += right_a
        only_b += right_b
        flips.append(
            Flip(
                a.id,
                "right" if right_a else "wrong",
                "right" if right_b else "wrong",
                _report(folder_a, a),
                _report(folder_b, b),
            )
        )
    return Pairing(str(folder_a), str(folder_b), paired, mcnemar(only_a, only_b), tuple(flips))


def _report(folder: Path, result: CaseResult) -> str:
    return str(folder / result.read / "report.html") if result.read else ""
