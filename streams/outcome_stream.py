"""One model version's outcomes in event time: what ADWIN and the accuracy looks read.

Outcomes are joined in whatever order partitions interleave. To make every alert a
function of the input alone, each outcome waits here keyed by its *join time* (the
later of its prediction's and its label's timestamps; ties by request_id) and is
released, in that order, once the event-time watermark has passed it (Flink's
buffer-then-release). The released sequence is the same live, in a backlog, in a
replay at any speed, after a restart and on any number of partitions.

An outcome whose join time is already behind the released watermark is *late*: it is
refused here (the caller counts it and marks its row); it still counts in the window
figures, which are recomputed from the store.

Released outcomes feed, in order:

- ADWIN: an :class:`ErrorRateChange` whenever it cuts its window;
- per prediction window, the labeled and correct counts: an :class:`AccuracyLook` when
  the count reaches MIN_LABELED * 2**j, and a final one when the released watermark
  passes window end + LABEL_GRACE_SECONDS (labels joined later are late labels of a
  final window: they do not change its decision).

>>> s = OutcomeStream(adwin_delta=0.002, window_seconds=10, grace_seconds=5, min_labeled=2)
>>> [s.add(TimedOutcome(t, f"r{t}", 0, t != 3000)) for t in (3000, 1000, 2000)]
[True, True, True]
>>> [(type(e).__name__, e.labeled, e.look) for e in s.advance(2500)]  # 3000 waits for the watermark
[('AccuracyLook', 2, 0)]
>>> s.add(TimedOutcome(2400, "late", 0, True))  # behind the released watermark
False
>>> [(e.labeled, e.correct, e.look, e.at_ms) for e in s.advance(20_000)]  # final at 10 s + 5 s grace
[(3, 2, None, 15000)]
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from river import drift

from streams.stats import look_index
from streams.windows import is_final


@dataclass(frozen=True, slots=True)
class TimedOutcome:
    """What the event-time stream needs of one joined request."""

    join_ms: int  # max(prediction ts, label ts)
    request_id: str
    window_ms: int  # the prediction's window
    correct: bool


@dataclass(frozen=True, slots=True)
class ErrorRateChange:
    """ADWIN cut its window at this outcome: the error rates of the dropped and the kept part."""

    at_ms: int  # join time of the outcome at which the change was detected
    before: float
    after: float
    n_before: int
    n_after: int


@dataclass(frozen=True, slots=True)
class AccuracyLook:
    """A window's labeled sample at a look (``look`` = j for MIN_LABELED * 2**j) or at finality (None)."""

    window_ms: int
    labeled: int
    correct: int
    look: int | None
    at_ms: int  # event-time position of the decision

    @property
    def final(self) -> bool:
        return self.look is None


StreamEvent = ErrorRateChange | AccuracyLook


@dataclass
class OutcomeStream:
    adwin_delta: float
    window_seconds: int
    grace_seconds: int
    min_labeled: int
    released_ms: int = 0  # every buffered outcome with join time < released_ms has been released
    adwin: drift.ADWIN = field(init=False)
    counts: dict[int, list[int]] = field(default_factory=dict)  # window -> [labeled, correct], not yet final
    _heap: list[tuple[int, str, TimedOutcome]] = field(default_factory=list)
    _ids: set[str] = field(default_factory=set)
    _first_final_ms: int | None = None  # the earliest end + grace among ``counts``

    def __post_init__(self) -> None:
        self.adwin = drift.ADWIN(delta=self.adwin_delta)

    @property
    def waiting(self) -> int:
        return len(self._heap)

    def add(self, outcome: TimedOutcome) -> bool:
        """Buffer an outcome until the watermark passes it. False when it is late (behind the
        released watermark) or already waiting."""
        if outcome.join_ms < self.released_ms or outcome.request_id in self._ids:
            return False
        heapq.heappush(self._heap, (outcome.join_ms, outcome.request_id, outcome))
        self._ids.add(outcome.request_id)
        return True

    def advance(self, watermark_ms: int) -> list[StreamEvent]:
        """Release, in event-time order, every outcome whose join time is before the watermark."""
        events: list[StreamEvent] = []
        if watermark_ms <= self.released_ms:
            return events
        heap = self._heap
        while heap and heap[0][0] < watermark_ms:
            join_ms, rid, outcome = heapq.heappop(heap)
            self._ids.discard(rid)
            self._finalize(join_ms, events)
            self._learn(outcome, events)
        self.released_ms = watermark_ms
        self._finalize(watermark_ms, events)
        return events

    def restore(self, released: list[TimedOutcome], released_ms: int) -> None:
        """Rebuild the state after a restart: ``released`` are the outcomes released before the
        checkpoint ``released_ms`` (any order); their events were sent before."""
        for outcome in released:
            heapq.heappush(self._heap, (outcome.join_ms, outcome.request_id, outcome))
            self._ids.add(outcome.request_id)
        self.advance(released_ms)

    def _final_at(self, window_ms: int) -> int:
        """The event time from which a window is final: end + grace (final when passed)."""
        return window_ms + (self.window_seconds + self.grace_seconds) * 1000

    def _finalize(self, position_ms: int, events: list[StreamEvent]) -> None:
        """Windows final before this position: their last look, then they are forgotten."""
        if self._first_final_ms is None or self._first_final_ms >= position_ms:
            return  # the common case, once per released outcome
        for w in sorted(self.counts):
            final_at = self._final_at(w)
            if final_at >= position_ms:
                break
            labeled, correct = self.counts.pop(w)
            events.append(AccuracyLook(w, labeled, correct, None, final_at))
        self._first_final_ms = self._final_at(min(self.counts)) if self.counts else None

    def _learn(self, outcome: TimedOutcome, events: list[StreamEvent]) -> None:
        error = 0.0 if outcome.correct else 1.0
        adwin = self.adwin
        width_before, mean_before = adwin.width, adwin.estimation
        adwin.update(error)
        if adwin.drift_detected:
            # ADWIN dropped the older part of its window: compare the dropped part with the kept one.
            kept_n, kept_mean = int(adwin.width), adwin.estimation
            dropped_n = int(width_before) + 1 - kept_n
            dropped_mean = ((mean_before * width_before + error - kept_mean * kept_n) / dropped_n
                            if dropped_n else kept_mean)
            events.append(ErrorRateChange(outcome.join_ms, dropped_mean, kept_mean, dropped_n, kept_n))
        w = outcome.window_ms
        if is_final(w, outcome.join_ms, self.window_seconds, self.grace_seconds):
            return  # a late label of a final window: its decision stands (the rule of the outcome's `late` flag)
        counts = self.counts.get(w)
        if counts is None:
            counts = self.counts[w] = [0, 0]
            final_at = self._final_at(w)
            if self._first_final_ms is None or final_at < self._first_final_ms:
                self._first_final_ms = final_at
        counts[0] += 1
        counts[1] += outcome.correct
        look = look_index(counts[0], self.min_labeled)
        if look is not None:
            events.append(AccuracyLook(w, counts[0], counts[1], look, outcome.join_ms))
