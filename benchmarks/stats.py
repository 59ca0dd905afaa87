"""Small pure statistics shared by the benchmarks (and by the do-nothing agent, which must stay light)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: the smallest value with at least p% of the values at or below it."""
    if not values:
        raise ValueError("no values")
    if not 0 < p <= 100:
        raise ValueError(f"p must be in (0, 100], got {p}")
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def spread(values: Sequence[float], fmt: str = "{:,.0f}") -> list[str]:
    """min, median, max of the values, formatted."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return [fmt.format(ordered[0]), fmt.format(median), fmt.format(ordered[-1])]
