"""Alert rules and the firing/resolved state machine.

Rules are pure functions from a window's figures to a :class:`Condition`; the
:class:`AlertBook` turns a sequence of conditions for one (model, version, type,
subject) into at most one ``firing`` event when the condition starts and one
``resolved`` when it clears, never a repeat while it persists. Alert ids are
deterministic, so a replayed alert after a crash carries the same id.

>>> book = AlertBook()
>>> c = Condition("accuracy_below_threshold", "accuracy", True, "critical", 0.8, 0.85, None, "low", "retrain")
>>> [a.status for a in [book.observe("m", "v1", 0, 3_600_000, c, 0)] if a]
['firing']
>>> book.observe("m", "v1", 3_600_000, 7_200_000, c, 0) is None
True
>>> ok = Condition("accuracy_below_threshold", "accuracy", False, "critical", 0.9, 0.85, None, "fine", "investigate")
>>> book.observe("m", "v1", 7_200_000, 10_800_000, ok, 0).status
'resolved'
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from streams.reference import PREDICTION_SUBJECT, SCORE_SUBJECT

ALERT_TYPES = (
    "accuracy_below_threshold",
    "accuracy_drop",
    "error_rate_drift",
    "feature_drift",
    "prediction_drift",
    "estimated_accuracy_below_threshold",
    "labels_missing",
    "version_worse",
)
FLOAT_TOLERANCE = 1e-12


@dataclass(frozen=True, slots=True)
class Condition:
    """The outcome of one rule on one window: is the condition present, and its figures."""

    type: str
    subject: str
    active: bool
    severity: str
    value: float | None
    threshold: float | None
    baseline: float | None
    message: str
    recommended_action: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert event, as published on TOPIC_ALERTS and stored in ClickHouse."""

    alert_id: str
    status: str
    type: str
    severity: str
    model: str
    model_version: str
    subject: str
    window_start: str | None
    window_end: str | None
    value: float | None
    threshold: float | None
    baseline: float | None
    detected_at: str
    message: str
    recommended_action: str
    evidence: dict[str, Any]

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))


def iso_ms(ms: int | None) -> str | None:
    """ISO-8601 UTC with milliseconds and Z, the form alerts carry."""
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def alert_id(model: str, model_version: str, type_: str, subject: str, window_start_ms: int | None, status: str) -> str:
    """Deterministic id: the same condition change always gets the same id."""
    text = "\x1f".join([model, model_version, type_, subject, str(window_start_ms), status])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class AlertBook:
    """Which conditions are firing, per (model, model_version, type, subject)."""

    def __init__(self) -> None:
        self.firing: dict[tuple[str, str, str, str], Alert] = {}
        # Window of each condition's last change: a decision about an older window comes too late
        # to change it (a final look at window 5 must not resolve what window 6 proved firing).
        self.changed_at: dict[tuple[str, str, str, str], int] = {}
        self._last_detected: dict[tuple[str, str, str, str], int] = {}
        # Ids already sent. An id is derived from (condition, window, status), so a change that
        # would repeat one (ADWIN can flip back and forth within a window) is not made at all.
        self._sent: set[str] = set()

    def observe(
        self,
        model: str,
        model_version: str,
        window_start_ms: int | None,
        window_end_ms: int | None,
        condition: Condition,
        now_ms: int,
    ) -> Alert | None:
        """Record a condition; return an alert only when its state changes."""
        key = (model, model_version, condition.type, condition.subject)
        was_firing = key in self.firing
        if condition.active == was_firing:
            return None
        if window_start_ms is not None and window_start_ms < self.changed_at.get(key, window_start_ms):
            return None
        status = "firing" if condition.active else "resolved"
        identity = alert_id(model, model_version, condition.type, condition.subject, window_start_ms, status)
        if identity in self._sent:
            return None
        self._sent.add(identity)
        # Strictly increasing per condition, so that the stored events sort back into their order.
        now_ms = max(now_ms, self._last_detected.get(key, -1) + 1)
        self._last_detected[key] = now_ms
        alert = Alert(
            alert_id=identity,
            status=status,
            type=condition.type,
            severity=condition.severity,
            model=model,
            model_version=model_version,
            subject=condition.subject,
            window_start=iso_ms(window_start_ms),
            window_end=iso_ms(window_end_ms),
            value=condition.value,
            threshold=condition.threshold,
            baseline=condition.baseline,
            detected_at=iso_ms(now_ms) or "",
            message=condition.message,
            recommended_action=condition.recommended_action,
            evidence=condition.evidence,
        )
        if condition.active:
            self.firing[key] = alert
        else:
            del self.firing[key]
        if window_start_ms is not None:
            self.changed_at[key] = window_start_ms
        return alert

    def restore(self, alert: Alert) -> None:
        """Replay a stored alert event so that state survives restarts."""
        key = (alert.model, alert.model_version, alert.type, alert.subject)
        self._sent.add(alert.alert_id)
        if alert.window_start is not None:
            moment = datetime.fromisoformat(alert.window_start.replace("Z", "+00:00"))
            self.changed_at[key] = round(moment.timestamp() * 1000)
        if alert.status == "firing":
            self.firing[key] = alert
        else:
            self.firing.pop(key, None)


# --- rules ---------------------------------------------------------------
# Pure functions from the evidence about one window to a Condition. ``None`` where the
# evidence decides nothing (an early look that proves neither a breach nor its absence).

EARLY_LABELS_CAVEAT = (
    "decided before the window's labels are complete; labels that arrive first may not be "
    "representative (some outcomes are confirmed faster than others)"
)


def _pct(x: float) -> str:
    return f"{x:.1%}"


@dataclass(frozen=True, slots=True)
class AccuracyEvidence:
    """A window's labeled sample when an accuracy rule looks at it."""

    window_ms: int
    labeled: int
    correct: int
    look: int | None  # j of the look at MIN_LABELED * 2**j; None: the window is final
    confidence: float  # of the one-sided Wilson bounds at this look (unused when final)
    lower: float
    upper: float

    @property
    def accuracy(self) -> float:
        return self.correct / self.labeled

    def describe(self) -> dict[str, Any]:
        base: dict[str, Any] = {"labeled": self.labeled, "correct": self.correct, "accuracy": self.accuracy}
        if self.look is None:
            return {**base, "decided_by": "point_estimate_at_finality"}
        return {**base, "decided_by": "wilson_bound", "look": self.look, "confidence": self.confidence,
                "wilson_lower": self.lower, "wilson_upper": self.upper, "provisional": EARLY_LABELS_CAVEAT}


def accuracy_below_threshold(model: str, version: str, e: AccuracyEvidence, threshold: float,
                             evidence: dict[str, Any]) -> Condition | None:
    """Below the objective: proven by the Wilson upper bound at a look, or the point estimate at finality."""
    if e.look is None:
        active = e.accuracy < threshold
    elif e.upper < threshold:
        active = True
    elif e.lower >= threshold:
        active = False
    else:
        return None
    sample = f"{e.correct}/{e.labeled} labeled predictions correct"
    if active and e.look is not None:
        message = (f"Accuracy of {model} {version} is at most {_pct(e.upper)} ({e.confidence:.2%} Wilson bound; "
                   f"{_pct(e.accuracy)}, {sample} so far), below the {_pct(threshold)} objective.")
    elif active:
        message = (f"Accuracy of {model} {version} is {_pct(e.accuracy)} ({sample}), "
                   f"below the {_pct(threshold)} objective.")
    else:
        message = (f"Accuracy of {model} {version} is back at {_pct(e.accuracy)} ({sample}), "
                   f"at or above the {_pct(threshold)} objective.")
    return Condition("accuracy_below_threshold", "accuracy", active, "critical", e.accuracy, threshold, None,
                     message, "retrain", {**evidence, **e.describe()})


def accuracy_drop(model: str, version: str, e: AccuracyEvidence, baseline: float, degradation: float,
                  evidence: dict[str, Any]) -> Condition | None:
    """At least DEGRADATION_THRESHOLD below the baseline: proven at a look, or at finality.
    Critical when the drop exceeds twice the threshold (at a look: proven to)."""
    limit = baseline - degradation
    if e.look is None:
        active = baseline - e.accuracy >= degradation - FLOAT_TOLERANCE
        critical = baseline - e.accuracy > 2 * degradation + FLOAT_TOLERANCE
    elif e.upper < limit:
        active, critical = True, baseline - e.upper > 2 * degradation + FLOAT_TOLERANCE
    elif e.lower > limit:
        active, critical = False, False
    else:
        return None
    drop = baseline - e.accuracy
    if active:
        bound = "" if e.look is None else f" (at least {(baseline - e.upper) * 100:.1f} points at {e.confidence:.2%} confidence)"
        message = (f"Accuracy of {model} {version} fell to {_pct(e.accuracy)}, {drop * 100:.1f} points below its "
                   f"baseline of {_pct(baseline)}{bound} (alert from {degradation * 100:.1f} points).")
    else:
        message = f"Accuracy of {model} {version} recovered to {_pct(e.accuracy)} against a baseline of {_pct(baseline)}."
    return Condition("accuracy_drop", "accuracy", active, "critical" if critical else "warning", e.accuracy,
                     degradation, baseline, message, "retrain" if critical else "investigate",
                     {**evidence, **e.describe(), "drop": drop})


@dataclass(frozen=True, slots=True)
class DriftEvidence:
    """PSI of one subject in one closed window and the test of its sample size."""

    psi: float
    n: int
    reference_n: int
    statistic: float
    dof: int
    p_value: float
    level: float  # per-subject level giving the version's false-alarm rate per window
    false_alarm_rate: float
    test: str = "chi-square"

    def significant(self) -> bool:
        return self.p_value < self.level


def drift(model: str, version: str, subject: str, e: DriftEvidence, psi_warn: float, psi_alert: float) -> Condition:
    """feature_drift for a feature, prediction_drift for __score__ / __prediction__: a change both
    large (PSI >= PSI_WARN; critical from PSI_ALERT) and certain for the window's size."""
    prediction = subject in (SCORE_SUBJECT, PREDICTION_SUBJECT)
    what = {SCORE_SUBJECT: "the score distribution", PREDICTION_SUBJECT: "the predicted-class distribution"}.get(
        subject, f"feature '{subject}'"
    )
    what = what[0].upper() + what[1:]
    large, certain = e.psi >= psi_warn, e.significant()
    active = large and certain
    critical = active and e.psi >= psi_alert
    if active:
        message = (f"{what} of {model} {version} drifted: PSI {e.psi:.3f} on {e.n} values (from {psi_warn:g}; "
                   f"{e.test} p = {e.p_value:.2g} < {e.level:.2g}).")
    elif large:
        message = (f"{what} of {model} {version}: PSI {e.psi:.3f} on {e.n} values is within what "
                   f"{e.n} values vary by chance ({e.test} p = {e.p_value:.2g}).")
    else:
        message = f"{what} of {model} {version} is stable: PSI {e.psi:.3f} on {e.n} values."
    evidence = {"psi": e.psi, "n": e.n, "reference_n": e.reference_n, "test": e.test, "statistic": e.statistic,
                "dof": e.dof, "p_value": e.p_value, "level": e.level, "false_alarm_rate": e.false_alarm_rate,
                "psi_warn": psi_warn, "psi_alert": psi_alert}
    return Condition("prediction_drift" if prediction else "feature_drift", subject, active,
                     "critical" if critical else "warning", e.psi, psi_warn, None, message,
                     "investigate", evidence)


def error_rate_change(model: str, version: str, before: float, after: float, n_before: int, n_after: int,
                      delta: float, at_ms: int, p_value: float | None) -> Condition:
    """ADWIN cut its window: firing when the error rate rose, resolved when it fell back."""
    rose = after > before
    change = (f"{'a rise' if rose else 'a fall'} of the error rate of {model} {version} from {_pct(before)} "
              f"({n_before} outcomes) to {_pct(after)} ({n_after} outcomes, the latest in event time)")
    message = f"ADWIN detected {change}."
    evidence = {"test": "ADWIN", "delta": delta, "error_rate_before": before, "error_rate_after": after,
                "n_before": n_before, "n_after": n_after, "adwin_width": n_after,
                "detected_event_time": iso_ms(at_ms), "two_proportion_p_value": p_value}
    return Condition("error_rate_drift", "error_rate", rose, "warning", after, delta, before, message,
                     "investigate", evidence)
