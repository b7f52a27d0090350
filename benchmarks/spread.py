"""How a benchmark's repeated measurements spread: min/median/max in one field."""

from __future__ import annotations

import statistics
from collections.abc import Iterable


def spread(values: Iterable[float], form: str = ".2f") -> str:
    """`min/median/max` of `values`, each formatted with `form`."""
    values = list(values)
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{low:{form}}/{mid:{form}}/{high:{form}}"
