"""Prometheus metrics of the monitor, served by the worker at ``/metrics``.

The hot path does no extra work for them: :class:`MonitorCollector` reads the
monitor's own counters, join table, per-version figures and the store's sink
figures when Prometheus scrapes. Only what the monitor does not keep is recorded
as batches pass, in :class:`BatchStats`: messages per input topic, processing
latency, batch sizes and durations (a few numpy operations per batch, never one
call per message). Everything lives in a registry of its own, not the global
default one, so several monitors (or tests) never share a metric.

>>> stats = BatchStats()
>>> stats.observe(["predictions", "predictions", "ground-truth"], [99.995, 98.0, None], now=100.0, duration=0.2)
>>> dict(stats.messages)
{'predictions': 2, 'ground-truth': 1}
>>> stats.latency.count, round(stats.latency.total, 6)
(2, 2.005)
>>> stats.latency.cumulative()[:3]
[('0.01', 1), ('0.025', 1), ('0.05', 1)]
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from streams.alert_rules import ALERT_TYPES, Alert
from streams.monitor import Monitor, Outbox, RawMessage
from streams.records import Rejection

PREFIX = "model_monitor_"
# From a message's Kafka timestamp to the end of its batch: 10 ms (idle, small batches) .. 60 s (backlog).
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_SIZE_BUCKETS = (1.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0)


class Buckets:
    """A histogram filled many observations at a time (Prometheus' per-call ``observe`` costs a lock each).

    ``counts[i]`` holds the values in (bounds[i-1], bounds[i]]; the last slot those above every bound.

    >>> b = Buckets((1.0, 5.0))
    >>> b.observe(np.array([0.5, 1.0, 3.0, 7.0]))
    >>> b.cumulative(), b.count, b.total
    ([('1.0', 2), ('5.0', 3), ('+Inf', 4)], 4, 11.5)
    """

    def __init__(self, bounds: Sequence[float]) -> None:
        if not bounds or any(b <= a for a, b in zip(bounds, bounds[1:], strict=False)):
            raise ValueError(f"Bucket bounds must be a non-empty increasing sequence, got {bounds!r}")
        self.bounds = np.asarray(bounds, dtype=float)
        self.counts = np.zeros(len(bounds) + 1, dtype=np.int64)
        self.total = 0.0

    def observe(self, values: np.ndarray) -> None:
        """Add observations: a value equal to a bound belongs to that bound's bucket (``le``)."""
        if values.size == 0:
            return
        slots = np.searchsorted(self.bounds, values, side="left")
        self.counts += np.bincount(slots, minlength=len(self.counts))
        self.total += float(values.sum())

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, observations <= le) pairs, ending with +Inf, as the exposition format wants them."""
        running = np.cumsum(self.counts)
        labels = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        return [(le, int(n)) for le, n in zip(labels, running, strict=True)]


class BatchStats:
    """What the agent sees of each batch and the monitor does not keep."""

    def __init__(self) -> None:
        self.messages: collections.Counter[str] = collections.Counter()
        self.latency = Buckets(LATENCY_BUCKETS)
        self.duration = Buckets(DURATION_BUCKETS)
        self.size = Buckets(BATCH_SIZE_BUCKETS)

    def observe(self, topics: Iterable[str], timestamps: Sequence[float | None], *, now: float,
                duration: float) -> None:
        """One processed batch: its messages' topics and Kafka timestamps (epoch seconds).

        A timestamp ahead of ``now`` (producer clock skew) counts as zero latency; a message
        without one is counted per topic but not in the latency.
        """
        self.messages.update(topics)
        stamps = np.fromiter((t for t in timestamps if t is not None), dtype=float)
        self.latency.observe(np.maximum(now - stamps, 0.0))
        self.duration.observe(np.array([max(duration, 0.0)]))
        self.size.observe(np.array([float(len(timestamps))]))


def latest_accuracy(figures: Mapping[int, tuple[int, int, float | None]]) -> float | None:
    """Accuracy of the newest window that has labels: a newer window without labels says nothing yet.

    >>> latest_accuracy({0: (4, 3, 0.75), 60_000: (2, 1, 0.5), 120_000: (0, 0, None)})
    0.5
    >>> latest_accuracy({0: (0, 0, None)}) is None
    True
    """
    labeled = [w for w, (n, _, accuracy) in figures.items() if n > 0 and accuracy is not None]
    return figures[max(labeled)][2] if labeled else None


def latest_closed_psi(last_psi: Mapping[int, Mapping[str, float]],
                      closed: Iterable[int]) -> Mapping[str, float]:
    """PSI per subject of the newest closed window: an open window's PSI still moves with every event.

    >>> latest_closed_psi({0: {"age": 0.01}, 60_000: {"age": 0.3}, 120_000: {"age": 2.0}}, {0, 60_000})
    {'age': 0.3}
    """
    done = [w for w in closed if w in last_psi]
    return last_psi[max(done)] if done else {}


class CountingOutbox:
    """The monitor's outbox, counting what it sends: DLQ messages by reason, alerts by (type, status).

    The monitor keeps neither breakdown; counting here leaves its hot path as it is.
    """

    def __init__(self, inner: Outbox) -> None:
        self.inner = inner
        self.dlq: collections.Counter[str] = collections.Counter()
        self.alerts: collections.Counter[tuple[str, str]] = collections.Counter()

    async def send_dlq(self, message: RawMessage, rejection: Rejection) -> None:
        await self.inner.send_dlq(message, rejection)
        self.dlq[rejection.reason] += 1

    async def send_alert(self, alert: Alert) -> None:
        await self.inner.send_alert(alert)
        self.alerts[(alert.type, alert.status)] += 1


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, value=value)


def _histogram(name: str, doc: str, buckets: Buckets) -> HistogramMetricFamily:
    return HistogramMetricFamily(PREFIX + name, doc, buckets=buckets.cumulative(), sum_value=buckets.total)


class MonitorCollector(Collector):
    """Reads the monitor, its store and the batch statistics at scrape time (on the event loop,
    like the agent, so nothing changes while it reads)."""

    def __init__(self, monitor: Monitor, batches: BatchStats, sent: CountingOutbox) -> None:
        self.monitor = monitor
        self.batches = batches
        self.sent = sent

    def describe(self) -> list[Metric]:
        return []  # names vary with the data; nothing to check against other collectors

    def collect(self) -> Iterator[Metric]:
        yield from self._flow()
        yield from self._versions()
        yield from self._estimates()
        yield from self._labels()
        yield from self._sink()

    def _flow(self) -> Iterator[Metric]:
        m, c = self.monitor, self.monitor.counters
        messages = CounterMetricFamily(PREFIX + "input_messages", "Messages read per input topic.",
                                       labels=["topic"])
        for topic, n in sorted(self.batches.messages.items()):
            messages.add_metric([topic], n)
        yield messages
        yield _counter("predictions", "Distinct predictions accepted.", c.predictions)
        yield _counter("labels", "Distinct labels (ground truth) accepted.", c.labels)
        yield _counter("outcomes_joined", "Predictions joined with their label.", c.outcomes)
        yield _counter("duplicates", "Repeated request_ids ignored (either topic).", c.duplicates)
        yield _counter("replay_skipped", "Messages skipped after a restart: already in ClickHouse.",
                       c.replay_skipped)
        yield _counter("outcomes_behind_watermark", "Outcomes joined behind the released event-time watermark: "
                       "counted in the figures, not fed to ADWIN or the accuracy looks.", c.late_outcomes)
        dlq = CounterMetricFamily(PREFIX + "dlq_messages", "Malformed messages sent to the DLQ, by reason.",
                                  labels=["reason"])
        for reason, n in sorted(self.sent.dlq.items()):
            dlq.add_metric([reason], n)
        yield dlq
        yield _counter("expired_predictions", "Predictions dropped unlabeled after JOIN_TTL_SECONDS.",
                       c.expired_predictions)
        yield _counter("unmatched_labels", "Labels dropped without a prediction after JOIN_TTL_SECONDS.",
                       c.unmatched_labels)
        sent = CounterMetricFamily(PREFIX + "alerts_sent", "Alert events sent, by type and status.",
                                   labels=["type", "status"])
        for (type_, status), n in sorted(self.sent.alerts.items()):
            sent.add_metric([type_, status], n)
        yield sent
        yield _gauge("join_pending_predictions", "Predictions waiting for their label.",
                     len(m.join.pending_predictions))
        yield _gauge("join_pending_labels", "Labels waiting for their prediction.", len(m.join.pending_labels))
        b = self.batches
        yield _histogram("processing_latency_seconds",
                         "From a message's Kafka timestamp to the end of processing its batch.", b.latency)
        yield _histogram("batch_duration_seconds", "Time to process one batch.", b.duration)
        yield _histogram("batch_size_messages", "Messages per processed batch.", b.size)

    def _versions(self) -> Iterator[Metric]:
        labels = ["model", "model_version"]
        accuracy = GaugeMetricFamily(PREFIX + "window_accuracy_ratio",
                                     "Accuracy of the newest event-time window that has labels.", labels=labels)
        rolling = GaugeMetricFamily(PREFIX + "rolling_accuracy_ratio",
                                    "Accuracy over the last ROLLING_SIZE joined outcomes.", labels=labels)
        psi = GaugeMetricFamily(PREFIX + "feature_psi",
                                "PSI of each feature (and __score__, __prediction__) in the newest closed window.",
                                labels=[*labels, "feature"])
        watermark = GaugeMetricFamily(PREFIX + "watermark_seconds",
                                      "Event-time watermark of the model version (Unix seconds).", labels=labels)
        firing = GaugeMetricFamily(PREFIX + "alerts_firing", "Alert conditions firing now.",
                                   labels=[*labels, "type"])
        slo = GaugeMetricFamily(PREFIX + "accuracy_slo_ratio",
                                "The version's own accuracy SLO (MONITOR_CONFIG, else ACCURACY_THRESHOLD).",
                                labels=labels)
        firing_now = collections.Counter(key[:3] for key in self.monitor.book.firing)  # (model, version, type)
        for (model, version), state in sorted(self.monitor.versions.items()):
            key = [model, version]
            value = latest_accuracy(state.last_figures)
            if value is not None:
                accuracy.add_metric(key, value)
            value = state.rolling_accuracy()
            if value is not None:
                rolling.add_metric(key, value)
            for feature, value in sorted(latest_closed_psi(state.last_psi, state.closed).items()):
                psi.add_metric([*key, feature], value)
            watermark.add_metric(key, state.watermark_ms / 1000)
            slo.add_metric(key, state.config.accuracy_threshold)
            for type_ in ALERT_TYPES:
                firing.add_metric([*key, type_], firing_now[(model, version, type_)])
        yield from (accuracy, rolling, psi, watermark, firing, slo)

    def _estimates(self) -> Iterator[Metric]:
        """Estimated accuracy (streams/estimate.py) of each version's newest window that has one."""
        labels = ["model", "model_version", "bound"]
        estimated = GaugeMetricFamily(PREFIX + "estimated_accuracy_ratio",
                                      "Accuracy of the newest window estimated from its scores before labels "
                                      "(bound: estimate, or the 95% interval's low / high).", labels=labels)
        for (model, version), state in sorted(self.monitor.versions.items()):
            if state.last_estimate:
                e = state.last_estimate[max(state.last_estimate)].estimate
                for bound, value in (("estimate", e.accuracy), ("low", e.low), ("high", e.high)):
                    estimated.add_metric([model, version, bound], value)
        yield estimated

    def _labels(self) -> Iterator[Metric]:
        """Label-pipeline health of each version's newest closed window (an open one is still labeling)."""
        labels = ["model", "model_version"]
        coverage = GaugeMetricFamily(PREFIX + "label_coverage_ratio",
                                     "Labeled / predictions of the newest closed window so far.", labels=labels)
        delay = GaugeMetricFamily(PREFIX + "label_delay_p90_seconds",
                                  "90th percentile label delay of the newest closed window's outcomes.", labels=labels)
        for (model, version), state in sorted(self.monitor.versions.items()):
            closed = [w for w in state.closed if w in state.last_labels]
            if not closed:
                continue
            share, p90 = state.last_labels[max(closed)]
            if share is not None:
                coverage.add_metric([model, version], share)
            if p90 is not None:
                delay.add_metric([model, version], p90)
        yield from (coverage, delay)

    def _sink(self) -> Iterator[Metric]:
        store = self.monitor.store
        written = CounterMetricFamily(PREFIX + "sink_rows_written", "Rows ClickHouse accepted, by table.",
                                      labels=["table"])
        for table, n in sorted(store.rows_written.items()):
            written.add_metric([table], n)
        yield written
        yield _counter("sink_failures", "Failed ClickHouse calls (each retried).", store.failures)
        yield _gauge("sink_rows_pending", "Rows handed to ClickHouse and not yet accepted.", store.rows_pending)
        since = store.outage_since
        yield _gauge("sink_outage_seconds", "Seconds into the current ClickHouse outage (0 when none).",
                     0.0 if since is None else time.monotonic() - since)


class MonitorMetrics:
    """The monitor's metrics, in a registry of their own, plus the process' CPU and memory.

    Building it wraps ``monitor.outbox`` in a :class:`CountingOutbox` (DLQ messages by reason,
    alerts by type and status); call :meth:`observe_batch` after each processed batch.
    """

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.batches = BatchStats()
        self.sent = CountingOutbox(monitor.outbox)
        monitor.outbox = self.sent
        self.registry = CollectorRegistry()
        self.registry.register(MonitorCollector(monitor, self.batches, self.sent))
        ProcessCollector(registry=self.registry)

    def observe_batch(self, events: Sequence[Any], started: float) -> None:
        """Faust events of a batch whose processing began at ``started`` (``time.perf_counter()``)."""
        duration = time.perf_counter() - started
        self.batches.observe([e.message.topic for e in events], [e.message.timestamp for e in events],
                             now=time.time(), duration=duration)

    def exposition(self) -> bytes:
        """The text exposition format (``prometheus_client.CONTENT_TYPE_LATEST``)."""
        return generate_latest(self.registry)
