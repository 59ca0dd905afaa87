"""What bench_latency produces, and what the worker must answer: pure functions, unit-tested.

The plan: predictions evenly spaced, round robin over model versions, each labeled a random
0.5-2.5 s later. Time is cut into periods (10 s, starting at an epoch multiple of the period,
so that windows that are a multiple of it start on a period boundary). Per version, periods
alternate between right ones (every label agrees with its prediction) and wrong ones (every
label disagrees); odd versions are one period out of step with even ones. No label is
produced in the first ``gap_s`` (>= the longest label delay) of a period, so that
- the error stream ADWIN sees is 0...0 1...1 0...0 whatever the order in which the labels
  of one period are joined (the pause keeps periods apart), and
- every label of a period belongs to a prediction made in that period, so to one window: the
  alert a label raises has the same window, hence the same alert_id, whichever label of the
  period happens to be joined at the moment of detection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from producers.replay import layout_of, row_events
from producers.scenarios import generate
from streams import alert_rules as rules
from streams.alert_rules import Alert, AlertBook
from streams.outcome_stream import ErrorRateChange, OutcomeStream, TimedOutcome
from streams.windows import window_end_ms, window_start_ms

MODEL = "latency-bench"
TEMPLATES = 5_000  # stable-scenario rows whose features, scores and predictions are reused
Key = tuple[str, int]  # (model_version, window_start_ms)


@dataclass(frozen=True)
class Plan:
    rate: float  # input events per second, predictions and labels together
    seconds: float  # predictions are produced for this long (their labels up to delay_max later)
    versions: int = 8
    period_s: float = 10.0
    gap_s: float = 2.5  # no label in the first gap_s of a period
    delay_min: float = 0.5
    delay_max: float = 2.5
    seed: int = 5

    def __post_init__(self) -> None:
        if self.gap_s < self.delay_max or self.gap_s >= self.period_s:
            raise ValueError(f"the gap ({self.gap_s} s) must cover the longest label delay ({self.delay_max} s) "
                             f"and be shorter than the period ({self.period_s} s)")

    def phase(self, version: int, t: Any) -> tuple[Any, Any]:
        """(phase index, in the gap?) of a label of ``version`` produced at ``t`` seconds from the
        start; odd phases are wrong, odd versions one period out of step."""
        shifted = np.asarray(t, dtype=float) + (version % 2) * self.period_s
        index = np.floor(shifted / self.period_s).astype(np.int64)
        return index, shifted - index * self.period_s < self.gap_s


@dataclass
class Schedule:
    """Predictions i = 0..n-1 and the labels that follow some of them (times in seconds from the start)."""

    pred_at: np.ndarray
    version: np.ndarray  # of each prediction, 0-based
    label_pred: np.ndarray  # the prediction each label belongs to, in label produce order
    label_at: np.ndarray
    label_phase: np.ndarray
    label_wrong: np.ndarray

    @property
    def events(self) -> int:
        return len(self.pred_at) + len(self.label_at)

    def order(self) -> tuple[np.ndarray, np.ndarray]:
        """(due time, event) of every event in produce order; event < n is a prediction, else n + label."""
        times = np.concatenate([self.pred_at, self.label_at])
        order = np.argsort(times, kind="stable")
        return times[order], order


def build_schedule(plan: Plan) -> Schedule:
    """Predictions at rate / (1 + labeled share); labels after a random delay, none in a gap."""
    pred_rate = plan.rate / (1 + (plan.period_s - plan.gap_s) / plan.period_s)
    n = int(plan.seconds * pred_rate)
    pred_at = np.arange(n) / pred_rate
    version = np.arange(n) % plan.versions
    label_at = pred_at + np.random.default_rng(plan.seed).uniform(plan.delay_min, plan.delay_max, n)
    phase = np.empty(n, dtype=np.int64)
    gap = np.empty(n, dtype=bool)
    for v in range(plan.versions):
        mine = version == v
        phase[mine], gap[mine] = plan.phase(v, label_at[mine])
    kept = np.flatnonzero(~gap)
    kept = kept[np.argsort(label_at[kept], kind="stable")]
    return Schedule(pred_at, version, kept, label_at[kept], phase[kept], phase[kept] % 2 == 1)


def request_id(tag: str, i: int, version: int, phase: int | None) -> str:
    """The phase of the request's label is the id's third field, so that SQL can group outcomes by it."""
    return f"{tag}-v{version + 1}-{'n' if phase is None else phase}-{i:08d}"


def prediction_index(rid: str) -> int:
    return int(rid.rsplit("-", 1)[1])


class Encoder:
    """Events of a schedule as JSON, stamped with the epoch ms at which they are produced."""

    def __init__(self, schedule: Schedule, tag: str) -> None:
        rows = generate("stable", rows=TEMPLATES).rows
        layout = layout_of(rows[0])
        self.templates = [{**row_events(row, layout)[0], "model": MODEL} for row in rows]
        self.s = schedule
        phase_of = dict(zip(schedule.label_pred.tolist(), schedule.label_phase.tolist(), strict=True))
        self.ids = [request_id(tag, i, v, phase_of.get(i)) for i, v in enumerate(schedule.version.tolist())]

    def prediction(self, i: int, ts_ms: int) -> tuple[bytes, bytes]:
        template = self.templates[i % len(self.templates)]
        rid = self.ids[i]
        event = {**template, "request_id": rid, "model_version": f"v{int(self.s.version[i]) + 1}", "timestamp": ts_ms}
        return rid.encode(), orjson.dumps(event)

    def label(self, j: int, ts_ms: int) -> tuple[bytes, bytes]:
        i = int(self.s.label_pred[j])
        predicted = self.templates[i % len(self.templates)]["prediction"]
        label = 1 - predicted if self.s.label_wrong[j] else predicted
        rid = self.ids[i]
        return rid.encode(), orjson.dumps({"request_id": rid, "label": label, "timestamp": ts_ms})


def expected_alerts(version: str, outcomes: Sequence[tuple[bool, int, str]], window_seconds: int,
                    delta: float) -> list[tuple[int, Alert]]:
    """(index of the outcome that raised it, alert) for one version's outcomes (wrong?, join ts ms,
    request_id): ADWIN fed in event time (join ts, then request_id) through the worker's own
    OutcomeStream, and the AlertBook; the alert's window is that of the join time."""
    stream = OutcomeStream(adwin_delta=delta, window_seconds=window_seconds, grace_seconds=0, min_labeled=1 << 60)
    index_of = {}
    for i, (wrong, join_ms, rid) in enumerate(outcomes):
        stream.add(TimedOutcome(join_ms, rid, window_start_ms(join_ms, window_seconds), not wrong))
        index_of[(join_ms, rid)] = i
    order = sorted(index_of)
    book = AlertBook()
    out = []
    for event in stream.advance(order[-1][0] + 1 if order else 0):
        if not isinstance(event, ErrorRateChange):
            continue
        condition = rules.error_rate_change(MODEL, version, event.before, event.after, event.n_before,
                                            event.n_after, delta, event.at_ms, None)
        window = window_start_ms(event.at_ms, window_seconds)
        alert = book.observe(MODEL, version, window, window_end_ms(window, window_seconds), condition, 0)
        if alert is not None:
            trigger = next(k for k in order if k[0] == event.at_ms)
            out.append((index_of[trigger], alert))
    return out


def row_latencies(labels: dict[Key, list[float]], versions: dict[Key, list[tuple[float, float, int]]],
                  since: float) -> tuple[list[float], list[float], int]:
    """Label -> window row latencies, as (seen, computed, labels never reflected).

    ``labels``: produce times of the labels counted in each window; ``versions``: (computed
    at, first seen at, labeled) of each version of the window's row. The k-th label (in
    produce order) is reflected by the first version (in computed order) with labeled >= k.
    Only labels produced at or after ``since`` give a sample."""
    seen, computed, missing = [], [], 0
    for key, produced in labels.items():
        rows = sorted(versions.get(key, []))
        r = 0
        for k, t in enumerate(sorted(produced), start=1):
            while r < len(rows) and rows[r][2] < k:
                r += 1
            if t < since:
                continue
            if r == len(rows):
                missing += 1
                continue
            computed.append(rows[r][0] - t)
            seen.append(rows[r][1] - t)
    return seen, computed, missing


def phase_order(spans: Sequence[tuple[str, int, float, float]]) -> tuple[int, int]:
    """(reversed, shared) phase boundaries from (version, phase, first joined, last joined):
    reversed = a label of the next phase was joined in an earlier batch than one of the
    previous phase; shared = the last of one phase and the first of the next in one batch."""
    by_version: dict[str, list[tuple[int, float, float]]] = {}
    for version, phase, first, last in spans:
        by_version.setdefault(version, []).append((phase, first, last))
    reversed_, shared = 0, 0
    for phases in by_version.values():
        phases.sort()
        for (_, _, last), (_, first, _) in zip(phases, phases[1:], strict=False):
            reversed_ += last > first
            shared += last == first
    return reversed_, shared


def refreshes(computed: Sequence[float], gap: float = 0.5) -> tuple[list[float], list[float]]:
    """(intervals between refreshes, time each refresh spent computing rows) from the distinct
    `updated_at` of window rows: one refresh computes its versions one after another, so its
    rows are stamped within a short span, and refreshes are at least a second apart."""
    times = sorted(set(computed))
    if not times:
        return [], []
    starts, spans, first, last = [times[0]], [], times[0], times[0]
    for t in times[1:]:
        if t - last > gap:
            spans.append(last - first)
            starts.append(t)
            first = t
        last = t
    spans.append(last - first)
    return [b - a for a, b in zip(starts, starts[1:], strict=False)], spans
