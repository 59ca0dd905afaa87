"""Join of predictions and labels by request_id, whichever half arrives first.

The half that comes first waits in :class:`JoinState` until its partner arrives or
the event-time watermark passes its timestamp + JOIN_TTL_SECONDS. A pair matches
only when the two timestamps are at most JOIN_TTL_SECONDS apart, a rule that
depends on event times alone, so a replay joins exactly the same pairs.
Duplicates of a pending half, or of a recently joined request, are ignored.

>>> from streams.records import Prediction, GroundTruth
>>> state = JoinState(ttl_ms=10_000)
>>> state.add_prediction(Prediction("r1", "m", "v1", 1_000, "1"))
>>> state.add_label(GroundTruth("r1", "0", 5_000)).correct
False
>>> state.add_label(GroundTruth("r1", "0", 5_000)) is DUPLICATE
True
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from streams.records import GroundTruth, Prediction


class _Duplicate:
    def __repr__(self) -> str:
        return "DUPLICATE"


DUPLICATE: Final = _Duplicate()
"""Returned when an event repeats a half that is pending or was joined recently."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """A prediction joined with its label."""

    prediction: Prediction
    label: GroundTruth

    @property
    def correct(self) -> bool:
        return self.prediction.prediction == self.label.label


class JoinState:
    """Pending halves of requests, plus a bounded memory of joined request_ids."""

    def __init__(self, ttl_ms: int, recent_capacity: int = 200_000) -> None:
        self.ttl_ms = ttl_ms
        self.pending_predictions: dict[str, Prediction] = {}
        self.pending_labels: dict[str, GroundTruth] = {}
        self.recently_joined: OrderedDict[str, None] = OrderedDict()
        self.recent_capacity = recent_capacity

    def _remember_joined(self, request_id: str) -> None:
        self.recently_joined[request_id] = None
        if len(self.recently_joined) > self.recent_capacity:
            self.recently_joined.popitem(last=False)

    def _matches(self, prediction: Prediction, label: GroundTruth) -> bool:
        return abs(label.ts_ms - prediction.ts_ms) <= self.ttl_ms

    def add_prediction(self, prediction: Prediction) -> Outcome | _Duplicate | None:
        """Join with a waiting label, or wait; None means the prediction now waits."""
        rid = prediction.request_id
        if rid in self.pending_predictions or rid in self.recently_joined:
            return DUPLICATE
        label = self.pending_labels.get(rid)
        if label is not None and self._matches(prediction, label):
            del self.pending_labels[rid]
            self._remember_joined(rid)
            return Outcome(prediction, label)
        self.pending_predictions[rid] = prediction
        return None

    def add_label(self, label: GroundTruth) -> Outcome | _Duplicate | None:
        """Join with a waiting prediction, or wait; None means the label now waits."""
        rid = label.request_id
        if rid in self.pending_labels or rid in self.recently_joined:
            return DUPLICATE
        prediction = self.pending_predictions.get(rid)
        if prediction is not None and self._matches(prediction, label):
            del self.pending_predictions[rid]
            self._remember_joined(rid)
            return Outcome(prediction, label)
        self.pending_labels[rid] = label
        return None

    def expire(self, watermark_ms: int) -> tuple[list[Prediction], list[GroundTruth]]:
        """Drop halves whose partner can no longer match: ts + TTL < watermark."""
        limit = watermark_ms - self.ttl_ms
        old_predictions = [p for p in self.pending_predictions.values() if p.ts_ms < limit]
        for p in old_predictions:
            del self.pending_predictions[p.request_id]
        old_labels = [g for g in self.pending_labels.values() if g.ts_ms < limit]
        for g in old_labels:
            del self.pending_labels[g.request_id]
        return old_predictions, old_labels
