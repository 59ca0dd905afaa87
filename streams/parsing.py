"""Turn raw Kafka message bytes into events, or into a named reason why not.

Pure functions, no I/O: every input either parses or yields a
:class:`~streams.records.Rejection`; nothing raises (a property test holds us to it).

>>> parse_prediction(b'{"request_id":"r1","model":"m","model_version":"v1",'
...                  b'"timestamp":"2026-01-01T00:00:00Z","prediction":true,"score":0.8}')
... # doctest: +NORMALIZE_WHITESPACE
Prediction(request_id='r1', model='m', model_version='v1', ts_ms=1767225600000,
           prediction='1', score=0.8, confidence=0.8, scores=None, features={}, latency_ms=None)
>>> parse_ground_truth(b'{"request_id":"r1","label":1}')
Rejection(reason='missing_field', detail='timestamp is required')
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import orjson

from streams.canonical import canonical_class
from streams.records import FeatureValue, GroundTruth, Prediction, Rejection

MAX_MESSAGE_BYTES = 1_000_000
MAX_REQUEST_ID_CHARS = 200
MAX_NAME_CHARS = 200
MAX_STRING_VALUE_CHARS = 1_000
MAX_FEATURES = 1_000
MAX_CLASSES = 1_000

# Timestamp policy: event time drives windows and finality, so a timestamp far from
# reality would finalise or open windows wrongly. Accepted: 2000-01-01 .. 2100-01-01 UTC,
# and (when the caller passes it) no later than the wall clock plus a day.
MIN_TS_MS = 946_684_800_000
MAX_TS_MS = 4_102_444_800_000
FUTURE_SKEW_MS = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _Reject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.rejection = Rejection(reason, detail)


def _load_object(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_MESSAGE_BYTES:
        raise _Reject("too_large", f"{len(raw)} bytes, at most {MAX_MESSAGE_BYTES} accepted")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _Reject("invalid_utf8", f"byte {err.start} is not valid UTF-8") from None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise _Reject("invalid_json", str(err).splitlines()[0][:200]) from None
    if not isinstance(value, dict):
        raise _Reject("not_an_object", f"got a JSON {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _required(obj: dict[str, Any], name: str) -> Any:
    value = obj.get(name)
    if value is None:
        raise _Reject("missing_field", f"{name} is required")
    return value


def _string(obj: dict[str, Any], name: str, max_chars: int, *, required: bool = True) -> str | None:
    value = _required(obj, name) if required else obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Reject("wrong_type", f"{name} must be a string, got a JSON {_json_type(value)}")
    if not 1 <= len(value) <= max_chars:
        raise _Reject("invalid_value", f"{name} must have 1-{max_chars} characters, has {len(value)}")
    return value


def _timestamp(obj: dict[str, Any], max_ts_ms: int | None) -> int:
    value = _required(obj, "timestamp")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _Reject("wrong_type", f"timestamp must be ISO-8601 or epoch milliseconds, got a JSON {_json_type(value)}")
    if isinstance(value, str):
        ts_ms = _iso_to_ms(value)
    else:
        if not math.isfinite(value):
            raise _Reject("invalid_value", "timestamp must be finite")
        ts_ms = math.floor(value)
    upper = MAX_TS_MS if max_ts_ms is None else min(MAX_TS_MS, max_ts_ms)
    if not MIN_TS_MS <= ts_ms < upper:
        raise _Reject(
            "invalid_value",
            f"timestamp {value!r} is outside the accepted range (2000-01-01 .. wall clock + 1 day)",
        )
    return ts_ms


def _iso_to_ms(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text.strip()) if len(text) <= 64 else None
    except ValueError:
        moment = None
    if moment is None:
        raise _Reject("invalid_value", f"timestamp {text[:64]!r} is not ISO-8601")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise _Reject("invalid_value", f"timestamp {text[:64]!r} has no UTC offset (add Z or +00:00)")
    delta = moment - _EPOCH
    return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000


def _class_value(obj: dict[str, Any], name: str) -> str:
    value = _required(obj, name)
    if isinstance(value, bool | int | str):
        if isinstance(value, str) and len(value) > MAX_STRING_VALUE_CHARS:
            raise _Reject("invalid_value", f"{name} has {len(value)} characters, at most {MAX_STRING_VALUE_CHARS}")
        return canonical_class(value)
    if isinstance(value, float) and value.is_integer():
        return canonical_class(value)
    # Only a number is shown: str() of a deeply nested array would raise RecursionError.
    shown = f" {value!r}" if isinstance(value, float) else ""
    raise _Reject("wrong_type", f"{name} must be an int, string or bool, got a JSON {_json_type(value)}{shown}")


def _probability(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Reject("wrong_type", f"{name} must be a number, got a JSON {_json_type(value)}")
    if not 0.0 <= value <= 1.0:
        raise _Reject("invalid_value", f"{name}={value!r} is not a probability in [0, 1]")
    return float(value)


def _scores(obj: dict[str, Any], positive_label: str) -> tuple[float | None, float | None, dict[str, float] | None]:
    raw_scores = obj.get("scores")
    raw_score = obj.get("score")
    if raw_scores is not None:
        if not isinstance(raw_scores, dict):
            raise _Reject("wrong_type", f"scores must be an object class -> probability, got a JSON {_json_type(raw_scores)}")
        if not raw_scores or len(raw_scores) > MAX_CLASSES:
            raise _Reject("invalid_value", f"scores must have 1-{MAX_CLASSES} classes")
        scores = {str(k): _probability(f"scores[{k!r}]", v) for k, v in raw_scores.items()}
        score = scores.get(positive_label)
        if raw_score is not None:
            score = _probability("score", raw_score)
        return score, max(scores.values()), scores
    if raw_score is not None:
        score = _probability("score", raw_score)
        return score, max(score, 1.0 - score), None
    return None, None, None


def _features(obj: dict[str, Any]) -> dict[str, FeatureValue]:
    raw = obj.get("features")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _Reject("wrong_type", f"features must be an object, got a JSON {_json_type(raw)}")
    if len(raw) > MAX_FEATURES:
        raise _Reject("invalid_value", f"features has {len(raw)} entries, at most {MAX_FEATURES}")
    for name, value in raw.items():
        if not 1 <= len(name) <= MAX_NAME_CHARS:
            raise _Reject("invalid_value", f"feature names must have 1-{MAX_NAME_CHARS} characters")
        if value is None or isinstance(value, bool | int | float):
            continue
        if isinstance(value, str):
            if len(value) > MAX_STRING_VALUE_CHARS:
                raise _Reject("invalid_value", f"feature {name[:40]!r} has {len(value)} characters, at most {MAX_STRING_VALUE_CHARS}")
            continue
        raise _Reject("wrong_type", f"feature {name[:40]!r} must be a number, string, bool or null, got a JSON {_json_type(value)}")
    return raw


def _latency(obj: dict[str, Any]) -> float | None:
    value = obj.get("latency_ms")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Reject("wrong_type", f"latency_ms must be a number, got a JSON {_json_type(value)}")
    if value < 0:
        raise _Reject("invalid_value", f"latency_ms={value!r} is negative")
    return float(value)


def _check_key(key: bytes | None, request_id: str) -> None:
    if key and key != request_id.encode("utf-8"):
        shown = key[:60].decode("utf-8", "replace")
        raise _Reject("key_mismatch", f"key {shown!r} is not the request_id {request_id[:60]!r}")


def parse_prediction(
    raw: bytes,
    *,
    key: bytes | None = None,
    positive_label: str = "1",
    max_ts_ms: int | None = None,
) -> Prediction | Rejection:
    """Parse one message of the predictions topic."""
    try:
        obj = _load_object(raw)
        request_id = _string(obj, "request_id", MAX_REQUEST_ID_CHARS)
        _check_key(key, request_id)
        score, confidence, scores = _scores(obj, positive_label)
        return Prediction(
            request_id=request_id,
            model=_string(obj, "model", MAX_NAME_CHARS),
            model_version=_string(obj, "model_version", MAX_NAME_CHARS),
            ts_ms=_timestamp(obj, max_ts_ms),
            prediction=_class_value(obj, "prediction"),
            score=score,
            confidence=confidence,
            scores=scores,
            features=_features(obj),
            latency_ms=_latency(obj),
        )
    except _Reject as rejected:
        return rejected.rejection


def parse_ground_truth(
    raw: bytes,
    *,
    key: bytes | None = None,
    max_ts_ms: int | None = None,
) -> GroundTruth | Rejection:
    """Parse one message of the ground-truth topic."""
    try:
        obj = _load_object(raw)
        request_id = _string(obj, "request_id", MAX_REQUEST_ID_CHARS)
        _check_key(key, request_id)
        return GroundTruth(
            request_id=request_id,
            label=_class_value(obj, "label"),
            ts_ms=_timestamp(obj, max_ts_ms),
            model=_string(obj, "model", MAX_NAME_CHARS, required=False),
            model_version=_string(obj, "model_version", MAX_NAME_CHARS, required=False),
        )
    except _Reject as rejected:
        return rejected.rejection
