"""The alert-deciding stage: evidence in, alert events out (no I/O).

Two kinds of evidence reach it, both at points of event time, so the same input always
gives the same alerts:

- events of a model version's event-time outcome stream (:mod:`streams.outcome_stream`):
  an ADWIN cut, an accuracy look at MIN_LABELED * 2**j labels, a window becoming final;
- the drift figures of windows that closed, in window order.

The rules (:mod:`streams.alert_rules`) turn each into a condition; the :class:`AlertBook`
turns conditions into ``firing`` / ``resolved`` events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from streams import alert_rules as rules
from streams.alert_rules import AccuracyEvidence, Alert, AlertBook, Condition
from streams.estimate_alerts import estimated_accuracy_below_threshold
from streams.outcome_stream import AccuracyLook, ErrorRateChange, StreamEvent
from streams.settings import Settings
from streams.stats import look_alpha, two_proportion_p, wilson_bounds
from streams.versions import VersionState
from streams.windows import window_end_ms, window_start_ms

TOP_DRIFTED = 3
CLEAN_WINDOWS_TO_RESOLVE = 2  # closed windows without drift before a drift alert resolves


class AlertDecisions:
    """Decides the alerts of every model version; ``book`` holds which conditions fire."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.book = AlertBook()

    def on_stream_event(self, state: VersionState, event: StreamEvent, now_ms: int) -> tuple[list[Alert], bool]:
        """The alerts one stream event decides, and whether it set the version's baseline."""
        if isinstance(event, ErrorRateChange):
            window = window_start_ms(event.at_ms, self.s.window_seconds)
            p_value = two_proportion_p(event.before * event.n_before, event.n_before,
                                       event.after * event.n_after, event.n_after)
            condition = rules.error_rate_change(state.model, state.version, event.before, event.after,
                                                event.n_before, event.n_after, self.s.adwin_delta, event.at_ms, p_value)
            return self._observe(state, window, condition, now_ms), False
        return self._accuracy(state, event, now_ms)

    def _accuracy(self, state: VersionState, look: AccuracyLook, now_ms: int) -> tuple[list[Alert], bool]:
        config = state.config  # the version's SLO and thresholds (MONITOR_CONFIG)
        if look.labeled < config.min_labeled:
            return [], False
        alpha = 1 - self.s.accuracy_confidence
        look_level = look_alpha(alpha, look.look) if look.look is not None else alpha
        lower, upper = wilson_bounds(look.correct, look.labeled, look_level)
        evidence = AccuracyEvidence(look.window_ms, look.labeled, look.correct, look.look, 1 - look_level, lower, upper)
        context = {"top_drifted_features": self.top_drifted(state, look.window_ms)}
        out = self._observe(state, look.window_ms, rules.accuracy_below_threshold(
            state.model, state.version, evidence, config.accuracy_threshold, context), now_ms)
        if look.final and state.baseline_accuracy is None:
            # No labels in the reference: the first window final with >= MIN_LABELED labels is the baseline,
            # known from that point of event time on (so every run decides the same looks with it).
            state.baseline_accuracy, state.baseline_window_ms = evidence.accuracy, look.window_ms
            return out, True
        baseline_from = (None if state.baseline_window_ms is None else
                         state.baseline_window_ms + (self.s.window_seconds + self.s.label_grace_seconds) * 1000)
        if state.baseline_accuracy is not None and (baseline_from is None or look.at_ms > baseline_from):
            out += self._observe(state, look.window_ms, rules.accuracy_drop(
                state.model, state.version, evidence, state.baseline_accuracy, config.degradation_threshold,
                {**context, "baseline_window_start": rules.iso_ms(state.baseline_window_ms)}), now_ms)
        return out, False

    def on_closed_windows(self, state: VersionState, newly_closed: list[int], now_ms: int) -> list[Alert]:
        """Feature and prediction drift of windows that closed, in window order: firing on a change
        both large and certain; resolved after CLEAN_WINDOWS_TO_RESOLVE closed windows without one."""
        out: list[Alert] = []
        for w in newly_closed:
            for subject, evidence in sorted(state.last_drift.get(w, {}).items()):
                condition = rules.drift(state.model, state.version, subject, evidence, state.config.psi_warn,
                                        state.config.psi_alert)
                clean = 0 if condition.active else state.drift_clean.get(subject, 0) + 1
                state.drift_clean[subject] = clean
                if condition.active or clean >= CLEAN_WINDOWS_TO_RESOLVE:
                    out += self._observe(state, w, condition, now_ms)
        return out

    def on_closed_estimates(self, state: VersionState, newly_closed: list[int], now_ms: int) -> list[Alert]:
        """estimated_accuracy_below_threshold of windows that closed, in window order
        (:mod:`streams.estimate_alerts`)."""
        out: list[Alert] = []
        for w in newly_closed:
            estimated = state.last_estimate.get(w)
            if estimated is not None:
                out += self._observe(state, w, estimated_accuracy_below_threshold(
                    state.model, state.version, estimated, state.config.accuracy_threshold, state.config.min_labeled,
                    state.baseline_accuracy), now_ms)
        return out

    @staticmethod
    def top_drifted(state: VersionState, w: int) -> list[dict[str, Any]]:
        """The window's most drifted features: the first root-cause hint of an accuracy alert."""
        values = [(v, k) for k, v in state.last_psi.get(w, {}).items() if not k.startswith("__")]
        return [{"feature": k, "psi": round(v, 6)} for v, k in sorted(values, reverse=True)[:TOP_DRIFTED]]

    def _observe(self, state: VersionState, w: int, condition: Condition | None, now_ms: int) -> list[Alert]:
        if condition is None:
            return []
        alert = self.book.observe(state.model, state.version, w, window_end_ms(w, self.s.window_seconds),
                                  condition, now_ms)
        return [alert] if alert else []


def alert_rows(alerts: list[Alert]) -> list[list[Any]]:
    """Rows of the ``alerts`` table."""
    return [[a.alert_id, a.status, a.type, a.severity, a.model, a.model_version, a.subject,
             _parse_iso(a.window_start), _parse_iso(a.window_end), a.value, a.threshold, a.baseline,
             _parse_iso(a.detected_at), a.message, a.recommended_action, orjson.dumps(a.evidence).decode()]
            for a in alerts]


def _parse_iso(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
