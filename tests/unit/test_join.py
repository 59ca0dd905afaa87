import orjson

from streams.join import DUPLICATE, JoinState, Outcome
from streams.records import GroundTruth, Prediction


def _p(rid, ts=1_000, pred="1"):
    return Prediction(rid, "m", "v1", ts, pred)


def _g(rid, ts=2_000, label="1"):
    return GroundTruth(rid, label, ts)


def test_either_half_first():
    state = JoinState(ttl_ms=60_000)
    assert state.add_prediction(_p("a")) is None
    outcome = state.add_label(_g("a"))
    assert isinstance(outcome, Outcome) and outcome.correct
    assert state.add_label(_g("b", label="0")) is None
    outcome = state.add_prediction(_p("b"))
    assert isinstance(outcome, Outcome) and not outcome.correct
    assert not state.pending_predictions and not state.pending_labels


def test_duplicates_are_recognised_while_pending_and_after_join():
    state = JoinState(ttl_ms=60_000)
    state.add_prediction(_p("a"))
    assert state.add_prediction(_p("a")) is DUPLICATE
    state.add_label(_g("a"))
    assert state.add_label(_g("a")) is DUPLICATE
    assert state.add_prediction(_p("a")) is DUPLICATE


def test_pairs_further_apart_than_ttl_do_not_join():
    state = JoinState(ttl_ms=10_000)
    state.add_prediction(_p("a", ts=0))
    assert state.add_label(_g("a", ts=10_001)) is None
    state.add_prediction(_p("b", ts=0))
    assert isinstance(state.add_label(_g("b", ts=10_000)), Outcome)


def test_expiry_by_watermark():
    state = JoinState(ttl_ms=10_000)
    state.add_prediction(_p("old", ts=0))
    state.add_prediction(_p("new", ts=5_000))
    state.add_label(_g("orphan", ts=1_000))
    expired_p, expired_g = state.expire(watermark_ms=11_500)
    assert [p.request_id for p in expired_p] == ["old"]
    assert [g.request_id for g in expired_g] == ["orphan"]
    assert list(state.pending_predictions) == ["new"]


def test_recent_memory_is_bounded():
    state = JoinState(ttl_ms=60_000, recent_capacity=2)
    for rid in "abc":
        state.add_prediction(_p(rid))
        state.add_label(_g(rid))
    assert list(state.recently_joined) == ["b", "c"]


# --- the compact form of waiting predictions -------------------------------------------

import math  # noqa: E402
import sys  # noqa: E402
from collections import OrderedDict  # noqa: E402

import pytest  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from streams import join  # noqa: E402
from streams.join import HalfCodec  # noqa: E402

TS_RANGE = st.integers(946_684_800_000, 4_102_444_800_000)
EDGE_TEXT = st.sampled_from(["", "\ud800", "a\udfff\ud83d\ude00", "\x00", "a" * 255, "\u00e9" * 128,
                             "\U0001f600" * 64, "x" * 1_000])  # lone surrogates; 255 / 256 UTF-8 bytes
UNICODE = st.text(st.characters(exclude_categories=()), max_size=12) | EDGE_TEXT  # surrogates included
DECIMALS = st.one_of(st.integers(-(10**10), 10**10).map(lambda m: m / 100),
                     st.integers(-(10**9), 10**9).map(lambda m: m / 10_000))
FLOATS = st.one_of(st.floats(), DECIMALS, st.sampled_from([-0.0, 0.0, math.inf, -math.inf, 5e-324,
                                                           sys.float_info.max, 199_999.9999, 1e300]))
VALUES = st.one_of(
    st.none(), st.booleans(), FLOATS, UNICODE,
    st.integers(-(2**63), 2**63 - 1), st.integers(-(2**80), 2**80),  # beyond int64: kept as object
    st.integers(-200, 40_000),
    st.text(min_size=100, max_size=300),  # over 255 UTF-8 bytes: a 2-byte length
)
PREDICTIONS = st.builds(
    Prediction,
    request_id=st.text(min_size=1, max_size=30),
    model=UNICODE, model_version=st.sampled_from(["v1", "v2", ""]), ts_ms=TS_RANGE,
    prediction=st.one_of(st.sampled_from(["0", "1", "cat"]), UNICODE, st.text(min_size=201, max_size=300)),
    score=st.none() | FLOATS, confidence=st.none() | FLOATS,
    scores=st.none() | st.dictionaries(UNICODE, FLOATS, max_size=4),
    features=st.dictionaries(UNICODE, VALUES, max_size=12),
    latency_ms=st.none() | FLOATS,
)


def _typed(value):
    """Value with its exact type: 1 == 1.0 == True and 0.0 == -0.0, but not here."""
    if isinstance(value, dict):
        return [(type(k), k, _typed(v)) for k, v in value.items()]
    return type(value), repr(value)


def _exact(p: Prediction) -> list:
    return [_typed(getattr(p, name)) for name in Prediction.__slots__]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(PREDICTIONS)
def test_codec_round_trip_is_exact_or_declines(p):
    codec = HalfCodec()
    packed = codec.encode_prediction(p)
    if packed is None:  # NaN, ints beyond int64: the caller keeps the object itself
        assert any(type(v) is float and math.isnan(v) for v in (p.score, p.confidence, p.latency_ms,
                                                                *(p.scores or {}).values(), *p.features.values())) \
            or any(type(v) is int and not -(2**63) <= v < 2**63 for v in p.features.values())
        return
    assert isinstance(packed, bytes)
    back = codec.decode_prediction(p.request_id, packed)
    assert back == p
    assert _exact(back) == _exact(p)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(PREDICTIONS, st.sampled_from(["0", "1", "x"]))
def test_a_waiting_prediction_comes_back_equal_from_the_join_and_from_expiry(p, label):
    state = JoinState(ttl_ms=1_000)
    assert state.add_prediction(p) is None
    outcome = state.add_label(GroundTruth(p.request_id, label, p.ts_ms + 1_000, "m", None))
    assert isinstance(outcome, Outcome) and outcome.prediction == p and _exact(outcome.prediction) == _exact(p)
    assert outcome.label == GroundTruth(p.request_id, label, p.ts_ms + 1_000, "m", None)
    state.add_prediction(Prediction("other", p.model, p.model_version, p.ts_ms, p.prediction, p.score,
                                    p.confidence, p.scores, p.features, p.latency_ms))
    (expired,), labels = state.expire(p.ts_ms + 1_001)
    assert labels == [] and _exact(expired)[1:] == _exact(p)[1:] and expired.request_id == "other"


def _scenario_predictions(n: int) -> list[Prediction]:
    """Rows of a built-in scenario through the replay's event builder and the worker's parser."""
    from producers.replay import layout_of, row_events
    from producers.scenarios import generate
    from streams.parsing import parse_prediction

    rows = generate("degradation", rows=n, periods=2).rows
    layout = layout_of(rows[0])
    return [parse_prediction(orjson.dumps(row_events(row, layout)[0])) for row in rows]


def test_realistic_predictions_wait_packed_in_few_bytes():
    state = JoinState(ttl_ms=3_600_000)
    predictions = _scenario_predictions(400)
    for p in predictions:
        state.add_prediction(p)
    entries = list(state.pending_predictions.values())
    assert len(entries) == len({p.request_id for p in predictions})
    assert all(type(e) is bytes for e in entries)
    # 10 features, 2 class probabilities, score, confidence, latency: 12-byte head + ~40 bytes.
    assert max(len(e) for e in entries) <= 64
    assert len(state.codec.shapes) <= 32 and len(state.codec.pairs) == 1 and len(state.codec.classes) == 2
    for p in predictions[:50]:
        outcome = state.add_label(GroundTruth(p.request_id, "1", p.ts_ms))
        if isinstance(outcome, Outcome):
            assert _exact(outcome.prediction) == _exact(p)


def test_hostile_shapes_classes_and_models_do_not_grow_the_tables_past_their_caps():
    codec = HalfCodec(max_pairs=3, max_classes=5, max_shapes=8, max_shape_fields=40)
    state = JoinState(ttl_ms=10_000, codec=codec)
    sent = []
    for i in range(300):
        p = Prediction(f"r{i}", f"model-{i % 7}", "v1", 1_000 + i, f"class-{i}", 0.5, 0.5, None,
                       {f"feature-{i}-{j}": j for j in range(i % 4)}, None)
        sent.append(p)
        assert state.add_prediction(p) is None
    assert len(codec.pairs) == 3 and len(codec.classes) == 5
    assert len(codec.shapes) <= 8 and codec.shape_fields <= 40
    kinds = [type(state.pending_predictions[p.request_id]) for p in sent]
    assert kinds.count(bytes) >= 1 and kinds.count(Prediction) >= 1  # new shapes wait as objects
    for p in sent:
        outcome = state.add_label(GroundTruth(p.request_id, p.prediction, p.ts_ms))
        assert isinstance(outcome, Outcome) and outcome.prediction == p and outcome.correct
    assert len(codec.classes) == 5  # labels beyond the cap wait as objects, the table stays


def test_class_table_full_means_inline_classes_not_objects():
    codec = HalfCodec(max_classes=2)
    state = JoinState(ttl_ms=10_000, codec=codec)
    for i in range(20):
        state.add_prediction(Prediction(f"r{i}", "m", "v1", 1_000, f"c{i}", features={"x": 1.5}))
    assert len(codec.classes) == 2 and len(codec.shapes) == 2  # interned class, inline class
    assert all(type(e) is bytes for e in state.pending_predictions.values())
    expired, _ = state.expire(20_000)
    assert sorted(p.prediction for p in expired) == sorted(f"c{i}" for i in range(20))


def test_recovered_halves_wait_and_expire_like_new_ones():
    state = JoinState(ttl_ms=10_000)
    state.restore_prediction(_p("a", ts=1_000))
    state.restore_label(_g("b", ts=2_000))
    state.restore_prediction(_p("c", ts=50_000))
    assert state.pending_counts() == (2, 1)
    assert state.add_label(_g("a", ts=3_000)) == Outcome(_p("a", ts=1_000), _g("a", ts=3_000))
    state.restore_prediction(_p("c", ts=5_000))  # replaced: expires by its new time
    expired_p, expired_g = state.expire(watermark_ms=20_000)
    assert expired_p == [_p("c", ts=5_000)] and expired_g == [_g("b", ts=2_000)]
    assert state.pending_counts() == (0, 0)


# --- expiry: the same results as a plain scan, touching only what expires ---------------

class NaiveJoin:
    """The join as it was: dicts of objects, expiry by scanning everything that waits."""

    def __init__(self, ttl_ms: int, recent_capacity: int) -> None:
        self.ttl_ms, self.recent_capacity = ttl_ms, recent_capacity
        self.predictions: dict[str, Prediction] = {}
        self.labels: dict[str, GroundTruth] = {}
        self.recent: OrderedDict[str, None] = OrderedDict()

    def _joined(self, rid: str) -> None:
        self.recent[rid] = None
        if len(self.recent) > self.recent_capacity:
            self.recent.popitem(last=False)

    def add_prediction(self, p: Prediction):
        if p.request_id in self.predictions or p.request_id in self.recent:
            return DUPLICATE
        g = self.labels.get(p.request_id)
        if g is not None and abs(g.ts_ms - p.ts_ms) <= self.ttl_ms:
            del self.labels[p.request_id]
            self._joined(p.request_id)
            return Outcome(p, g)
        self.predictions[p.request_id] = p
        return None

    def add_label(self, g: GroundTruth):
        if g.request_id in self.labels or g.request_id in self.recent:
            return DUPLICATE
        p = self.predictions.get(g.request_id)
        if p is not None and abs(g.ts_ms - p.ts_ms) <= self.ttl_ms:
            del self.predictions[g.request_id]
            self._joined(g.request_id)
            return Outcome(p, g)
        self.labels[g.request_id] = g
        return None

    def expire(self, watermark_ms: int):
        limit = watermark_ms - self.ttl_ms
        old_p = [p for p in self.predictions.values() if p.ts_ms < limit]
        old_g = [g for g in self.labels.values() if g.ts_ms < limit]
        for p in old_p:
            del self.predictions[p.request_id]
        for g in old_g:
            del self.labels[g.request_id]
        return old_p, old_g


RIDS = st.sampled_from([f"r{i}" for i in range(8)])
# Times on a coarse grid as well, so that ts + TTL == watermark and ts at a bucket edge happen.
TIMES = st.integers(0, 3_000) | st.integers(0, 60).map(lambda k: k * 50)
WATERMARKS = st.integers(0, 3_500) | st.tuples(st.integers(4, 64), st.integers(-1, 1)).map(
    lambda kd: kd[0] * 50 + kd[1])
OPS = st.lists(st.one_of(
    st.tuples(st.just("p"), RIDS, TIMES, st.sampled_from(["0", "1"])),
    st.tuples(st.just("g"), RIDS, TIMES, st.sampled_from(["0", "1"])),
    st.tuples(st.just("x"), WATERMARKS, st.just("")),
), max_size=150)


def _by_rid(halves):
    return sorted(halves, key=lambda h: h.request_id)


@settings(max_examples=500, deadline=None)
@given(OPS, st.sampled_from([1, 7, 50, 250, 10_000]), st.integers(1, 3))
def test_expiry_and_joins_equal_a_naive_scan(ops, bucket_ms, recent_capacity):
    state = JoinState(ttl_ms=200, recent_capacity=recent_capacity, bucket_ms=bucket_ms)
    naive = NaiveJoin(ttl_ms=200, recent_capacity=recent_capacity)
    for op in ops:
        if op[0] == "p":
            p = Prediction(op[1], "m", "v1", op[2], op[3], op[2] / 3_000, None, None,
                           {"x": op[2] / 100, "k": op[1]}, None)
            assert state.add_prediction(p) == naive.add_prediction(p)
        elif op[0] == "g":
            g = GroundTruth(op[1], op[3], op[2])
            assert state.add_label(g) == naive.add_label(g)
        else:
            got_p, got_g = state.expire(op[1])
            want_p, want_g = naive.expire(op[1])
            assert (_by_rid(got_p), _by_rid(got_g)) == (_by_rid(want_p), _by_rid(want_g))
        assert set(state.pending_predictions) == set(naive.predictions)
        assert set(state.pending_labels) == set(naive.labels)
    got_p, got_g = state.expire(10**9)
    want_p, want_g = naive.expire(10**9)
    assert (_by_rid(got_p), _by_rid(got_g)) == (_by_rid(want_p), _by_rid(want_g))
    assert state.pending_counts() == (0, 0)


def test_expiry_reads_only_the_expired_entries_and_one_bucket(monkeypatch):
    state = JoinState(ttl_ms=1_000, bucket_ms=1_000)
    for i in range(20_000):  # 10 per bucket over 2,000 buckets
        state.add_prediction(_p(f"r{i}", ts=i * 100))
    reads = []
    real_ts = join._ts
    monkeypatch.setattr(join, "_ts", lambda entry: reads.append(1) or real_ts(entry))
    expired, _ = state.expire(watermark_ms=1_000 + 5_050)  # ts < 5,050: r0 .. r50
    assert sorted(p.request_id for p in expired) == sorted(f"r{i}" for i in range(51))
    assert len(reads) <= 51 + 2 * 10  # the expired ones, and the bucket holding the limit
    reads.clear()
    assert state.expire(watermark_ms=1_000 + 5_060) == ([], [])
    assert len(reads) <= 1  # sorted once: the next call looks at its oldest entry only
    assert len(state.pending_predictions) == 20_000 - 51


def test_buckets_drop_joined_ids_once_they_are_most_of_a_bucket():
    state = JoinState(ttl_ms=60_000, bucket_ms=60_000)
    for i in range(1_000):
        state.add_prediction(_p(f"r{i}", ts=1_000 + i))
    for i in range(900):
        assert isinstance(state.add_label(_g(f"r{i}", ts=2_000)), Outcome)
    (bucket,) = state._prediction_expiry.buckets.values()
    assert len(bucket) <= 2 * 100 + 1 and set(bucket) >= {f"r{i}" for i in range(900, 1_000)}


@pytest.mark.parametrize("bad", [0, -5])
def test_bucket_width_must_be_positive(bad):
    with pytest.raises(ValueError, match="bucket_ms must be at least 1"):
        JoinState(ttl_ms=1_000, bucket_ms=bad)


def test_a_request_predicted_again_after_its_join_was_forgotten_expires_by_its_new_time():
    state = JoinState(ttl_ms=100, recent_capacity=1, bucket_ms=1_000)
    for i, rid in enumerate("abcdef"):
        state.add_prediction(_p(rid, ts=10 + i))
    state.add_label(_g("a", ts=50))  # "a" stays in its bucket as a stale id
    state.add_label(_g("b", ts=60))  # "a" is forgotten as joined
    assert state._prediction_expiry.buckets[0].count("a") == 1
    assert state.add_prediction(_p("a", ts=5_000)) is None
    expired, _ = state.expire(watermark_ms=2_100)
    assert [p.request_id for p in expired] == list("cdef")
    assert list(state.pending_predictions) == ["a"]
    assert state.expire(watermark_ms=5_101) == ([_p("a", ts=5_000)], [])


def test_expired_halves_are_unpacked_only_when_read(monkeypatch):
    state = JoinState(ttl_ms=1_000)
    for i in range(5):
        state.add_prediction(_p(f"r{i}", ts=i))
    state.add_label(_g("orphan", ts=0))
    unpacked = []
    real = state.codec.decode_prediction
    monkeypatch.setattr(state.codec, "decode_prediction", lambda rid, data: unpacked.append(rid) or real(rid, data))
    expired_p, expired_g = state.expire(watermark_ms=1_003)
    assert len(expired_p) == 3 and bool(expired_g) and unpacked == []
    assert expired_p[1] == _p("r1", ts=1) and unpacked == ["r1"]
    assert expired_p == [_p("r0", ts=0), _p("r1", ts=1), _p("r2", ts=2)] and expired_g == [_g("orphan", ts=0)]
    assert expired_p[1:] == [_p("r1", ts=1), _p("r2", ts=2)]


# --- many features: the wide form ------------------------------------------------------

import numpy as np  # noqa: E402

WIDE_PREDICTIONS = st.builds(
    Prediction,
    request_id=st.text(min_size=1, max_size=30),
    model=st.sampled_from(["m", "\ud800"]), model_version=st.sampled_from(["v1", "v2"]), ts_ms=TS_RANGE,
    prediction=st.sampled_from(["0", "1"]) | UNICODE,
    score=st.none() | FLOATS, confidence=st.none() | FLOATS,
    scores=st.none() | st.dictionaries(UNICODE, FLOATS, max_size=3),
    features=st.integers(join.WIDE_FEATURES, 60).flatmap(
        lambda n: st.dictionaries(st.text(max_size=4), VALUES | FLOATS | DECIMALS, min_size=n, max_size=n)),
    latency_ms=st.none() | FLOATS,
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(WIDE_PREDICTIONS)
def test_wide_predictions_round_trip_exactly_or_decline(p):
    for codec in (HalfCodec(shapes_per_feature_set=0), HalfCodec()):  # the wide form, and shapes as usual
        packed = codec.encode_prediction(p)
        if packed is None:
            assert any(type(v) is float and math.isnan(v) for v in (p.score, p.confidence, p.latency_ms,
                                                                    *(p.scores or {}).values(), *p.features.values())) \
                or any(type(v) is int and not -(2**63) <= v < 2**63 for v in p.features.values())
            continue
        back = codec.decode_prediction(p.request_id, packed)
        assert back == p and _exact(back) == _exact(p)
        assert codec.shapes[-1].wide == (codec.shapes_per_feature_set == 0)


def test_a_wide_feature_set_whose_values_keep_changing_code_stops_making_shapes():
    """300 features whose values keep changing code: after SHAPES_PER_FEATURE_SET shapes the set
    goes to the wide form, whose codes travel in the entry (one shape: the feature names), and
    every prediction still waits packed (the shape tables used to fill up, and the rest waited
    as objects of about 20 KB)."""
    rng = np.random.default_rng(3)
    state = JoinState(ttl_ms=10**12)
    sent = []
    for i in range(300):
        draws = [float(rng.normal(0, 1)), round(float(rng.normal(300, 200)), 2),
                 int(rng.poisson(3)) * 10 ** int(rng.integers(0, 6)), None, "north" if i % 2 else "s" * 300,
                 bool(i % 3), round(float(rng.normal(0, 1)), 4), 65_000.5 * i]
        features = {f"f{j}": draws[(i + j) % len(draws)] for j in range(300)}
        p = Prediction(f"r{i}", "m", "v1", 1_000 + i, "1", 0.5, 0.5, None, features, 3.0)
        sent.append(p)
        state.add_prediction(p)
    assert all(type(e) is bytes for e in state.pending_predictions.values())
    assert len(state.codec.shapes) == join.SHAPES_PER_FEATURE_SET + 1 and state.codec.shapes[-1].wide
    assert [s.wide for s in state.codec.shapes].count(True) == 1
    for p in sent:
        outcome = state.add_label(GroundTruth(p.request_id, "1", p.ts_ms))
        assert isinstance(outcome, Outcome) and _exact(outcome.prediction) == _exact(p)
