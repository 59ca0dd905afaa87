"""The event-time outcome stream: the same input gives the same sequence, whatever the arrival order."""

import random

from streams.outcome_stream import AccuracyLook, ErrorRateChange, OutcomeStream, TimedOutcome

HOUR_S = 3600


def stream(min_labeled: int = 50, grace_s: int = 600) -> OutcomeStream:
    return OutcomeStream(adwin_delta=0.002, window_seconds=HOUR_S, grace_seconds=grace_s, min_labeled=min_labeled)


def outcomes(n: int = 6000, change_at: int = 3000, seed: int = 7) -> list[TimedOutcome]:
    """Error rate 5% then 25%; prediction windows of one hour, labels ~10 min later."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ts = i * 1200  # 1.2 s apart
        delay = rng.randint(1_000, 1_200_000)
        wrong = rng.random() < (0.05 if i < change_at else 0.25)
        out.append(TimedOutcome(ts + delay, f"r{i:05d}", ts // 3_600_000 * 3_600_000, not wrong))
    return out


def run(items: list[TimedOutcome], watermarks: list[int], s: OutcomeStream | None = None) -> list:
    """Add ``items`` in the given order, advancing at the given watermarks (as batches would)."""
    s = s or stream()
    events = []
    chunks = max(1, len(items) // max(1, len(watermarks)))
    for k, w in enumerate(watermarks):
        for o in items[k * chunks:(k + 1) * chunks] if k < len(watermarks) - 1 else items[k * chunks:]:
            assert s.add(o)
        events += s.advance(w)
    return events


def test_the_released_sequence_does_not_depend_on_arrival_order_or_release_points():
    items = outcomes()
    end = max(o.join_ms for o in items) + 1
    # arrival in join-time order, released once at the end
    reference = run(sorted(items, key=lambda o: (o.join_ms, o.request_id)), [end])
    assert any(isinstance(e, ErrorRateChange) for e in reference)
    # arrival in another order (partitions interleaved), released at many watermarks that never
    # pass an outcome still to come
    shuffled = sorted(items, key=lambda o: (o.join_ms // 600_000, random.Random(o.request_id).random()))
    s, events = stream(), []
    pending = sorted(shuffled, key=lambda o: (o.join_ms // 600_000))
    for block in range(0, len(pending), 250):
        chunk = pending[block:block + 250]
        for o in chunk:
            assert s.add(o)
        events += s.advance(chunk[-1].join_ms // 600_000 * 600_000)  # all of earlier blocks have arrived
    events += s.advance(end)
    assert events == reference


def test_restore_continues_exactly_where_the_checkpoint_was():
    items = sorted(outcomes(), key=lambda o: (o.join_ms, o.request_id))
    end = items[-1].join_ms + 1
    full = stream()
    whole = run(items, [end], full)
    checkpoint = items[2500].join_ms
    first = stream()
    before = [o for o in items if o.join_ms < checkpoint]
    events = run(before, [checkpoint], first)
    restored = stream()
    restored.restore(before, checkpoint)
    for o in items:
        if o.join_ms >= checkpoint:
            assert restored.add(o)
    events += restored.advance(end)
    assert events == whole
    assert (restored.adwin.width, restored.adwin.estimation) == (full.adwin.width, full.adwin.estimation)


def test_late_outcomes_are_refused_and_windows_decide_once():
    s = stream(min_labeled=2, grace_s=0)
    assert s.add(TimedOutcome(1_000, "a", 0, True)) and s.add(TimedOutcome(2_000, "b", 0, False))
    assert s.add(TimedOutcome(2_000, "b", 0, False)) is False  # already waiting
    looks = s.advance(3_000)
    assert looks == [AccuracyLook(0, 2, 1, 0, 2_000)]
    assert s.add(TimedOutcome(2_500, "c", 0, True)) is False  # behind the released watermark
    s.add(TimedOutcome(3_600_500, "d", 0, True))  # joined after the window became final (end + 0 grace)
    finals = s.advance(3_700_000)
    assert finals == [AccuracyLook(0, 2, 1, None, 3_600_000)]  # its decision does not include "d"
    assert s.counts == {}


def test_looks_come_at_min_labeled_times_powers_of_two():
    s = stream(min_labeled=3, grace_s=10_000)
    for i in range(25):
        s.add(TimedOutcome(1_000 + i, f"r{i:02d}", 0, True))
    looks = [(e.labeled, e.look) for e in s.advance(2_000) if isinstance(e, AccuracyLook)]
    assert looks == [(3, 0), (6, 1), (12, 2), (24, 3)]
