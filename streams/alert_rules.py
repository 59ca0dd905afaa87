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
        status = "firing" if condition.active else "resolved"
        identity = alert_id(model, model_version, condition.type, condition.subject, window_start_ms, status)
        if identity in self._sent:
            return None
        self._sent.add(identity)
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
        return alert

    def restore(self, alert: Alert) -> None:
        """Replay a stored alert event so that state survives restarts."""
        key = (alert.model, alert.model_version, alert.type, alert.subject)
        self._sent.add(alert.alert_id)
        if alert.status == "firing":
            self.firing[key] = alert
        else:
            self.firing.pop(key, None)


# --- rules ---------------------------------------------------------------

def _pct(x: float) -> str:
    return f"{x:.1%}"


def accuracy_below_threshold(
    model: str, version: str, accuracy: float, labeled: int, correct: int, threshold: float, evidence: dict[str, Any]
) -> Condition:
    active = accuracy < threshold
    if active:
        message = (
            f"Accuracy of {model} {version} is {_pct(accuracy)} ({correct}/{labeled} labeled predictions correct), "
            f"below the {_pct(threshold)} objective."
        )
    else:
        message = f"Accuracy of {model} {version} is back at {_pct(accuracy)}, at or above the {_pct(threshold)} objective."
    return Condition("accuracy_below_threshold", "accuracy", active, "critical", accuracy, threshold, None,
                     message, "retrain", evidence)


def accuracy_drop(
    model: str, version: str, accuracy: float, baseline: float, degradation: float, evidence: dict[str, Any]
) -> Condition:
    drop = baseline - accuracy
    active = drop >= degradation - FLOAT_TOLERANCE
    critical = drop > 2 * degradation + FLOAT_TOLERANCE
    if active:
        message = (
            f"Accuracy of {model} {version} fell to {_pct(accuracy)}, {drop * 100:.1f} points below its baseline "
            f"of {_pct(baseline)} (alert from {degradation * 100:.1f} points)."
        )
    else:
        message = f"Accuracy of {model} {version} recovered to {_pct(accuracy)} against a baseline of {_pct(baseline)}."
    return Condition("accuracy_drop", "accuracy", active, "critical" if critical else "warning", accuracy,
                     degradation, baseline, message, "retrain" if critical else "investigate",
                     {**evidence, "drop": drop})


def drift(
    model: str, version: str, subject: str, value: float, psi_alert: float, n: int, reference_n: int
) -> Condition:
    """feature_drift for a feature, prediction_drift for __score__ / __prediction__."""
    prediction = subject in (SCORE_SUBJECT, PREDICTION_SUBJECT)
    what = {SCORE_SUBJECT: "the score distribution", PREDICTION_SUBJECT: "the predicted-class distribution"}.get(
        subject, f"feature '{subject}'"
    )
    active = value >= psi_alert
    if active:
        message = f"{what[0].upper()}{what[1:]} of {model} {version} drifted: PSI {value:.3f} against the reference (alert from {psi_alert:g})."
    else:
        message = f"{what[0].upper()}{what[1:]} of {model} {version} is stable again: PSI {value:.3f}."
    return Condition("prediction_drift" if prediction else "feature_drift", subject, active, "warning", value,
                     psi_alert, None, message, "investigate", {"psi": value, "n": n, "reference_n": reference_n})


def error_rate_change(
    model: str, version: str, before: float, after: float, delta: float, width: int
) -> Condition:
    """ADWIN saw a change: firing when the error rate rose, resolved when it fell back."""
    rose = after > before
    if rose:
        message = f"ADWIN detected a rise of the error rate of {model} {version} from {_pct(before)} to {_pct(after)}."
    else:
        message = f"ADWIN detected that the error rate of {model} {version} fell from {_pct(before)} to {_pct(after)}."
    return Condition("error_rate_drift", "error_rate", rose, "warning", after, delta, before, message,
                     "investigate", {"error_rate_before": before, "error_rate_after": after, "adwin_width": width})
