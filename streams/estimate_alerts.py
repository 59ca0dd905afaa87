"""The rule of ``estimated_accuracy_below_threshold``: accuracy below the SLO, foreseen from scores.

Decided when a window closes by the watermark (event time), on its estimated accuracy
(:mod:`streams.estimate`) and the labels that came before it ended: fires when the 95%
interval's upper bound lies below the SLO while the window still has fewer than
MIN_LABELED such labels (with more, the accuracy rules decide on the labels themselves);
resolved by the same rule when a later closed window's interval is not below.

False-alarm rate: the upper bound is a one-sided 97.5% bound, so a window whose accuracy
is at or above the SLO fires with probability at most ESTIMATE_FALSE_ALARM_RATE, when the
reference's scores are calibrated and the relation between features and labels is the
reference's (no concept drift: then the estimate cannot see the change at all).

>>> from streams.estimate import AccuracyEstimate, WindowEstimate
>>> low = WindowEstimate(AccuracyEstimate(0.80, 0.78, 0.82, 2000, 0.01), labeled_by_end=3)
>>> c = estimated_accuracy_below_threshold("m", "v1", low, 0.85, 50, 0.9)
>>> c.active, c.type, c.subject, c.severity
(True, 'estimated_accuracy_below_threshold', 'estimated_accuracy', 'warning')
>>> estimated_accuracy_below_threshold("m", "v1", WindowEstimate(low.estimate, 80), 0.85, 50, 0.9) is None
True
"""

from __future__ import annotations

from streams.alert_rules import Condition
from streams.estimate import WindowEstimate

ALERT_TYPE = "estimated_accuracy_below_threshold"
SUBJECT = "estimated_accuracy"
ESTIMATE_FALSE_ALARM_RATE = 0.025  # per closed window at or above the SLO
LIMITS = ("assumes the reference's scores are calibrated and the relation between features and labels "
          "unchanged (covariate shift only): a change of P(label | features) is invisible to it")


def estimated_accuracy_below_threshold(model: str, version: str, e: WindowEstimate, threshold: float,
                                       min_labeled: int, baseline: float | None) -> Condition | None:
    """Firing when the interval lies below the SLO and the window had fewer than ``min_labeled``
    labels when it ended; resolved when the interval is not below. None: the labels decide."""
    est = e.estimate
    below = est.high < threshold
    if below and e.labeled_by_end >= min_labeled:
        return None
    evidence = {"estimated_accuracy": est.accuracy, "interval_low": est.low, "interval_high": est.high,
                "confidence": 0.95, "predictions": est.n, "labeled_by_window_end": e.labeled_by_end,
                "min_labeled": min_labeled, "method": "confidence-based (isotonic calibration on the reference)",
                "false_alarm_rate": ESTIMATE_FALSE_ALARM_RATE, "limits": LIMITS}
    if below:
        message = (f"Estimated accuracy of {model} {version} is {est.accuracy:.1%} (95% interval {est.low:.1%}-"
                   f"{est.high:.1%}, from the scores of {est.n} predictions; {e.labeled_by_end} labeled so far), "
                   f"below the {threshold:.1%} objective before its labels arrive.")
    else:
        message = (f"Estimated accuracy of {model} {version} is {est.accuracy:.1%} (95% interval up to "
                   f"{est.high:.1%}), no longer below the {threshold:.1%} objective.")
    return Condition(ALERT_TYPE, SUBJECT, below, "warning", est.accuracy, threshold, baseline, message,
                     "investigate", evidence)
