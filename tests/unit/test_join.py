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
