"""The statistics an evaluation reports: Wilson intervals, McNemar's test, percentiles."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054
EXACT_BELOW = 25  # discordant pairs under this: exact binomial McNemar


@dataclass(frozen=True)
class Rate:
    """k of n, with its Wilson 95 % interval (sound at small n and at 0 or 1, unlike Wald's)."""

    k: int
    n: int
    value: float | None
    low: float | None
    high: float | None


def wilson(k: int, n: int, z: float = Z95) -> Rate:
    if n == 0:
        return Rate(k, n, None, None, None)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Rate(
        k, n, round(p, 4), round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)
    )


@dataclass(frozen=True)
class McNemar:
    only_a: int  # right in A, wrong in B
    only_b: int
    p_value: float
    method: str  # "exact binomial" or "chi-square, continuity corrected"


def mcnemar(only_a: int, only_b: int) -> McNemar:
    """Paired test on the discordant pairs; two-sided."""
    n = only_a + only_b
    if n == 0:
        return McNemar(only_a, only_b, 1.0, "exact binomial")
    if n < EXACT_BELOW:
        k = min(only_a, only_b)
        tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
        return McNemar(only_a, only_b, round(min(1.0, 2 * tail), 6), "exact binomial")
    statistic = (abs(only_a - only_b) - 1) ** 2 / n
    p = math.erfc(math.sqrt(statistic / 2))  # chi-square, 1 degree of freedom
    return McNemar(only_a, only_b, round(p, 6), "chi-square, continuity corrected")


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (position - low), 4)
