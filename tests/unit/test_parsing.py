"""Event parsing: exact results for valid events, a named reason for every invalid one, never an exception."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.parsing import MAX_MESSAGE_BYTES, parse_ground_truth, parse_prediction
from streams.records import REJECTION_REASONS, GroundTruth, Prediction, Rejection

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DROP = object()


def prediction(**changes: Any) -> bytes:
    """A valid prediction event with fields changed (DROP removes one)."""
    event = {"request_id": "r1", "model": "fraud", "model_version": "v1",
             "timestamp": "2026-01-01T00:00:00Z", "prediction": 1}
    event.update(changes)
    return orjson.dumps({k: v for k, v in event.items() if v is not DROP})


def label(**changes: Any) -> bytes:
    event = {"request_id": "r1", "label": 1, "timestamp": "2026-01-01T00:00:00Z"}
    event.update(changes)
    return orjson.dumps({k: v for k, v in event.items() if v is not DROP})


def deep_json(depth: int, leaf: bytes = b"1") -> bytes:
    """`depth` levels of alternating arrays and objects, as raw JSON (encoders refuse this depth)."""
    opening = b"".join(b"[" if i % 2 else b'{"k":' for i in range(depth))
    closing = b"".join(b"]" if i % 2 else b"}" for i in reversed(range(depth)))
    return opening + leaf + closing


def with_raw(raw: bytes, field: str, fragment: bytes) -> bytes:
    """The event `raw` with `field` set to an already-encoded JSON fragment."""
    return raw[:-1] + b', "' + field.encode() + b'": ' + fragment + b"}"


def parsed(raw: bytes, **kwargs: Any) -> Prediction:
    result = parse_prediction(raw, **kwargs)
    assert isinstance(result, Prediction), result
    return result


def rejected(result: Prediction | GroundTruth | Rejection) -> str:
    assert isinstance(result, Rejection), result
    assert result.reason in REJECTION_REASONS
    assert "\n" not in result.detail
    return result.reason


def test_full_prediction_parses_exactly():
    raw = prediction(prediction="fraud", scores={"fraud": 0.9, "ok": 0.1}, features={"age": 41, "country": "DE"},
                     latency_ms=12.5, timestamp=T0 + 7)
    assert parse_prediction(raw, key=b"r1", positive_label="fraud") == Prediction(
        request_id="r1", model="fraud", model_version="v1", ts_ms=T0 + 7, prediction="fraud", score=0.9,
        confidence=0.9, scores={"fraud": 0.9, "ok": 0.1}, features={"age": 41, "country": "DE"}, latency_ms=12.5)


# --- timestamps ---

@pytest.mark.parametrize(("timestamp", "ts_ms"), [
    ("2026-01-01T00:00:00Z", T0),
    ("2026-01-01T00:00:00+00:00", T0),
    ("2026-01-01T02:00:00+02:00", T0),
    ("2025-12-31T19:00:00-05:00", T0),
    ("2026-01-01T05:30:00.250+05:30", T0 + 250),
    ("2026-01-01T00:00:00.123999Z", T0 + 123),
    ("2026-01-01T00:00:00.000999Z", T0),
    (T0, T0),
    (T0 + 123, T0 + 123),
    (float(T0) + 123.9, T0 + 123),
    (1.0e12, 1_000_000_000_000),
])
def test_timestamps_become_utc_epoch_ms(timestamp, ts_ms):
    assert parsed(prediction(timestamp=timestamp)).ts_ms == ts_ms
    result = parse_ground_truth(label(timestamp=timestamp))
    assert isinstance(result, GroundTruth) and result.ts_ms == ts_ms


@pytest.mark.parametrize(("timestamp", "reason", "detail"), [
    ("2026-01-01T00:00:00", "invalid_value", "has no UTC offset"),
    ("2026-01-01", "invalid_value", "has no UTC offset"),
    ("yesterday", "invalid_value", "is not ISO-8601"),
    ("2026-13-01T00:00:00Z", "invalid_value", "is not ISO-8601"),
    ("9" * 100, "invalid_value", "is not ISO-8601"),
    (True, "wrong_type", "got a JSON boolean"),
    (False, "wrong_type", "got a JSON boolean"),
    ([T0], "wrong_type", "got a JSON array"),
    ({"ms": T0}, "wrong_type", "got a JSON object"),
    (0, "invalid_value", "outside the accepted range"),
    (T0 * 1000, "invalid_value", "outside the accepted range"),
    ("1999-12-31T23:59:59Z", "invalid_value", "outside the accepted range"),
    (DROP, "missing_field", "timestamp is required"),
    (None, "missing_field", "timestamp is required"),
])
def test_bad_timestamps_are_rejected(timestamp, reason, detail):
    for result in (parse_prediction(prediction(timestamp=timestamp)), parse_ground_truth(label(timestamp=timestamp))):
        assert rejected(result) == reason
        assert detail in result.detail


def test_timestamp_beyond_the_callers_limit_is_rejected():
    assert parsed(prediction(timestamp=T0), max_ts_ms=T0 + 1).ts_ms == T0
    assert rejected(parse_prediction(prediction(timestamp=T0 + 1), max_ts_ms=T0 + 1)) == "invalid_value"
    assert rejected(parse_ground_truth(label(timestamp=T0 + 1), max_ts_ms=T0)) == "invalid_value"


# --- scores and confidence ---

def test_scores_object_gives_score_of_positive_label_and_max_as_confidence():
    p = parsed(prediction(scores={"0": 0.3, "1": 0.7}))
    assert (p.score, p.confidence, p.scores) == (0.7, 0.7, {"0": 0.3, "1": 0.7})
    p = parsed(prediction(prediction=0, scores={"0": 0.8, "1": 0.2}))
    assert (p.score, p.confidence) == (0.2, 0.8)


def test_multiclass_scores_follow_the_positive_label_argument():
    raw = prediction(prediction="b", scores={"a": 0.2, "b": 0.5, "c": 0.3})
    assert (parsed(raw).score, parsed(raw).confidence) == (None, 0.5)
    assert parsed(raw, positive_label="c").score == 0.3


def test_a_positive_label_per_model_version_is_asked_once_the_message_is_valid():
    asked = []

    def label_of(model: str, model_version: str) -> str:
        asked.append((model, model_version))
        return "c"

    raw = prediction(prediction="b", scores={"a": 0.2, "b": 0.5, "c": 0.3})
    assert parsed(raw, positive_label=label_of).score == 0.3
    assert asked == [("fraud", "v1")]
    assert rejected(parse_prediction(prediction(timestamp=DROP, scores={"c": 1.0}), positive_label=label_of)) == \
        "missing_field"
    assert parsed(prediction(score=0.9, scores={"c": 0.1, "d": 0.9}), positive_label=label_of).score == 0.9
    assert parsed(prediction(score=0.9), positive_label=label_of).score == 0.9
    assert asked == [("fraud", "v1")]  # not for a rejected message, nor when the score is explicit


@pytest.mark.parametrize(("score", "confidence"), [(0.3, 0.7), (0.8, 0.8), (0.5, 0.5), (0, 1.0), (1, 1.0)])
def test_binary_score_confidence_is_max_of_score_and_complement(score, confidence):
    p = parsed(prediction(score=score))
    assert (p.score, p.confidence, p.scores) == (float(score), confidence, None)


def test_no_scores_means_no_score_and_no_confidence():
    p = parsed(prediction())
    assert (p.score, p.confidence, p.scores) == (None, None, None)


@pytest.mark.parametrize(("changes", "reason"), [
    ({"score": 1.2}, "invalid_value"),
    ({"score": -0.1}, "invalid_value"),
    ({"score": "0.3"}, "wrong_type"),
    ({"score": True}, "wrong_type"),
    ({"scores": [0.3, 0.7]}, "wrong_type"),
    ({"scores": {}}, "invalid_value"),
    ({"scores": {"1": "high"}}, "wrong_type"),
    ({"scores": {"1": 1.5, "0": 0.0}}, "invalid_value"),
])
def test_bad_scores_are_rejected(changes, reason):
    assert rejected(parse_prediction(prediction(**changes))) == reason


# --- classes ---

@pytest.mark.parametrize(("value", "canonical"), [
    (True, "1"), (False, "0"), (1, "1"), (1.0, "1"), (0, "0"), ("1", "1"), ("fraud", "fraud"), ("1.0", "1.0"),
])
def test_prediction_and_label_are_canonical(value, canonical):
    assert parsed(prediction(prediction=value)).prediction == canonical
    result = parse_ground_truth(label(label=value))
    assert isinstance(result, GroundTruth) and result.label == canonical


@pytest.mark.parametrize("value", [2.5, [1], {"class": 1}])
def test_non_class_values_are_wrong_type(value):
    assert rejected(parse_prediction(prediction(prediction=value))) == "wrong_type"
    assert rejected(parse_ground_truth(label(label=value))) == "wrong_type"


@pytest.mark.parametrize("depth", [999, 1000, 1023])
def test_deeply_nested_class_is_wrong_type_not_a_recursion_error(depth):
    # orjson accepts up to 1024 levels; showing such a value with str() used to raise RecursionError.
    assert rejected(parse_prediction(with_raw(prediction(prediction=DROP), "prediction", deep_json(depth)))) == "wrong_type"
    assert rejected(parse_ground_truth(with_raw(label(label=DROP), "label", deep_json(depth)))) == "wrong_type"


@pytest.mark.parametrize("field", ["features", "scores", "model", "timestamp", "latency_ms"])
def test_deep_nesting_anywhere_is_rejected(field):
    for depth in (1000, 2000):
        assert rejected(parse_prediction(with_raw(prediction(**{field: DROP}), field, deep_json(depth)))) in {
            "wrong_type", "invalid_json", "missing_field"}


# --- features, unknown fields, request ids ---

def test_flat_features_are_kept_as_sent():
    features = {"age": 41, "income": 52000.5, "country": "DE", "vip": True, "missing": None}
    assert parsed(prediction(features=features)).features == features


@pytest.mark.parametrize(("features", "reason"), [
    ({"address": {"city": "Berlin"}}, "wrong_type"),
    ({"tags": ["a", "b"]}, "wrong_type"),
    ([1, 2], "wrong_type"),
    ("age=4", "wrong_type"),
    ({"": 1}, "invalid_value"),
    ({"x" * 201: 1}, "invalid_value"),
    ({"note": "x" * 1001}, "invalid_value"),
])
def test_bad_features_are_rejected(features, reason):
    assert rejected(parse_prediction(prediction(features=features))) == reason


def test_unknown_fields_are_ignored():
    assert parsed(prediction(extra={"deep": [1, {"x": None}]}, trace_id=7)) == parsed(prediction())
    assert parse_ground_truth(label(source="crm")) == parse_ground_truth(label())


def test_latency():
    assert parsed(prediction(latency_ms=3)).latency_ms == 3.0
    assert rejected(parse_prediction(prediction(latency_ms=-1))) == "invalid_value"
    assert rejected(parse_prediction(prediction(latency_ms="3ms"))) == "wrong_type"


def test_request_id_length_limit():
    assert parsed(prediction(request_id="r" * 200)).request_id == "r" * 200
    assert rejected(parse_prediction(prediction(request_id="r" * 201))) == "invalid_value"
    assert rejected(parse_ground_truth(label(request_id="r" * 201))) == "invalid_value"
    assert rejected(parse_prediction(prediction(request_id=""))) == "invalid_value"


def test_key_must_be_the_request_id_when_present():
    assert parsed(prediction(), key=b"r1").request_id == "r1"
    assert parsed(prediction(), key=None).request_id == "r1"
    assert parsed(prediction(), key=b"").request_id == "r1"
    assert rejected(parse_prediction(prediction(), key=b"r2")) == "key_mismatch"
    assert rejected(parse_ground_truth(label(), key=b"r2")) == "key_mismatch"
    assert parse_prediction(prediction(request_id="ü-1"), key="ü-1".encode()).request_id == "ü-1"


# --- ground truth ---

def test_ground_truth_model_fields_are_optional():
    assert parse_ground_truth(label()) == GroundTruth(request_id="r1", label="1", ts_ms=T0)
    assert parse_ground_truth(label(model="fraud", model_version="v2")) == GroundTruth(
        request_id="r1", label="1", ts_ms=T0, model="fraud", model_version="v2")
    assert rejected(parse_ground_truth(label(model=5))) == "wrong_type"
    assert rejected(parse_ground_truth(label(model_version=""))) == "invalid_value"


# --- every rejection reason ---

@pytest.mark.parametrize(("raw", "key", "reason"), [
    (b" " * (MAX_MESSAGE_BYTES + 1), None, "too_large"),
    (b"\xff\xfe\x00garbage", None, "invalid_utf8"),
    (b'{"request_id": "\xc3"}', None, "invalid_utf8"),
    (b"{not json", None, "invalid_json"),
    (b"", None, "invalid_json"),
    (b'{"request_id": "r1", "score": NaN}', None, "invalid_json"),
    (b'{"request_id": "r1", "score": Infinity}', None, "invalid_json"),
    (b'{"request_id": "r1", "score": -Infinity}', None, "invalid_json"),
    (b'{"request_id": "r1", "score": 1e400}', None, "invalid_json"),
    (b'{"request_id": "\\ud800"}', None, "invalid_json"),
    (b'{"a": 1} {"b": 2}', None, "invalid_json"),
    (b"[" * 2000 + b"]" * 2000, None, "invalid_json"),
    (b"[1, 2, 3]", None, "not_an_object"),
    (b'"r1"', None, "not_an_object"),
    (b"null", None, "not_an_object"),
    (b"42", None, "not_an_object"),
    (b"{}", None, "missing_field"),
    (b'{"request_id": 42}', None, "wrong_type"),
    (b'{"request_id": ""}', None, "invalid_value"),
    (b'{"request_id": "r1"}', b"r2", "key_mismatch"),
])
def test_every_rejection_reason_is_reachable(raw, key, reason):
    assert rejected(parse_prediction(raw, key=key)) == reason
    assert rejected(parse_ground_truth(raw, key=key)) == reason


def test_the_reasons_cover_the_documented_codes():
    reached = {"too_large", "invalid_utf8", "invalid_json", "not_an_object", "missing_field", "wrong_type",
               "invalid_value", "key_mismatch"}
    assert reached == set(REJECTION_REASONS)


@pytest.mark.parametrize("field", ["request_id", "model", "model_version", "timestamp", "prediction"])
def test_each_required_prediction_field(field):
    assert rejected(parse_prediction(prediction(**{field: DROP}))) == "missing_field"
    assert rejected(parse_prediction(prediction(**{field: None}))) == "missing_field"
    assert parse_prediction(prediction(**{field: DROP})).detail == f"{field} is required"


@pytest.mark.parametrize("field", ["request_id", "label", "timestamp"])
def test_each_required_label_field(field):
    assert rejected(parse_ground_truth(label(**{field: DROP}))) == "missing_field"


@pytest.mark.parametrize("field", ["request_id", "model", "model_version"])
def test_string_fields_must_be_strings(field):
    assert rejected(parse_prediction(prediction(**{field: 7}))) == "wrong_type"
    assert rejected(parse_prediction(prediction(**{field: ["a"]}))) == "wrong_type"


# --- property tests: nothing raises, whatever arrives ---

FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.data_too_large])

# Text with lone surrogates too: json.dumps writes them as \\udXXX escapes, which are not valid JSON text.
any_text = st.text(max_size=30) | st.text(st.characters(exclude_categories=()), max_size=5)
json_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                | any_text)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
keys = st.none() | st.just(b"r1") | st.binary(max_size=12)


def _check(result: object, kind: type) -> None:
    assert isinstance(result, kind | Rejection)
    if isinstance(result, Rejection):
        assert result.reason in REJECTION_REASONS
        assert isinstance(result.detail, str) and "\n" not in result.detail


@st.composite
def valid_predictions(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {
        "request_id": draw(st.text(min_size=1, max_size=200)),
        "model": draw(st.text(min_size=1, max_size=20)),
        "model_version": draw(st.text(min_size=1, max_size=20)),
        "timestamp": draw(st.integers(T0 - 10**11, T0 + 10**10)),
        "prediction": draw(st.booleans() | st.integers(-5, 5) | st.text(max_size=10)),
    }
    if draw(st.booleans()):
        event["score"] = draw(st.floats(0, 1))
    if draw(st.booleans()):
        event["features"] = draw(st.dictionaries(
            st.text(min_size=1, max_size=10),
            st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(-1e6, 1e6) | st.text(max_size=10),
            max_size=5))
    return event


mutations = st.sampled_from(["none", "drop", "swap", "huge", "deep", "oversize"])


def _mutate(event: dict[str, Any], mutation: str, field: str, value: Any, depth: int) -> bytes:
    """The event as JSON bytes after one mutation (json, not orjson: big integers must get through)."""
    event = dict(event)
    if mutation == "drop":
        event.pop(field, None)
    elif mutation == "swap":
        event[field] = value
    elif mutation == "huge":
        event[field] = "x" * 200_000
    elif mutation == "oversize":
        event["padding"] = "y" * (MAX_MESSAGE_BYTES + 1)
    elif mutation == "deep":
        event.pop(field, None)
        return with_raw(_encode(event), field, deep_json(depth, _encode(value)))
    return _encode(event)


def _encode(value: Any) -> bytes:
    return json.dumps(value).encode()


@FAST
@given(raw=st.binary(max_size=300), key=keys)
def test_arbitrary_bytes_never_raise(raw, key):
    _check(parse_prediction(raw, key=key), Prediction)
    _check(parse_ground_truth(raw, key=key), GroundTruth)


@FAST
@given(value=json_values, key=keys)
def test_arbitrary_json_never_raises(value, key):
    raw = _encode(value)
    _check(parse_prediction(raw, key=key, positive_label="1"), Prediction)
    _check(parse_ground_truth(raw, key=key), GroundTruth)


@FAST
@given(event=valid_predictions(), mutation=mutations,
       field=st.sampled_from(["request_id", "model", "model_version", "timestamp", "prediction", "label",
                              "score", "scores", "features", "latency_ms"]),
       value=json_values, depth=st.sampled_from([5, 900, 1000, 1023, 2000]))
def test_mutated_events_never_raise(event, mutation, field, value, depth):
    raw = _mutate(event, mutation, field, value, depth)
    result = parse_prediction(raw)
    _check(result, Prediction)
    _check(parse_ground_truth(raw), GroundTruth)
    if mutation == "none":
        assert isinstance(result, Prediction) and result.request_id == event["request_id"]
    if mutation == "oversize":
        assert rejected(result) == "too_large"


@FAST
@given(event=valid_predictions(), field=st.sampled_from(["prediction", "label", "features", "scores", "timestamp"]),
       depth=st.integers(985, 1030) | st.integers(1, 2100), leaf=json_scalars)
def test_deep_nesting_at_any_depth_never_raises(event, field, depth, leaf):
    raw = _mutate(event, "deep", field, leaf, depth)
    _check(parse_prediction(raw), Prediction)
    _check(parse_ground_truth(raw), GroundTruth)


@FAST
@given(event=valid_predictions())
def test_valid_events_parse_to_what_was_sent(event):
    result = parse_prediction(_encode(event), key=event["request_id"].encode())
    assert isinstance(result, Prediction)
    assert (result.request_id, result.model, result.model_version, result.ts_ms) == (
        event["request_id"], event["model"], event["model_version"], event["timestamp"])
    assert result.features == event.get("features", {})
    if "score" in event:
        assert result.score == event["score"] and result.confidence == max(event["score"], 1 - event["score"])


# --- wide feature sets: the checks and columns that run per feature -----------------------

from itertools import chain  # noqa: E402

from streams import parsing  # noqa: E402
from streams.canonical import canonical_class  # noqa: E402
from streams.parsing import categorical_features_json, feature_columns  # noqa: E402

feature_names = st.text(max_size=3) | st.sampled_from(["", "n" * 200, "n" * 201])
feature_values = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
                  | st.text(max_size=5) | st.sampled_from(["s" * 1000, "s" * 1001]) | st.lists(st.booleans(), max_size=2)
                  | st.dictionaries(st.text(max_size=2), st.booleans(), max_size=1))


def _one_by_one(raw: dict[str, Any]) -> str | None:
    """The rejection reason of the entry-by-entry check alone (None: accepted)."""
    for name, value in raw.items():
        if not 1 <= len(name) <= parsing.MAX_NAME_CHARS:
            return "invalid_value"
        if isinstance(value, str) and len(value) > parsing.MAX_STRING_VALUE_CHARS:
            return "invalid_value"
        if not (value is None or isinstance(value, bool | int | float | str)):
            return "wrong_type"
    return None


@FAST
@given(raw=st.dictionaries(feature_names, feature_values, max_size=8))
def test_the_whole_feature_set_check_accepts_exactly_what_the_entry_by_entry_check_does(raw):
    assert parsing._plain_features(raw) == (_one_by_one(raw) is None)
    result = parse_prediction(prediction(features=raw))
    if _one_by_one(raw) is None:
        assert isinstance(result, Prediction) and result.features == raw
    else:
        assert rejected(result) == _one_by_one(raw)


def _general_columns(features: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """Numbers once, as floats; strings and bools (and integers not exact as floats) as their canonical text."""
    def number(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)
    numeric = {k: float(v) for k, v in features.items() if number(v)}
    categorical = {k: canonical_class(v) for k, v in features.items()
                   if v is not None and (not number(v) or (isinstance(v, int) and abs(v) > 2**53))}
    return numeric, categorical


def _typed(mapping: dict[str, Any]) -> list[tuple[str, type, str]]:
    return [(k, type(v), repr(v)) for k, v in mapping.items()]


class Money(float):
    """A float subclass: not a type the parser produces, so it takes the general expressions."""


finite = st.floats(allow_nan=False, allow_infinity=False)  # all JSON can hold (orjson refuses 1e999)
column_values = (st.none() | st.booleans() | st.integers() | st.integers(-(2**63), 2**64 - 1) | finite
                 | st.floats(-1e-3, 1e-3) | st.integers(-(10**6), 10**6).map(float)
                 | st.integers(-(10**8), 10**8).map(lambda m: m / 100)
                 | st.sampled_from([-0.0, 0.0, 1e-4, -1e-4, 9.99e-5, 1e16, 1e16 + 2, 2.0**53 + 2, 1.5e-7, 1e300,
                                    2.0**1023 * 1.5, 2**1100, -(2**1030), 10.00001, 100.0])
                 | finite.map(Money) | st.text(max_size=4))


@FAST
@given(features=st.integers(0, 40).flatmap(
    lambda n: st.dictionaries(st.text(min_size=1, max_size=4), column_values, min_size=n, max_size=n)))
def test_feature_columns_equal_the_general_expressions_with_the_same_types_and_errors(features):
    try:
        want = _general_columns(features)
    except (ValueError, OverflowError) as err:
        with pytest.raises(type(err)):
            feature_columns(features)
        return
    got = feature_columns(features)
    assert got == want
    assert list(chain(*map(_typed, got))) == list(chain(*map(_typed, want)))


json_names = st.text(max_size=4) | st.sampled_from(['"', "\\", '","', '":"', "\u00e9", "\U0001f600", ",", "\n"])


@FAST
@given(features=st.integers(0, 40).flatmap(
    lambda n: st.dictionaries(json_names, column_values, min_size=n, max_size=n)))
def test_categorical_features_json_is_orjson_of_the_general_map_byte_for_byte(features):
    """What the predictions row sends to ClickHouse for cat_features is exactly what serialising
    the general map gave (so every stored value stays the same)."""
    try:
        want = orjson.dumps(_general_columns(features)[1])
    except (ValueError, OverflowError, TypeError) as err:
        with pytest.raises(type(err)):
            categorical_features_json(features)
        return
    assert categorical_features_json(features) == want
    assert categorical_features_json(features) == want  # again, from the cached layout


@pytest.mark.parametrize("width", [3, 16, 300])
def test_categorical_features_of_a_wide_prediction(width):
    """Many features take the path from layouts: the same bytes, whatever the mix of types."""
    features = {f"f{i}": [round(0.37 * i, 2), i, i * 1e-5, float(i), -0.0, f"c{i}", None, i % 2 == 0][i % 8]
                for i in range(width)}
    assert feature_columns(features) == _general_columns(features)
    assert categorical_features_json(features) == orjson.dumps(_general_columns(features)[1])


@pytest.mark.parametrize("big", [2**53 + 1, -(2**53) - 1, 2**63, 2**64 - 1, -(2**63)])
def test_a_wide_prediction_with_an_integer_not_exact_as_a_float_keeps_its_text(big):
    features = {**{f"n{i}": i for i in range(20)}, "id": big, "s": "x", "b": True}
    assert categorical_features_json(features) == orjson.dumps({"id": str(big), "s": "x", "b": "1"})
    exact = {**features, "id": 2**53}
    assert categorical_features_json(exact) == b'{"s":"x","b":"1"}'


def test_the_predictions_row_carries_the_categorical_map_and_the_features_text_as_json():
    """num_features is left to the engine; cat_features and features travel as JSON objects (the
    engine stores the latter as its text, tests/integration/test_num_features.py)."""
    from sinks.clickhouse import _JSON_OPTIONS, _json_default
    from sinks.schema import insert_columns
    from streams.facts import prediction_row

    features = {**{f"n{i}": [0.25 * i, i, float(i), None][i % 4] for i in range(40)}, "plan": 'p"ro', "vip": True}
    p = Prediction("r1", "m", "v1", T0, "1", 0.8, 0.8, None, features, 12.0)
    row = prediction_row(p, 3, 17, 1_767_225_600.5, 3600)
    names = insert_columns("predictions")
    assert len(row) == len(names) and "num_features" not in names
    assert names[9:11] == ["cat_features", "features"]
    want = [*row[:9], _general_columns(features)[1], features, *row[11:]]
    assert orjson.dumps(row, default=_json_default, option=_JSON_OPTIONS) == \
        orjson.dumps(want, default=_json_default, option=_JSON_OPTIONS)
