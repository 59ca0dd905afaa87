"""Accuracy before labels: a confidence-based estimate (NannyML's CBPE, in a stream).

A model's confidence in its predicted class is mapped to the probability that the
prediction is right by isotonic regression (pool-adjacent-violators) on the reference's
labeled rows, linear between the blocks' centres. A window's estimate is the mean
calibrated probability of its predictions; the map being linear per segment, the store
computes it from a count, a sum and a sum of squares of confidences per segment (exact
decimals, so every computation of a window gives the same figure).

The 95% interval adds two variances: the window's own luck (the realized accuracy of n
predictions with probabilities p_i is a Poisson-binomial mean, variance sum p_i(1 - p_i) / n^2)
and the calibration's (each block's accuracy is a mean of m_b reference rows: a Beta(k+1, m-k+1)
posterior variance, times the squared share of the window's weight on that block).
Assumes what CBPE assumes: calibrated scores on the reference and no concept drift (the
relation between features and labels unchanged); it sees covariate shift only.

>>> cal = fit_calibration([0.6, 0.7, 0.8, 0.9], [False, True, True, True], min_rows=1)
>>> cal.knots.round(6).tolist(), cal.accuracy.tolist(), cal.rows.tolist()
([0.6, 0.8], [0.0, 1.0], [1, 3])
>>> [round(cal.calibrated(c), 6) for c in (0.5, 0.65, 0.95)]
[0.0, 0.25, 1.0]
>>> e = estimate(cal, [0.6, 0.7, 0.8, 0.9])
>>> round(e.accuracy, 4), e.n
(0.625, 4)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Z_95 = 1.959963984540054  # two-sided 95%: the interval's upper bound is a one-sided 97.5% bound
MIN_REFERENCE_ROWS = 2  # fewer labeled reference rows with a confidence: no calibration
MIN_BLOCK_ROWS = 30  # reference rows of a calibration block, at least (smaller ones merged)


@dataclass(frozen=True)
class Calibration:
    """Isotonic map confidence -> P(prediction correct), linear between the blocks' centres.

    Knot k is block k of the pool-adjacent-violators fit: its mean reference confidence
    ``knots[k]``, its share of correct rows ``accuracy[k]``, its ``rows``. Between two knots
    the map is linear (centred isotonic regression: a step function is biased when a window's
    confidences sit in one end of a wide block, which is what covariate shift does); below
    the first knot and above the last it is flat (clipped). A confidence x is in segment
    ``count(knots < x)``: 0 and len(knots) are the flat ends."""

    knots: np.ndarray  # increasing
    accuracy: np.ndarray  # strictly increasing (equal fits are pooled)
    rows: np.ndarray

    def __post_init__(self) -> None:
        if not len(self.knots) == len(self.accuracy) == len(self.rows) or len(self.knots) == 0:
            raise ValueError("a calibration needs one knot, accuracy and row count per block")

    def segment_of(self, confidence: float) -> int:
        return int(np.searchsorted(self.knots, confidence, side="left"))

    def calibrated(self, confidence: float) -> float:
        return float(np.interp(confidence, self.knots, self.accuracy))

    def variance(self) -> np.ndarray:
        """Posterior variance of each block's accuracy: Beta(k + 1, m - k + 1), k = correct rows."""
        k = np.rint(self.accuracy * self.rows)
        m = self.rows.astype(np.float64)
        return (k + 1) * (m - k + 1) / ((m + 2) ** 2 * (m + 3))


@dataclass(frozen=True)
class SegmentSums:
    """A window's predictions in one segment: count, sum and sum of squares of their confidences."""

    n: int
    sum: float
    sum_sq: float


def pool_adjacent_violators(y: Sequence[float], weights: Sequence[float]) -> list[tuple[int, int, float, float]]:
    """Blocks (first, last index, weighted mean, weight) of the isotonic fit, strictly increasing.

    >>> [(a, b, round(m, 3), w) for a, b, m, w in pool_adjacent_violators([1, 0, 1, 0.5], [1, 1, 1, 1])]
    [(0, 1, 0.5, 2.0), (2, 3, 0.75, 2.0)]
    """
    blocks: list[list[float]] = []  # [first, last, mean, weight]
    for i, (value, weight) in enumerate(zip(y, weights, strict=True)):
        blocks.append([i, i, float(value), float(weight)])
        while len(blocks) > 1 and blocks[-2][2] >= blocks[-1][2]:  # equal fits pooled too: fewer, larger blocks
            last = blocks.pop()
            prev = blocks[-1]
            total = prev[3] + last[3]
            prev[2] = (prev[2] * prev[3] + last[2] * last[3]) / total
            prev[1], prev[3] = last[1], total
    return [(int(a), int(b), m, w) for a, b, m, w in blocks]


def merge_small_blocks(blocks: list[tuple[int, int, float, float]],
                       min_rows: float) -> list[tuple[int, int, float, float]]:
    """Blocks of fewer than ``min_rows`` rows merged into their smaller neighbour: a block of
    one or two rows says 0 or 1, and at the ends of the range every confidence beyond it gets
    that value. Merging neighbours of an increasing fit keeps it increasing.

    >>> [(a, b, round(m, 6), w) for a, b, m, w in
    ...  merge_small_blocks([(0, 0, 0.0, 1.0), (1, 4, 0.6, 40.0), (5, 9, 0.9, 50.0)], 30)]
    [(0, 4, 0.585366, 41.0), (5, 9, 0.9, 50.0)]
    """
    out = list(blocks)
    while len(out) > 1:
        i = min(range(len(out)), key=lambda k: (out[k][3], k))
        if out[i][3] >= min_rows:
            break
        j = i + 1 if i == 0 or (i + 1 < len(out) and out[i + 1][3] < out[i - 1][3]) else i - 1
        a, b = sorted((i, j))
        weight = out[a][3] + out[b][3]
        mean = (out[a][2] * out[a][3] + out[b][2] * out[b][3]) / weight
        out[a:b + 1] = [(out[a][0], out[b][1], mean, weight)]
    return out


def fit_calibration(confidences: Iterable[float], correct: Iterable[bool],
                    min_rows: int = MIN_BLOCK_ROWS) -> Calibration | None:
    """Isotonic regression of correctness on confidence; None with fewer than
    MIN_REFERENCE_ROWS rows. Equal confidences are pooled first, so a block never splits them."""
    x = np.asarray(list(confidences), dtype=np.float64)
    y = np.asarray(list(correct), dtype=np.float64)
    keep = np.isfinite(x)
    x, y = x[keep], y[keep]
    if len(x) < MIN_REFERENCE_ROWS:
        return None
    values, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=y, minlength=len(values))
    blocks = merge_small_blocks(pool_adjacent_violators((sums / counts).tolist(), counts.tolist()), min_rows)
    weighted_x = values * counts
    knots = np.array([weighted_x[a:b + 1].sum() / counts[a:b + 1].sum() for a, b, _, _ in blocks])
    correct_rows = np.array([sums[a:b + 1].sum() for a, b, _, _ in blocks])
    rows = np.array([int(counts[a:b + 1].sum()) for a, b, _, _ in blocks])
    return Calibration(knots=knots, accuracy=correct_rows / rows, rows=rows)


def confidence_of(score: object, scores: object = None) -> float | None:
    """A reference row's confidence, as the worker stores a prediction's: the highest class
    probability of ``scores``, else max(score, 1 - score) for a binary score.

    >>> confidence_of(0.3), confidence_of(None, {"a": 0.2, "b": 0.5, "c": 0.3}), confidence_of("x")
    (0.7, 0.5, None)
    """
    if isinstance(scores, dict) and scores:
        values = [float(v) for v in scores.values() if isinstance(v, int | float) and not isinstance(v, bool)]
        return max(values) if values else None
    if isinstance(score, int | float) and not isinstance(score, bool) and math.isfinite(score):
        return max(float(score), 1.0 - float(score))
    return None


@dataclass(frozen=True)
class AccuracyEstimate:
    """A window's estimated accuracy and its 95% interval (clipped to [0, 1])."""

    accuracy: float
    low: float
    high: float
    n: int  # predictions with a confidence
    std: float

    def error(self, realized: float | None) -> float | None:
        """Realized minus estimated accuracy, once labels give the realized one."""
        return None if realized is None else realized - self.accuracy


@dataclass(frozen=True)
class WindowEstimate:
    """A window's estimated accuracy and how many of its labels came before it ended (event time)."""

    estimate: AccuracyEstimate
    labeled_by_end: int


def estimate_from_sums(calibration: Calibration, segments: Mapping[int, SegmentSums],
                       z: float = Z_95) -> AccuracyEstimate | None:
    """The estimate of a window from its segments' sums (what the store computes); None without predictions.

    >>> cal = Calibration(np.array([0.6, 0.8]), np.array([0.6, 0.9]), np.array([100, 100]))
    >>> e = estimate_from_sums(cal, {0: SegmentSums(50, 25.0, 12.5), 1: SegmentSums(100, 70.0, 49.0),
    ...                               2: SegmentSums(50, 45.0, 40.5)})
    >>> round(e.accuracy, 6), round(e.std, 6), round(e.low, 6), round(e.high, 6)
    (0.75, 0.04121, 0.66923, 0.83077)
    """
    x, y = calibration.knots, calibration.accuracy
    last = len(x)
    weight = np.zeros(last, dtype=np.float64)  # predictions' weight on each knot's accuracy
    total = expected = expected_sq = 0.0
    for j, seg in sorted(segments.items()):  # one order: the same float sums in every run
        if seg.n <= 0:
            continue
        if j <= 0 or j >= last:
            k = 0 if j <= 0 else last - 1
            alpha, beta = float(y[k]), 0.0
            weight[k] += seg.n
        else:
            span = float(x[j] - x[j - 1])
            beta = float(y[j] - y[j - 1]) / span
            alpha = float(y[j - 1]) - beta * float(x[j - 1])
            upper_share = (seg.sum - seg.n * float(x[j - 1])) / span
            weight[j - 1] += seg.n - upper_share
            weight[j] += upper_share
        total += seg.n
        expected += alpha * seg.n + beta * seg.sum
        expected_sq += alpha * alpha * seg.n + 2 * alpha * beta * seg.sum + beta * beta * seg.sum_sq
    if total <= 0:
        return None
    accuracy = expected / total
    luck = max(0.0, expected - expected_sq) / total**2  # sum p(1 - p) / n^2
    calibration_var = float(np.dot((weight / total) ** 2, calibration.variance()))
    std = math.sqrt(luck + calibration_var)
    return AccuracyEstimate(accuracy, max(0.0, accuracy - z * std), min(1.0, accuracy + z * std), int(total), std)


def segment_sums(calibration: Calibration, confidences: Iterable[float | None]) -> dict[int, SegmentSums]:
    """The sums :func:`estimate_from_sums` reads, from a window's confidences (nulls left out)."""
    c = np.asarray([v for v in confidences if v is not None], dtype=np.float64)
    seg = np.searchsorted(calibration.knots, c, side="left")
    return {int(j): SegmentSums(int((seg == j).sum()), float(c[seg == j].sum()), float((c[seg == j] ** 2).sum()))
            for j in np.unique(seg)}


def estimate(calibration: Calibration, confidences: Iterable[float | None], z: float = Z_95) -> AccuracyEstimate | None:
    """The estimate of a window from its predictions' confidences."""
    return estimate_from_sums(calibration, segment_sums(calibration, confidences), z)
