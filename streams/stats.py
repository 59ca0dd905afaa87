"""The statistical tests behind the alerts, each with the error rate it holds.

Alerts must fire when the evidence is certain for the sample at hand, not on noise.
Three questions, three small tests:

- Has a feature's distribution changed? Pearson's chi-square test of homogeneity on the
  PSI bins (reference counts against window counts). PSI is the symmetric KL divergence;
  for small changes ``PSI / (1/n + 1/m)`` follows the same chi-square law (Yurdakul 2018),
  so this is the test PSI's own null distribution calls for, without PSI's 0.0001 floor
  that makes one empty bin of a small window look like drift. Bins whose expected window
  count is below 5 are pooled, where the approximation would not hold.
- Is a window's accuracy certainly below an objective? Wilson score bounds of the labeled
  sample, looked at when the labeled count reaches MIN_LABELED, 2x, 4x ... (looks at fixed
  sizes, not after every label) with the error budget split over the looks.
- Did the error rate really change where ADWIN cut? A two-proportion z-test of the
  outcomes before and after the cut, reported as evidence.

>>> round(wilson_upper(430, 500, 0.05), 3)  # the notes' example: certain to be below 0.90
0.884
>>> look_index(50, 50), look_index(100, 50), look_index(150, 50), look_index(400, 50)
(0, 1, None, 3)
>>> look_alpha(0.01, 0), look_alpha(0.01, 1)
(0.005, 0.0025)
>>> t = homogeneity_test([500, 500], [50, 50])
>>> round(t.statistic, 9), t.dof, round(t.p_value, 6)
(0.0, 1, 1.0)
>>> round(per_test_level(0.001, 12), 10)
8.33716e-05
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

MIN_EXPECTED = 5.0  # expected window count per bin below which bins are pooled


@dataclass(frozen=True, slots=True)
class HomogeneityTest:
    """Pearson's chi-square test of reference against window bin counts."""

    statistic: float
    dof: int
    p_value: float
    bins: int  # after pooling

    name = "chi-square"


def homogeneity_test(reference_counts: Sequence[float], window_counts: Sequence[float]) -> HomogeneityTest:
    """Chi-square test that the window's values come from the reference's distribution.

    Bins are the PSI bins. Those whose expected window count is below MIN_EXPECTED are
    pooled into one; a pool still too small joins the smallest other bin. With fewer than
    two bins left there is nothing to test (p = 1).

    The same statistic as ``scipy.stats.chi2_contingency(..., correction=False)``.

    >>> t = homogeneity_test([250, 250, 250, 250], [10, 10, 10, 70])
    >>> round(t.statistic, 4), t.dof, t.p_value < 1e-18
    (89.2428, 3, True)
    >>> homogeneity_test([990, 10], [20, 0]).bins  # the rare bin is pooled away: nothing to test
    1
    """
    ref = np.asarray(reference_counts, dtype=np.float64)
    win = np.asarray(window_counts, dtype=np.float64)
    m, n = float(ref.sum()), float(win.sum())
    if m <= 0 or n <= 0:
        return HomogeneityTest(0.0, 0, 1.0, 0)
    keep = (ref + win) > 0
    ref, win = ref[keep], win[keep]
    expected = (ref + win) * n / (m + n)
    small = expected < MIN_EXPECTED
    if small.any():
        big = ~small
        ref = np.append(ref[big], ref[small].sum())
        win = np.append(win[big], win[small].sum())
        expected = (ref + win) * n / (m + n)
        if expected[-1] < MIN_EXPECTED and len(ref) > 1:
            j = int(np.argmin(expected[:-1]))
            ref[j] += ref[-1]
            win[j] += win[-1]
            ref, win = ref[:-1], win[:-1]
    if len(ref) < 2:
        return HomogeneityTest(0.0, 0, 1.0, len(ref))
    table = np.vstack([ref, win])
    totals = table.sum(axis=1, keepdims=True)
    expected_table = totals * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(((table - expected_table) ** 2 / expected_table).sum())
    dof = len(ref) - 1
    return HomogeneityTest(statistic, dof, float(stats.chi2.sf(statistic, dof)), len(ref))


def per_test_level(rate: float, tests: int) -> float:
    """The level of each of ``tests`` independent tests that gives ``rate`` false alarms for all
    of them together: ``1 - (1 - rate) ** (1 / tests)`` (a version's features in one window)."""
    if tests <= 1:
        return rate
    return -math.expm1(math.log1p(-rate) / tests)


def wilson_bounds(successes: int, trials: int, alpha: float) -> tuple[float, float]:
    """One-sided Wilson score bounds at level ``alpha`` each: (lower, upper).

    The same as SciPy's two-sided Wilson interval at confidence 1 - 2 * alpha.

    >>> [round(b, 4) for b in wilson_bounds(35, 50, 0.005)]
    [0.518, 0.8352]
    """
    if trials <= 0:
        return 0.0, 1.0
    z = float(stats.norm.isf(alpha))
    p = successes / trials
    denominator = 1 + z * z / trials
    center = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, center - half), min(1.0, center + half)


def wilson_upper(successes: int, trials: int, alpha: float) -> float:
    return wilson_bounds(successes, trials, alpha)[1]


def look_index(labeled: int, min_labeled: int) -> int | None:
    """Which look a labeled count is: MIN_LABELED * 2**j -> j; other counts are no look."""
    if labeled < min_labeled or min_labeled <= 0:
        return None
    ratio, rest = divmod(labeled, min_labeled)
    if rest or ratio & (ratio - 1):
        return None
    return ratio.bit_length() - 1


def look_alpha(alpha: float, index: int) -> float:
    """Look j spends alpha / 2**(j+1): over every look of a window, at most alpha in all."""
    return alpha / 2 ** (index + 1)


def two_proportion_p(errors_a: float, n_a: int, errors_b: float, n_b: int) -> float | None:
    """Two-sided p-value of a pooled two-proportion z-test (None when undefined).

    >>> round(two_proportion_p(25, 500, 75, 500), 8)
    1.4e-07
    """
    if n_a <= 0 or n_b <= 0:
        return None
    pooled = (errors_a + errors_b) / (n_a + n_b)
    variance = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    if variance <= 0:
        return None
    z = (errors_b / n_b - errors_a / n_a) / math.sqrt(variance)
    return float(2 * stats.norm.sf(abs(z)))
