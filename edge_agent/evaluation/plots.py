"""Plots of one or more runs: rates with their Wilson 95 % intervals, and read latency.

matplotlib on its Agg back end (files only, no display); it comes with the `eval` extra."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from edge_agent.evaluation.metrics import Metrics
from edge_agent.evaluation.stats import Rate
from imaging.errors import BadInput

log = logging.getLogger(__name__)

RATES = (
    ("closed_accuracy", "closed"),
    ("choice_accuracy", "multiple choice"),
    ("open_exact", "open (exact)"),
    ("tool_call_accuracy", "tool calls"),
    ("detection", "detection"),
    ("recall_at_05", "R@0.5"),
    ("measurement_within_tolerance", "measurement in tol."),
)


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise BadInput("plots need matplotlib: pip install 'edge-agent[eval]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def rate_plot(names: Sequence[str], metrics: Sequence[Metrics], path: Path) -> Path:
    """Grouped bars, one group per rate any run measured, one bar per run, CI as error bars."""
    plt = _pyplot()
    shown = [
        (key, label)
        for key, label in RATES
        if any(getattr(m, key).value is not None for m in metrics)
    ]
    figure, axes = plt.subplots(figsize=(max(4.0, 1.4 * len(shown) + 1), 3.6), dpi=100)
    width = 0.8 / len(metrics)
    for i, (name, m) in enumerate(zip(names, metrics, strict=True)):
        rates: list[Rate] = [getattr(m, key) for key, _ in shown]
        values = [r.value or 0.0 for r in rates]
        below = [(r.value or 0.0) - (r.low or 0.0) for r in rates]
        above = [(r.high or 0.0) - (r.value or 0.0) for r in rates]
        positions = [j + (i - (len(metrics) - 1) / 2) * width for j in range(len(shown))]
        axes.bar(positions, values, width, yerr=[below, above], capsize=3, label=name)
    axes.set_xticks(range(len(shown)), [label for _, label in shown], rotation=20, ha="right")
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("rate (Wilson 95 % CI)")
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def latency_plot(names: Sequence[str], latencies: Sequence[Sequence[float]], path: Path) -> Path:
    """Seconds per read, one box per run (median, quartiles, whiskers at 1.5 IQR)."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(max(3.5, 1.5 * len(names) + 1), 3.2), dpi=100)
    axes.boxplot([list(v) or [0.0] for v in latencies], showfliers=True)
    axes.set_xticks(range(1, len(names) + 1), list(names), rotation=10)
    axes.set_ylabel("seconds per read")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
