"""A run's metrics from its case results: every rate with its Wilson 95 % interval."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edge_agent.evaluation.runner import CaseResult
from edge_agent.evaluation.stats import Rate, percentile, wilson


@dataclass(frozen=True)
class Spread:
    n: int
    mean: float | None
    p50: float | None
    p95: float | None


@dataclass(frozen=True)
class Metrics:
    cases: int
    done: int
    failed: Rate  # share of cases whose read could not be done
    closed_accuracy: Rate
    choice_accuracy: Rate
    open_exact: Rate
    open_token_recall: Spread
    tool_call_accuracy: Rate  # calls that parsed, validated and ran, of all calls
    tool_calls_per_read: Spread
    detection: Rate  # expected regions a finding overlaps (IoU >= scoring.DETECT_IOU)
    recall_at_05: Rate  # expected regions a finding matches with IoU >= 0.5
    mean_iou: Spread
    measurement_within_tolerance: Rate
    measurement_error: Spread  # measured - expected, in the expected unit
    measurement_abs_error: Spread
    latency_s: Spread
    tokens_per_read: Spread
    answered: Rate  # reads that ended with an answer (not a budget or a policy error)


def compute(results: Sequence[CaseResult]) -> Metrics:
    done = [r for r in results if r.status == "done" and r.score is not None]
    scores = [r.score for r in done]

    def rate(kind: str, test) -> Rate:
        picked = [r.score for r in done if kind in ("", r.kind)]
        return wilson(sum(bool(test(s)) for s in picked), len(picked))

    regions = [s for s in scores if s.detected is not None]
    measured = [m for s in scores for m in s.measurements]
    errors = [m.error for m in measured if m.error is not None]
    return Metrics(
        cases=len(results),
        done=len(done),
        failed=wilson(len(results) - len(done), len(results)),
        closed_accuracy=rate("closed", lambda s: s.correct),
        choice_accuracy=rate("choice", lambda s: s.correct),
        open_exact=rate("open", lambda s: s.correct),
        open_token_recall=spread(
            [s.token_recall for r, s in zip(done, scores, strict=True) if r.kind == "open"]
        ),
        tool_call_accuracy=wilson(sum(s.valid_calls for s in scores), sum(s.calls for s in scores)),
        tool_calls_per_read=spread([s.calls for s in scores]),
        detection=wilson(sum(bool(s.detected) for s in regions), len(regions)),
        recall_at_05=wilson(sum((s.iou or 0) >= 0.5 for s in regions), len(regions)),
        mean_iou=spread([s.iou or 0.0 for s in regions]),
        measurement_within_tolerance=wilson(sum(m.within for m in measured), len(measured)),
        measurement_error=spread(errors),
        measurement_abs_error=spread([abs(e) for e in errors]),
        latency_s=spread([s.latency_s for s in scores]),
        tokens_per_read=spread([s.tokens_in + s.tokens_out for s in scores]),
        answered=wilson(sum(s.ended == "answer" for s in scores), len(scores)),
    )


def spread(values: Sequence[float]) -> Spread:
    values = [float(v) for v in values]
    mean = round(sum(values) / len(values), 4) if values else None
    return Spread(len(values), mean, percentile(values, 50), percentile(values, 95))
