"""Version comparison: is the newer version of a model worse than the older one?

When two versions of one model both have at least MIN_LABELED labels in a window, their
accuracies are compared with a two-proportion z-test (pooled, two-sided) and the
difference ``candidate - baseline`` is given with its 95% (unpooled Wald) interval. The
*candidate* is the version first seen later in event time (the window of its first
prediction), the *baseline* the earlier one; two versions first seen in the same window are
compared both ways.

``version_worse`` fires when the candidate is worse by at least DEGRADATION_THRESHOLD with
p below the level of the look, and resolves when a later look proves it is not: the
one-sided bound of the difference at that level lies above -DEGRADATION_THRESHOLD. A look
that proves neither decides nothing, so a canary too small to prove either way keeps its
state instead of flapping.

Decided at points of event time only (window boundaries the watermarks pass), on the
outcomes joined before that point. A window is looked at, like the accuracy rules,
when the smaller version's labeled count first reaches MIN_LABELED * 2**j at a boundary
(level ALPHA / 2**(j+1): over all looks of a window at most ALPHA) and once when it is
final (level ALPHA). A false alarm needs both a point difference of at
least the threshold and a one-sided tail below level/2, so under no difference the
chance that a window raises one is at most ALPHA.

>>> c = compare(400, 360, 100, 80)
>>> round(c.diff, 3), round(c.diff_low, 4), round(c.diff_high, 4), round(c.p_value, 6)
(-0.1, -0.1837, -0.0163, 0.005916)
>>> c.worse(0.05, 0.01)
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scipy import stats

from streams.alert_rules import Condition
from streams.stats import look_alpha, two_proportion_p

ALERT_TYPE = "version_worse"
ALPHA = 0.01  # the p < 0.01, over every look of one window together
INTERVAL = 0.95  # the interval of the difference stored in version_comparison
FLOAT_TOLERANCE = 1e-12


@dataclass(frozen=True, slots=True)
class Comparison:
    """Baseline (a) against candidate (b) in one window."""

    n_a: int
    correct_a: int
    n_b: int
    correct_b: int
    diff: float  # accuracy_b - accuracy_a
    diff_low: float
    diff_high: float
    p_value: float
    se: float

    @property
    def accuracy_a(self) -> float:
        return self.correct_a / self.n_a

    @property
    def accuracy_b(self) -> float:
        return self.correct_b / self.n_b

    def worse(self, threshold: float, level: float) -> bool:
        """Worse by at least ``threshold`` with p below ``level``."""
        return self.diff <= -threshold + FLOAT_TOLERANCE and self.p_value < level

    def not_worse(self, threshold: float, level: float) -> bool:
        """Proven not worse by ``threshold``: the one-sided bound at ``level`` lies above -threshold."""
        return self.diff - float(stats.norm.isf(level)) * self.se > -threshold


def compare(n_a: int, correct_a: int, n_b: int, correct_b: int, interval: float = INTERVAL) -> Comparison:
    """The test and the interval of the difference of two accuracies."""
    pa, pb = correct_a / n_a, correct_b / n_b
    se = math.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)
    z = float(stats.norm.isf((1 - interval) / 2))
    p = two_proportion_p(n_a - correct_a, n_a, n_b - correct_b, n_b)
    diff = pb - pa
    return Comparison(n_a, correct_a, n_b, correct_b, diff, diff - z * se, diff + z * se,
                      1.0 if p is None else p, se)


@dataclass(frozen=True, slots=True)
class Look:
    """Which decision a boundary makes for one window: look j, the final one (None), or none."""

    index: int | None
    level: float


def look_at(labeled_now: int, labeled_before: int, min_labeled: int, final: bool,
            alpha: float = ALPHA) -> Look | None:
    """The look a boundary makes, from the smaller version's labeled count at it and at the
    previous boundary: a look when the count passed MIN_LABELED * 2**j since (the highest such j);
    the final look at the boundary where the window became final.

    >>> look_at(120, 40, 50, False)
    Look(index=1, level=0.0025)
    >>> look_at(120, 110, 50, False) is None
    True
    >>> look_at(30, 30, 50, True) is None  # too few labels even at finality
    True
    """
    if labeled_now < min_labeled:
        return None
    if final:
        return Look(None, alpha)
    now = _passed(labeled_now, min_labeled)
    before = _passed(labeled_before, min_labeled) if labeled_before >= min_labeled else -1
    if now > before:
        return Look(now, look_alpha(alpha, now))
    return None


def _passed(labeled: int, min_labeled: int) -> int:
    """The highest j with MIN_LABELED * 2**j <= labeled."""
    j = 0
    while min_labeled * 2 ** (j + 1) <= labeled:
        j += 1
    return j


def condition(model: str, baseline: str, candidate: str, c: Comparison, look: Look, threshold: float,
              extra: dict[str, Any] | None = None) -> Condition | None:
    """version_worse of ``candidate`` against ``baseline`` at a look (None: undecided)."""
    if c.worse(threshold, look.level):
        active = True
    elif c.not_worse(threshold, look.level):
        active = False
    else:
        return None
    if active:
        message = (f"{model} {candidate} is worse than {baseline}: accuracy {c.accuracy_b:.1%} against "
                   f"{c.accuracy_a:.1%} ({c.diff * 100:+.1f} points, 95% interval {c.diff_low * 100:+.1f} to "
                   f"{c.diff_high * 100:+.1f}; p = {c.p_value:.2g} < {look.level:.2g}).")
    else:
        message = (f"{model} {candidate} is no longer worse than {baseline}: accuracy {c.accuracy_b:.1%} against "
                   f"{c.accuracy_a:.1%} ({c.diff * 100:+.1f} points).")
    evidence = {"baseline_version": baseline, "candidate_version": candidate, "n_baseline": c.n_a,
                "correct_baseline": c.correct_a, "n_candidate": c.n_b, "correct_candidate": c.correct_b,
                "diff": c.diff, "diff_low": c.diff_low, "diff_high": c.diff_high, "p_value": c.p_value,
                "level": look.level, "look": look.index, "test": "two-proportion z-test",
                "decided_by": "final" if look.index is None else "look", **(extra or {})}
    severity = "critical" if active and c.diff < -2 * threshold else "warning"
    return Condition(ALERT_TYPE, baseline, active, severity, c.diff, threshold, c.accuracy_a, message,
                     "investigate", evidence)


def ordered_pairs(first_seen: Sequence[tuple[str, int]], window_seconds: int) -> list[tuple[str, str]]:
    """(baseline, candidate) pairs of a model's versions: each version first seen in a later window
    against each one first seen in an earlier window. Versions first seen in the same window (an
    A/B test started at once: which request came first says nothing) are compared both ways.

    >>> ordered_pairs([("v2", 7_200_000), ("v1", 1), ("v3", 7_200_500)], 3600)
    [('v1', 'v2'), ('v1', 'v3'), ('v2', 'v3'), ('v3', 'v2')]
    """
    size = window_seconds * 1000
    window = {v: ms // size for v, ms in first_seen}
    order = sorted(window, key=lambda v: (window[v], v))
    return [(a, b) for a in order for b in order if a != b and window[a] <= window[b]]


def counts_sql(db: str, model: str, at_ms: int, before_ms: int, window_seconds: int, grace_seconds: int) -> str:
    """Per version and window not final before ``before_ms``: labeled and correct outcomes joined
    before ``at_ms`` and before ``before_ms`` (each capped at the window's finality)."""
    size = window_seconds * 1000
    final = (window_seconds + grace_seconds) * 1000
    join = "greatest(toUnixTimestamp64Milli(predicted_at), toUnixTimestamp64Milli(labeled_at))"
    name = model.replace("\\", "\\\\").replace("'", "\\'")
    return (
        "SELECT model_version, toUnixTimestamp64Milli(window_start) AS w, "
        f"countIf({join} < least({int(at_ms)}, w + {final} + 1)) AS n, "
        f"countIf(correct = 1 AND {join} < least({int(at_ms)}, w + {final} + 1)), "
        f"countIf({join} < least({int(before_ms)}, w + {final} + 1)) "
        f"FROM `{db}`.outcomes FINAL WHERE model = '{name}' "
        f"AND window_start <= fromUnixTimestamp64Milli(toInt64({int(at_ms) - size}), 'UTC') "
        f"AND window_start >= fromUnixTimestamp64Milli(toInt64({int(before_ms) - final}), 'UTC') "
        "GROUP BY model_version, w HAVING n > 0 ORDER BY w, model_version"
    )


@dataclass(frozen=True, slots=True)
class Pooled:
    """Both versions' labels summed over the windows where each has at least MIN_LABELED."""

    n_a: int
    correct_a: int
    n_b: int
    correct_b: int
    windows: int
    smaller_before: int  # the smaller pooled count at the previous boundary (for the looks)


def pooled(counts: dict[tuple[str, int], tuple[int, int, int, int]], a: str, b: str, min_labeled: int,
           at_ms: int, before_ms: int, window_seconds: int) -> Pooled:
    """Pool the windows closed at ``at_ms`` where both versions have >= ``min_labeled`` labels, and
    the same at the previous boundary ``before_ms`` (counts: (version, window) -> labeled and correct
    joined before ``at_ms``, labeled and correct joined before ``before_ms``).

    >>> c = {("a", 0): (60, 57, 50, 48), ("b", 0): (60, 50, 40, 33), ("a", 1): (70, 66, 0, 0), ("b", 1): (10, 9, 0, 0)}
    >>> pooled(c, "a", "b", 50, 3600_000 + 2, 3600_000 + 1, 3600)
    Pooled(n_a=60, correct_a=57, n_b=60, correct_b=50, windows=1, smaller_before=0)
    """
    size = window_seconds * 1000
    now = [0, 0, 0, 0]
    before = [0, 0]
    used = 0
    for w in sorted({w for v, w in counts if v == a} & {w for v, w in counts if v == b}):
        na, ka, pa, _ = counts[(a, w)]
        nb, kb, pb, _ = counts[(b, w)]
        if w + size <= at_ms and min(na, nb) >= min_labeled:
            now = [now[0] + na, now[1] + ka, now[2] + nb, now[3] + kb]
            used += 1
        if w + size <= before_ms and min(pa, pb) >= min_labeled:
            before = [before[0] + pa, before[1] + pb]
    return Pooled(now[0], now[1], now[2], now[3], used, min(before))


def pooled_sql(db: str, model: str, versions: tuple[str, str], since_ms: int, at_ms: int, before_ms: int,
               window_seconds: int, grace_seconds: int) -> str:
    """Per version and window from ``since_ms`` closed at ``at_ms``: labeled and correct outcomes joined
    before ``at_ms`` and before ``before_ms`` (each capped at the window's finality)."""
    size = window_seconds * 1000
    final = (window_seconds + grace_seconds) * 1000
    join = "greatest(toUnixTimestamp64Milli(predicted_at), toUnixTimestamp64Milli(labeled_at))"
    name = model.replace("\\", "\\\\").replace("'", "\\'")
    names = ", ".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in versions)
    cap = f"w + {final} + 1"
    return (
        "SELECT model_version, toUnixTimestamp64Milli(window_start) AS w, "
        f"countIf({join} < least({int(at_ms)}, {cap})), countIf(correct = 1 AND {join} < least({int(at_ms)}, {cap})), "
        f"countIf({join} < least({int(before_ms)}, {cap})), "
        f"countIf(correct = 1 AND {join} < least({int(before_ms)}, {cap})) "
        f"FROM `{db}`.outcomes FINAL WHERE model = '{name}' AND model_version IN ({names}) "
        f"AND window_start >= fromUnixTimestamp64Milli(toInt64({int(since_ms)}), 'UTC') "
        f"AND window_start <= fromUnixTimestamp64Milli(toInt64({int(at_ms) - size}), 'UTC') "
        "GROUP BY model_version, w ORDER BY w, model_version"
    )


def first_seen_sql(db: str, model: str) -> str:
    name = model.replace("\\", "\\\\").replace("'", "\\'")
    return (f"SELECT model_version, min(toUnixTimestamp64Milli(predicted_at)) FROM `{db}`.predictions "
            f"WHERE model = '{name}' GROUP BY model_version")
