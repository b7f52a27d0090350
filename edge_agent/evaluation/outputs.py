"""What an evaluation leaves behind: RUN/metrics.json, RUN/metrics.html and its plots; for a
comparison, compare.json and compare.html."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

from edge_agent.evaluation.compare import Comparison
from edge_agent.evaluation.metrics import Metrics, compute
from edge_agent.evaluation.page import compare_page, run_page
from edge_agent.evaluation.plots import latency_plot, rate_plot
from edge_agent.evaluation.runner import CaseResult, load_results
from imaging.records import to_plain

log = logging.getLogger(__name__)


def write_run_outputs(out: Path, results: Sequence[CaseResult]) -> Metrics:
    """metrics.json (every rate with its Wilson interval), plots, and metrics.html."""
    metrics = compute(results)
    groups = {
        name: compute([r for r in results if r.group == name])
        for name in sorted({r.group for r in results if r.group}, key=_natural)
    }
    saved = {**to_plain(metrics), "groups": {name: to_plain(m) for name, m in groups.items()}}
    (out / "metrics.json").write_text(json.dumps(saved, indent=2), encoding="utf-8")
    name = out.name or str(out)
    plots = [
        rate_plot([name], [metrics], out / "rates.png"),
        latency_plot([name], [_latencies(results)], out / "latency.png"),
    ]
    (out / "metrics.html").write_text(
        run_page(f"edge-agent eval: {name}", metrics, groups, results, plots), encoding="utf-8"
    )
    return metrics


def write_comparison(out: Path, comparison: Comparison) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(to_plain(comparison), indent=2), encoding="utf-8")
    names = [Path(r).name or r for r in comparison.runs]
    plots = [
        rate_plot(names, comparison.metrics, out / "rates.png"),
        latency_plot(
            names, [_latencies(load_results(Path(r))) for r in comparison.runs], out / "latency.png"
        ),
    ]
    page = out / "compare.html"
    page.write_text(compare_page(comparison, plots), encoding="utf-8")
    return page


def _natural(name: str) -> tuple:
    """'ct 8 mm' before 'ct 10 mm'."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def _latencies(results: Sequence[CaseResult]) -> list[float]:
    return [r.score.latency_s for r in results if r.score is not None]
