"""Label-pipeline health: is a model version still getting its labels?

When the label pipeline breaks, every accuracy figure silently freezes. The rule here
watches each version's *label coverage at a fixed age*: the share of a window's
predictions whose label arrived within ``age`` of the window's end, where ``age`` is the
version's usual label delay (the p99 of the delays seen so far). Every window old enough
(window end + age <= the evaluation point) has a coverage that no later label can change,
so windows are compared like with like, and the normal label delay never looks like an
outage.

The rule is decided at points of **event time** only: at each window boundary ``T`` the
version's watermark passes, from the facts with timestamps before ``T`` (all of them are
stored by then). The end of a replayed log is therefore safe: its last windows reach
``age`` only when the watermark, which moves with the label timestamps too, passes their
end + age, and then the labels they should have by that age are in the log.

>>> history = [WindowCoverage(0, 100, 90), WindowCoverage(1, 100, 88), WindowCoverage(2, 100, 91),
...            WindowCoverage(3, 100, 10)]
>>> d = decide(history, min_predictions=50)
>>> d.window_ms, d.missing, round(d.usual, 3), d.coverage
(3, True, 0.897, 0.1)
>>> decide(history[:3], min_predictions=50).missing
False
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from scipy import stats

from streams.alert_rules import Condition
from streams.figures import _version_filter

SUBJECT = "labels"
ALERT_TYPE = "labels_missing"
# The "usual delay": a window is judged this long after its end. The 99th percentile, not the
# 90th: with labels delivered in batches (a daily dump), the windows just after a dump wait
# longest for their labels, and a lower quantile would judge them before their dump came.
DELAY_QUANTILE = 0.99
DROP_RATIO = 0.5  # missing: coverage below this share of the usual coverage ...
ALPHA = 0.001  # ... and a one-sided binomial test at this level says it is no chance
HISTORY_WINDOWS = 24  # healthy windows the usual coverage is pooled over
MIN_HISTORY = 2  # healthy windows needed before anything is decided
LOOKBACK_S = 7 * 86400  # windows and delays older than this before the point are not read


@dataclass(frozen=True, slots=True)
class WindowCoverage:
    """One window's predictions and how many of them were labeled by the judging age."""

    window_ms: int
    predictions: int
    labeled: int

    @property
    def coverage(self) -> float:
        return self.labeled / self.predictions if self.predictions else 0.0


@dataclass(frozen=True, slots=True)
class LabelDecision:
    """The verdict on the latest window old enough to judge. ``missing`` None: undecided."""

    window_ms: int
    predictions: int
    labeled: int
    usual: float
    p_value: float
    missing: bool | None
    history: int  # healthy windows the usual coverage came from

    @property
    def coverage(self) -> float:
        return self.labeled / self.predictions if self.predictions else 0.0


def lower_tail_p(labeled: int, predictions: int, usual: float) -> float:
    """P(X <= labeled) for X ~ Binomial(predictions, usual): how unlikely so few labels are.

    >>> round(lower_tail_p(10, 100, 0.9), 12)
    0.0
    >>> round(lower_tail_p(85, 100, 0.9), 4)
    0.0726
    """
    return float(stats.binom.cdf(labeled, predictions, usual))


def decide(windows: Sequence[WindowCoverage], min_predictions: int, drop_ratio: float = DROP_RATIO,
           alpha: float = ALPHA, history_windows: int = HISTORY_WINDOWS,
           min_history: int = MIN_HISTORY) -> LabelDecision | None:
    """The verdict on the last judged window (None: nothing to judge); see :func:`verdicts`."""
    tail = deque(verdicts(windows, min_predictions, drop_ratio, alpha, history_windows, min_history), maxlen=1)
    return tail[0] if tail else None


def verdicts(windows: Sequence[WindowCoverage], min_predictions: int, drop_ratio: float = DROP_RATIO,
             alpha: float = ALPHA, history_windows: int = HISTORY_WINDOWS,
             min_history: int = MIN_HISTORY) -> Iterator[LabelDecision | None]:
    """Walk the windows in order, one verdict each (None while the history is being built).

    A window with fewer than ``min_predictions`` predictions is skipped. Each other window is
    compared with the pooled coverage of the last ``history_windows`` healthy windows before
    it: *missing* when its coverage is below ``drop_ratio`` x usual and the binomial lower
    tail is below ``alpha``; *healthy* (joins the history) when its coverage is at least
    ``drop_ratio`` x usual; undecided otherwise. Windows judged missing never join the history,
    so a long outage does not lower the usual coverage it is measured against; nor do windows
    without any label while the history is built, so a version that never had labels (or an
    outage longer than the lookback) is never judged healthy on a usual coverage of 0."""
    healthy: list[WindowCoverage] = []
    for w in sorted(windows, key=lambda c: c.window_ms):
        if w.predictions < min_predictions:
            continue
        recent = healthy[-history_windows:]
        if len(recent) < min_history:
            if w.labeled:  # a window without labels is no evidence of the usual coverage
                healthy.append(w)
            yield None
            continue
        usual = sum(c.labeled for c in recent) / sum(c.predictions for c in recent)
        p_value = lower_tail_p(w.labeled, w.predictions, usual)
        if w.coverage >= drop_ratio * usual:
            missing: bool | None = False
            healthy.append(w)
        elif p_value < alpha:
            missing = True
        else:
            missing = None
        yield LabelDecision(w.window_ms, w.predictions, w.labeled, usual, p_value, missing, len(recent))


def condition(model: str, version: str, d: LabelDecision, age_s: float, drop_ratio: float = DROP_RATIO,
              alpha: float = ALPHA) -> Condition | None:
    """labels_missing on the verdict (None when undecided)."""
    if d.missing is None:
        return None
    hours = age_s / 3600
    if d.missing:
        message = (f"Labels of {model} {version} are missing: {d.coverage:.1%} of the window's {d.predictions} "
                   f"predictions were labeled {hours:.1f} h after its end, against a usual {d.usual:.1%}.")
    else:
        message = (f"Labels of {model} {version} are back: {d.coverage:.1%} of the window's {d.predictions} "
                   f"predictions labeled {hours:.1f} h after its end (usual {d.usual:.1%}).")
    evidence: dict[str, Any] = {"predictions": d.predictions, "labeled": d.labeled, "coverage": d.coverage,
                                "usual_coverage": d.usual, "judged_at_age_s": age_s, "p_value": d.p_value,
                                "alpha": alpha, "drop_ratio": drop_ratio, "history_windows": d.history,
                                "test": "binomial lower tail"}
    return Condition(ALERT_TYPE, SUBJECT, d.missing, "warning", d.coverage, drop_ratio * d.usual, d.usual,
                     message, "investigate", evidence)


def boundaries(after_ms: int, upto_ms: int, window_seconds: int) -> range:
    """Window boundaries T with after_ms < T <= upto_ms, in order: the points the rule is decided at.

    A range, not a list: from a version that was never evaluated (``after_ms`` -1) to an epoch
    watermark there are tens of millions of boundaries, and the caller that only asks whether
    one was passed must not build them (seconds of the event loop at every refresh).

    >>> list(boundaries(3_600_000, 10_900_000, 3600))
    [7200000, 10800000]
    >>> list(boundaries(-1, 0, 3600))
    [0]
    >>> len(boundaries(-1, 1_764_000_000_000, 20))
    88200001
    """
    size = window_seconds * 1000
    first = (after_ms // size + 1) * size
    return range(first, upto_ms + 1, size)


def _ms(value: int) -> str:
    return f"fromUnixTimestamp64Milli(toInt64({int(value)}), 'UTC')"


def coverage_sql(db: str, model: str, version: str, at_ms: int, window_seconds: int,
                 quantile: float = DELAY_QUANTILE, lookback_s: int = LOOKBACK_S) -> str:
    """Per window, as of event time ``at_ms``: the judging age (the ``quantile`` of the label
    delays of outcomes joined before ``at_ms``, in ms), the predictions of the windows old
    enough at that age, and how many were labeled by it. One row per window; none when the
    version had no labels. Only windows starting within ``lookback_s`` before ``at_ms`` are
    read (a bounded cost per point, however long the version has run)."""
    since = _ms(at_ms - lookback_s * 1000)
    joined = (f"{_version_filter(model, version)} AND window_start >= {since} AND "
              f"greatest(toUnixTimestamp64Milli(predicted_at), toUnixTimestamp64Milli(labeled_at)) < {int(at_ms)}")
    size = window_seconds * 1000
    age = (f"(SELECT toInt64(ceil(greatest(0, quantileExactInclusive({quantile})("
           "toUnixTimestamp64Milli(labeled_at) - toUnixTimestamp64Milli(predicted_at))))) "
           f"FROM `{db}`.outcomes FINAL WHERE {joined} HAVING count() > 0)")
    return (
        f"WITH {age} AS age "
        "SELECT age, p.w, p.n, ifNull(o.labeled, 0) FROM "
        "(SELECT toUnixTimestamp64Milli(window_start) AS w, count() AS n "
        f"FROM `{db}`.predictions FINAL WHERE {_version_filter(model, version)} "
        f"AND window_start >= {since} AND window_start <= {_ms(at_ms - size)} GROUP BY w) AS p "
        "LEFT JOIN (SELECT toUnixTimestamp64Milli(window_start) AS w, "
        f"countIf(toUnixTimestamp64Milli(labeled_at) < w + {size} + age) AS labeled "
        f"FROM `{db}`.outcomes FINAL WHERE {joined} GROUP BY w) AS o ON p.w = o.w "
        f"WHERE age IS NOT NULL AND p.w + {size} + age <= {int(at_ms)} ORDER BY p.w"
    )


def judged(rows: Sequence[tuple]) -> tuple[float | None, list[WindowCoverage]]:
    """The judging age (seconds) and the windows of :func:`coverage_sql`'s rows."""
    if not rows:
        return None, []
    return int(rows[0][0]) / 1000, [WindowCoverage(int(w), int(n), int(k)) for _, w, n, k in rows]
