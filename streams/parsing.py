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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import compress
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
        value = orjson.loads(raw)  # refuses invalid UTF-8 too: only then is the text decoded, to say where
    except orjson.JSONDecodeError as err:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise _Reject("invalid_utf8", f"byte {bad.start} is not valid UTF-8") from None
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


def _scores(obj: dict[str, Any]) -> tuple[float | None, float | None, dict[str, float] | None]:
    """(the explicit ``score`` or None, confidence, scores); the positive class's share of
    ``scores`` is picked later, once the model version (whose POSITIVE_LABEL it may be) is known."""
    raw_scores = obj.get("scores")
    raw_score = obj.get("score")
    if raw_scores is not None:
        if not isinstance(raw_scores, dict):
            raise _Reject("wrong_type", f"scores must be an object class -> probability, got a JSON {_json_type(raw_scores)}")
        if not raw_scores or len(raw_scores) > MAX_CLASSES:
            raise _Reject("invalid_value", f"scores must have 1-{MAX_CLASSES} classes")
        scores = {str(k): _probability(f"scores[{k!r}]", v) for k, v in raw_scores.items()}
        score = _probability("score", raw_score) if raw_score is not None else None
        return score, max(scores.values()), scores
    if raw_score is not None:
        score = _probability("score", raw_score)
        return score, max(score, 1.0 - score), None
    return None, None, None


_NUMBERS_AND_NULL = frozenset({float, int, bool, type(None)})
_SCALARS = _NUMBERS_AND_NULL | {str}
_IS_STR = str.__instancecheck__  # isinstance(v, str), callable from C


def _features(obj: dict[str, Any]) -> dict[str, FeatureValue]:
    raw = obj.get("features")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _Reject("wrong_type", f"features must be an object, got a JSON {_json_type(raw)}")
    if len(raw) > MAX_FEATURES:
        raise _Reject("invalid_value", f"features has {len(raw)} entries, at most {MAX_FEATURES}")
    if _plain_features(raw):
        return raw
    for name, value in raw.items():  # one by one: the first entry at fault says why
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


def _plain_features(raw: dict[str, Any]) -> bool:
    """Every name of 1-MAX_NAME_CHARS characters and every value a number, bool, null or a string
    of at most MAX_STRING_VALUE_CHARS: the loop below would accept them all. Checked with
    builtins that loop in C, so 300 features cost about what 10 do in that loop."""
    if not raw:
        return True
    if "" in raw or max(map(len, raw)) > MAX_NAME_CHARS:
        return False
    types = set(map(type, raw.values()))
    if types <= _NUMBERS_AND_NULL:
        return True
    if not types <= _SCALARS:
        return False
    return max(map(len, filter(_IS_STR, raw.values()))) <= MAX_STRING_VALUE_CHARS


def feature_columns(features: dict[str, FeatureValue]) -> tuple[dict[str, float], dict[str, str]]:
    """The ``num_features`` and ``cat_features`` maps of the predictions table: every number
    (not a bool) as a float; every string and bool in canonical form, and the text of an
    integer too large to be exact as a float. A number is stored once: a feature that is
    categorical by its reference reads the numbers from ``num_features`` (each equals the
    category whose canonical text it has, :func:`streams.figures.categorical_values_sql`).

    One pass over the exact types the parser produces; anything else takes the general
    expressions, which give the same maps or raise the same error.

    >>> feature_columns({"age": 41, "income": 5.5e4, "plan": "pro", "vip": True, "n": None, "id": 2**60})
    ({'age': 41.0, 'income': 55000.0, 'id': 1.152921504606847e+18}, {'plan': 'pro', 'vip': '1', 'id': '1152921504606846976'})
    """
    numeric: dict[str, float] = {}
    categorical: dict[str, str] = {}
    for name, value in features.items():
        kind = type(value)
        if kind is float:
            numeric[name] = value
            continue
        if kind is str:
            categorical[name] = value
            continue
        if kind is int:
            if -_EXACT_INT <= value <= _EXACT_INT:
                numeric[name] = float(value)
                continue
        elif kind is bool:
            categorical[name] = "1" if value else "0"
            continue
        elif value is None:
            continue
        return _feature_columns(features)
    return numeric, categorical


def categorical_features_json(features: dict[str, FeatureValue]) -> bytes:
    """``orjson.dumps`` of the ``cat_features`` map of :func:`feature_columns`, byte for byte:
    what the predictions row sends. ``num_features`` the engine makes from the row's features
    text (``sinks.schema.NUM_FEATURES_SQL``): building it here was the largest cost of a wide
    prediction in the worker.

    With many features the map comes from zips laid out once per feature set (:class:`_Layout`)
    instead of a type check per value.

    >>> categorical_features_json({"age": 41, "plan": "pro", "x": 0.25, "vip": False, "id": 2**60})
    b'{"plan":"pro","vip":"0","id":"1152921504606846976"}'
    """
    if len(features) >= _WIDE:
        text = _wide_categorical_json(features)
        if text is not None:
            return text
    return orjson.dumps(feature_columns(features)[1])


_WIDE = 16  # features from which the map is built a type at a time (below, one loop is cheaper)
_EXACT_INT = 2**53  # integers up to here are exact as floats; larger ones keep their text in cat_features
_BOOL_TEXT = {True: "1", False: "0"}
_LAYOUTS_MAX = 256


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where the values of one feature set with one type per feature go in ``cat_features``."""

    ints: list[bool] | None  # which values are ints (checked to be exact as floats; None: none)
    strings: list[bool] | None  # which are strings (None: none)
    bools: list[bool] | None
    categorical_names: list[str]  # strings' and bools', in feature order
    order: list[int] | None  # categorical texts (strings', then bools') into feature order

    @classmethod
    def of(cls, names: tuple[str, ...], types: tuple[type, ...]) -> _Layout:
        ints = [t is int for t in types]
        strings = [t is str for t in types]
        bools = [t is bool for t in types]
        positions = [i for i, t in enumerate(types) if t is str] + [i for i, t in enumerate(types) if t is bool]
        in_order = sorted(range(len(positions)), key=positions.__getitem__)
        return cls(ints if any(ints) else None, strings if any(strings) else None, bools if any(bools) else None,
                   [names[i] for i in sorted(positions)],
                   None if in_order == list(range(len(positions))) else in_order)


_LAYOUTS: dict[tuple[tuple[str, ...], tuple[type, ...]], _Layout] = {}


def _wide_categorical_json(features: dict[str, FeatureValue]) -> bytes | None:
    """:func:`categorical_features_json` from zips laid out once per feature set; None: a type or
    value (an integer not exact as a float) for the general way."""
    names, values = tuple(features), list(features.values())
    types = tuple(map(type, values))
    layout = _LAYOUTS.get((names, types))
    if layout is None:
        if not set(types) <= _SCALARS:
            return None
        if len(_LAYOUTS) >= _LAYOUTS_MAX:
            _LAYOUTS.clear()
        layout = _LAYOUTS[(names, types)] = _Layout.of(names, types)
    if layout.ints is not None:
        ints = list(compress(values, layout.ints))
        if max(ints) > _EXACT_INT or min(ints) < -_EXACT_INT:
            return None
    texts: list[str] = []
    if layout.strings is not None:
        texts += compress(values, layout.strings)
    if layout.bools is not None:
        texts += map(_BOOL_TEXT.__getitem__, compress(values, layout.bools))
    if layout.order is not None:
        texts = list(map(texts.__getitem__, layout.order))
    return orjson.dumps(dict(zip(layout.categorical_names, texts, strict=True)))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _feature_columns(features: dict[str, FeatureValue]) -> tuple[dict[str, float], dict[str, str]]:
    numeric = {k: float(v) for k, v in features.items() if _is_number(v)}
    categorical = {k: canonical_class(v) for k, v in features.items()
                   if v is not None and (not _is_number(v) or (isinstance(v, int) and abs(v) > _EXACT_INT))}
    return numeric, categorical



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
    positive_label: str | Callable[[str, str], str] = "1",
    max_ts_ms: int | None = None,
) -> Prediction | Rejection:
    """Parse one message of the predictions topic. Without an explicit ``score``, the score is
    ``scores[positive_label]``; ``positive_label`` may be a function of (model, model_version),
    asked only once the whole message is valid."""
    try:
        obj = _load_object(raw)
        request_id = _string(obj, "request_id", MAX_REQUEST_ID_CHARS)
        _check_key(key, request_id)
        score, confidence, scores = _scores(obj)
        model = _string(obj, "model", MAX_NAME_CHARS)
        model_version = _string(obj, "model_version", MAX_NAME_CHARS)
        ts_ms = _timestamp(obj, max_ts_ms)
        prediction = _class_value(obj, "prediction")
        features = _features(obj)
        latency_ms = _latency(obj)
    except _Reject as rejected:
        return rejected.rejection
    if score is None and scores is not None:
        label = positive_label if isinstance(positive_label, str) else positive_label(model, model_version)
        score = scores.get(label)
    return Prediction(request_id=request_id, model=model, model_version=model_version, ts_ms=ts_ms,
                      prediction=prediction, score=score, confidence=confidence, scores=scores,
                      features=features, latency_ms=latency_ms)


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
