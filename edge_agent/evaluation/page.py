"""The HTML pages of an evaluation: a run's metrics and cases, and a comparison of runs.
Plots are embedded, so each page is one self-contained file."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path

from edge_agent.evaluation.compare import Comparison
from edge_agent.evaluation.metrics import Metrics, Spread
from edge_agent.evaluation.runner import CaseResult
from edge_agent.evaluation.stats import Rate

STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#f3f3f3}"
)


def metric_rows(metrics: Metrics) -> list[tuple[str, str]]:
    """(name, formatted value) for each metric: rates as k/n with their interval."""
    return [(f.name.replace("_", " "), _format(getattr(metrics, f.name))) for f in fields(metrics)]


def _format(value) -> str:
    if isinstance(value, Rate):
        if value.value is None:
            return "n/a (0 cases)"
        return f"{value.value:.3f} ({value.k}/{value.n}; 95 % CI {value.low:.3f}-{value.high:.3f})"
    if isinstance(value, Spread):
        if value.mean is None:
            return "n/a"
        return f"mean {value.mean:g}, p50 {value.p50:g}, p95 {value.p95:g} (n={value.n})"
    return str(value)


def run_page(
    title: str,
    metrics: Metrics,
    groups: Mapping[str, Metrics],
    results: Sequence[CaseResult],
    plots: Sequence[Path],
) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in metric_rows(metrics))
    cases = "".join(_case_row(r) for r in results)
    return _page(
        title,
        f"<h2>Metrics</h2><table>{rows}</table>{_images(plots)}{_groups(groups)}"
        "<h2>Cases</h2><table><tr>"
        "<th>case</th><th>kind</th><th>status</th><th>expected</th><th>read as</th><th>outcome</th>"
        f"</tr>{cases}</table>",
    )


GROUP_COLUMNS = (
    "closed_accuracy",
    "choice_accuracy",
    "open_exact",
    "detection",
    "measurement_abs_error",
    "tool_call_accuracy",
)


def _groups(groups: Mapping[str, Metrics]) -> str:
    """The main rates per group (a modality, a question type, a lesion size)."""
    if not groups:
        return ""
    header = "".join(f"<th>{_e(c.replace('_', ' '))}</th>" for c in GROUP_COLUMNS)
    rows = "".join(
        f"<tr><th>{_e(name)}</th><td>{m.cases}</td>"
        + "".join(f"<td>{_e(_format(getattr(m, c)))}</td>" for c in GROUP_COLUMNS)
        + "</tr>"
        for name, m in groups.items()
    )
    return f"<h2>Per group</h2><table><tr><th>group</th><th>cases</th>{header}</tr>{rows}</table>"


def _case_row(result: CaseResult) -> str:
    score = result.score
    link = f'<a href="{_e(result.read)}/report.html">{_e(result.id)}</a>' if result.read else ""
    if score is None:
        said, outcome = result.reason, "failed"
    else:
        said = score.predicted[:160]
        outcome = _outcome(score)
    return (
        f"<tr><td>{link or _e(result.id)}</td><td>{_e(result.kind)}</td><td>{_e(result.status)}"
        f"</td><td>{_e(result.expected)}</td><td>{_e(said)}</td><td>{_e(outcome)}</td></tr>"
    )


def _outcome(score) -> str:
    parts = []
    if score.correct is not None:
        parts.append("right" if score.correct else "wrong")
    if score.detected is not None:
        parts.append(f"IoU {score.iou:.2f}" + (" (found)" if score.detected else " (missed)"))
    parts += [
        f"{m.name} {m.measured:g} vs {m.expected:g} {m.unit}"
        if m.measured is not None
        else f"{m.name} not measured"
        for m in score.measurements
    ]
    parts.append(f"{score.valid_calls}/{score.calls} calls ok, {score.latency_s:.1f} s")
    return "; ".join(parts)


def compare_page(comparison: Comparison, plots: Sequence[Path]) -> str:
    header = "".join(f"<th>{_e(run)}</th>" for run in comparison.runs)
    table = [metric_rows(m) for m in comparison.metrics]
    rows = "".join(
        f"<tr><th>{_e(name)}</th>" + "".join(f"<td>{_e(t[i][1])}</td>" for t in table) + "</tr>"
        for i, (name, _) in enumerate(table[0])
    )
    pairs = "".join(_pairing(p) for p in comparison.pairings)
    return _page(
        "edge-agent eval compare",
        f"<table><tr><th>metric</th>{header}</tr>{rows}</table>{_images(plots)}{pairs}",
    )


def _pairing(pairing) -> str:
    test = pairing.test
    flips = "".join(
        f'<tr><td>{_e(f.case)}</td><td><a href="{_e(f.read_a)}">{_e(f.outcome_a)}</a></td>'
        f'<td><a href="{_e(f.read_b)}">{_e(f.outcome_b)}</a></td></tr>'
        for f in pairing.flips
    )
    return (
        f"<h2>{_e(pairing.a)} vs {_e(pairing.b)}</h2><p>{pairing.paired} paired cases; "
        f"right only in A: {test.only_a}, only in B: {test.only_b}; McNemar p = "
        f"{test.p_value:.4g} ({_e(test.method)})</p><table><tr><th>case</th><th>A</th><th>B</th>"
        f"</tr>{flips}</table>"
    )


def _images(plots: Sequence[Path]) -> str:
    return "".join(
        f'<p><img alt="{_e(p.stem)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"></p>'
        for p in plots
    )


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{_e(title)}</h1>{body}</body></html>\n"
    )


def _e(text: object) -> str:
    return html.escape(str(text))
