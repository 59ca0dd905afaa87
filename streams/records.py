"""Event schemas: what a valid prediction, label and rejection look like inside the monitor.

Timestamps are integer epoch milliseconds (UTC) so that window arithmetic is exact.
Classes are already in canonical form (see :mod:`streams.canonical`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

FeatureValue = float | int | str | bool | None


@dataclass(frozen=True, slots=True)
class Prediction:
    """One prediction event as the contract defines it."""

    request_id: str
    model: str
    model_version: str
    ts_ms: int
    prediction: str
    score: float | None = None
    confidence: float | None = None
    scores: dict[str, float] | None = None
    features: dict[str, FeatureValue] = field(default_factory=dict)
    latency_ms: float | None = None


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """One ground-truth (label) event."""

    request_id: str
    label: str
    ts_ms: int
    model: str | None = None
    model_version: str | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message cannot be used: ``reason`` is a stable code, ``detail`` one human line."""

    reason: str
    detail: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


# Stable rejection codes, documented in the README's DLQ section.
REJECTION_REASONS: dict[str, str] = {
    "too_large": "the message is larger than the monitor accepts",
    "invalid_utf8": "the bytes are not valid UTF-8",
    "invalid_json": "the text is not a single valid JSON value (NaN and Infinity are not JSON)",
    "not_an_object": "the JSON value is not an object",
    "missing_field": "a required field is absent or null",
    "wrong_type": "a field has a type the contract does not allow",
    "invalid_value": "a field has the right type but an impossible value",
    "key_mismatch": "the message key is not the event's request_id",
}


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A message as it came off an input topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
