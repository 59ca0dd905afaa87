"""The Prometheus metrics: pure pieces in process, and a real Monitor on chdb://memory scraped.

The Monitor part runs in a subprocess (this file run as a script): one embedded chDB
path per process, and other tests of the session open one of their own.
"""

from __future__ import annotations

import asyncio
import math
import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.observability import BatchStats, Buckets, latest_accuracy, latest_closed_psi
from tests.own_process import run_script

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_040  # seconds, a multiple of WINDOW
WINDOW = 60
MESSAGE_AGE_S = 20.0  # Kafka timestamps this far back: the latency lands in the (10, 30] bucket
SCENARIO_ENV = {"CLICKHOUSE_URL": "chdb://memory", "WINDOW_SECONDS": str(WINDOW), "JOIN_TTL_SECONDS": "100",
                "MIN_LABELED": "2", "PSI_BINS": "2", "LABEL_GRACE_SECONDS": "0", "MONITOR_IDLE_SECONDS": "0.1"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by (name, sorted labels)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


# -- pure pieces -----------------------------------------------------------------
def test_buckets_count_values_on_a_bound_in_that_bucket():
    b = Buckets((0.1, 1.0, 10.0))
    b.observe(np.array([0.0, 0.1, 0.10001, 1.0, 9.0, 11.0, 500.0]))
    assert b.cumulative() == [("0.1", 2), ("1.0", 4), ("10.0", 5), ("+Inf", 7)]
    assert (b.count, b.total) == (7, pytest.approx(521.20001))


@pytest.mark.parametrize("bounds", [(), (1.0, 1.0), (2.0, 1.0)])
def test_buckets_refuse_bounds_that_do_not_increase(bounds):
    with pytest.raises(ValueError, match="increasing"):
        Buckets(bounds)


def test_batch_stats_count_topics_and_clamp_clock_skew_to_zero():
    stats = BatchStats()
    stats.observe(["p", "g", "p"], [1000.5, 940.0, 999.0], now=1000.0, duration=0.03)
    stats.observe(["g"], [None], now=1001.0, duration=0.002)
    assert dict(stats.messages) == {"p": 2, "g": 2}
    latency = dict(stats.latency.cumulative())
    assert (latency["0.01"], latency["1.0"], latency["60.0"], latency["+Inf"]) == (1, 2, 3, 3)
    assert stats.latency.total == 61.0
    assert dict(stats.duration.cumulative())["0.005"] == 1
    assert stats.duration.count == 2
    assert dict(stats.size.cumulative())["1.0"] == 1
    assert stats.size.total == 4.0


def test_latest_accuracy_skips_newer_windows_without_labels():
    assert latest_accuracy({0: (10, 9, 0.9), 60_000: (4, 1, 0.25), 120_000: (0, 0, None)}) == 0.25
    assert latest_accuracy({}) is None


def test_latest_closed_psi_ignores_open_windows():
    psi = {0: {"a": 0.0}, 60_000: {"a": 0.5, "b": 0.1}, 120_000: {"a": 9.0}}
    assert latest_closed_psi(psi, {0, 60_000}) == {"a": 0.5, "b": 0.1}
    assert latest_closed_psi(psi, set()) == {}


# -- a real Monitor, scraped ---------------------------------------------------------
def _prediction(rid: str, t: int, x: float) -> tuple[str, bytes, bytes]:
    event = {"request_id": rid, "model": "m", "model_version": "v1", "timestamp": (T0 + t) * 1000,
             "prediction": 1, "features": {"x": x}}
    return "predictions", rid.encode(), orjson.dumps(event)


def _label(rid: str, t: int, label: int) -> tuple[str, bytes, bytes]:
    return "ground-truth", rid.encode(), orjson.dumps({"request_id": rid, "label": label,
                                                        "timestamp": (T0 + t) * 1000})


# Windows of 60 s: window 0 = the reference (x 1..4), window 1 drifted (x 3..5), window 2 open.
MESSAGES = [
    _prediction("p1", 1, 1), _prediction("p2", 2, 2), _prediction("p3", 3, 3), _prediction("p4", 4, 4),
    _prediction("p1", 1, 1),  # duplicate
    _prediction("p5", 61, 3), _prediction("p6", 62, 4), _prediction("p7", 63, 5), _prediction("p8", 150, 5),
    ("predictions", b"bad", b"{not json"),
    _label("p1", 10, 1), _label("p2", 11, 0), _label("p3", 12, 1),
    _label("g9", 20, 1),  # never predicted: expires (20 + TTL 100 < watermark 150)
    _label("p5", 70, 1), _label("p6", 71, 0),
    _label("g10", 140, 1),  # never predicted, still waiting
    _label("p6", 71, 0),  # duplicate of a joined request
    ("ground-truth", b"c2", b'{"request_id":"c2","label":1}'),
    ("ground-truth", b"c3", b"[1"),
]


class MemoryOutbox:
    def __init__(self) -> None:
        self.dlq: list[str] = []
        self.alerts: list[str] = []

    async def send_dlq(self, message, rejection) -> None:  # type: ignore[no-untyped-def]
        self.dlq.append(rejection.reason)

    async def send_alert(self, alert) -> None:  # type: ignore[no-untyped-def]
        self.alerts.append(alert.type)


async def _scenario() -> str:
    """One batch through a real Monitor on chdb://memory; the scrape as text."""
    from sinks.clickhouse import ClickHouseStore, parse_target
    from streams.monitor import Monitor, RawMessage
    from streams.observability import MonitorMetrics
    from streams.settings import load_settings

    settings = load_settings(SCENARIO_ENV)
    store = ClickHouseStore(parse_target(settings.clickhouse_url))
    monitor = Monitor(settings, store, MemoryOutbox())
    metrics = MonitorMetrics(monitor)
    await monitor.start()
    # Every partition counts as read to its end, so the watermark is the latest event time.
    monitor.partition_end = lambda source: (monitor.last_offset.get(source, -1) + 1, None)
    offsets: dict[str, int] = {}
    batch, events = [], []
    sent_at = time.time() - MESSAGE_AGE_S
    for topic, key, value in MESSAGES:
        offsets[topic] = offsets.get(topic, -1) + 1
        batch.append(RawMessage(topic, 0, offsets[topic], key, value))
        events.append(SimpleNamespace(message=SimpleNamespace(topic=topic, timestamp=sent_at)))
    started = time.perf_counter()
    await monitor.process_batch(batch)
    metrics.observe_batch(events, started)
    await asyncio.sleep(0.3)  # every partition quiet (MONITOR_IDLE_SECONDS): the watermark is the latest event
    await monitor.refresh()  # facts stored, figures computed, windows 0 and 1 closed and final
    # No scores nor labeled reference here: an estimate as the refresh of a calibrated version leaves it.
    from streams.estimate import AccuracyEstimate, WindowEstimate
    monitor.versions[("m", "v1")].last_estimate.update({
        0: WindowEstimate(AccuracyEstimate(0.5, 0.4, 0.6, 4, 0.05), 3),
        60_000: WindowEstimate(AccuracyEstimate(0.8, 0.7, 0.9, 3, 0.05), 0)})
    text = metrics.exposition().decode()
    await store.close()
    return text


@pytest.fixture(scope="module")
def exposition() -> str:
    return run_script(__file__)


@pytest.fixture(scope="module")
def scraped(exposition: str) -> dict:
    return samples(exposition)


def readme_metrics() -> dict[str, tuple[str, tuple[str, ...]]]:
    """name -> (type, labels) of each row of README's `## Prometheus metrics` table."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Prometheus metrics\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(model_monitor_\w+)` \| (\w+) \|\s*([\w, ]*?)\s*\|", section, flags=re.M)
    return {name: (kind, tuple(sorted(filter(None, (s.strip() for s in labels.split(",")))))) for name, kind, labels in rows}


def test_readme_documents_every_metric_by_its_exposed_name_type_and_labels(exposition):
    """Every `model_monitor_*` family the worker serves is in the README table, named as a scrape
    shows it (counters with `_total`), with its type and labels; and the table lists nothing else."""
    served = {}
    for family in text_string_to_metric_families(exposition):
        if not family.name.startswith("model_monitor_"):
            continue
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = {k for s in family.samples for k in s.labels if k != "le"}
        served[name] = (family.type, tuple(sorted(labels)))
    documented = readme_metrics()
    assert len(documented) >= 20, "the README table was not found or not parsed"
    assert documented == served


def test_messages_per_topic_and_the_flow_counters(scraped):
    assert scraped[("model_monitor_input_messages_total", (("topic", "predictions"),))] == 10
    assert scraped[("model_monitor_input_messages_total", (("topic", "ground-truth"),))] == 10
    assert scraped[("model_monitor_predictions_total", ())] == 8
    assert scraped[("model_monitor_labels_total", ())] == 7
    assert scraped[("model_monitor_outcomes_joined_total", ())] == 5
    assert scraped[("model_monitor_duplicates_total", ())] == 2
    assert scraped[("model_monitor_replay_skipped_total", ())] == 0


def test_dlq_messages_by_reason(scraped):
    dlq = {dict(labels)["reason"]: v for (name, labels), v in scraped.items()
           if name == "model_monitor_dlq_messages_total"}
    assert dlq == {"invalid_json": 2, "missing_field": 1}


def test_join_table_sizes_and_expiry(scraped):
    # Watermark 150 s, TTL 100 s: p4 (4 s) and g9 (20 s) expired; p7, p8 and g10 wait.
    assert scraped[("model_monitor_join_pending_predictions", ())] == 2
    assert scraped[("model_monitor_join_pending_labels", ())] == 1
    assert scraped[("model_monitor_expired_predictions_total", ())] == 1
    assert scraped[("model_monitor_unmatched_labels_total", ())] == 1


VERSION = (("model", "m"), ("model_version", "v1"))


def test_accuracy_gauges_per_model_version(scraped):
    # Window 2 has no label yet: the newest labeled window is 1 (p5 right, p6 wrong).
    assert scraped[("model_monitor_window_accuracy_ratio", VERSION)] == 0.5
    # Joined in order: p1 right, p2 wrong, p3 right, p5 right, p6 wrong.
    assert scraped[("model_monitor_rolling_accuracy_ratio", VERSION)] == 0.6
    assert scraped[("model_monitor_watermark_seconds", VERSION)] == T0 + 150
    assert scraped[("model_monitor_accuracy_slo_ratio", VERSION)] == 0.85  # no MONITOR_CONFIG: ACCURACY_THRESHOLD


def test_psi_of_the_newest_closed_window_against_the_reference_window(scraped):
    psi = {dict(labels)["feature"]: v for (name, labels), v in scraped.items() if name == "model_monitor_feature_psi"}
    # Contract, PSI_BINS=2: edge = median of the reference x (1..4) = 2.5; window 1's x (3, 4, 5) all above it.
    p, q = np.array([0.5, 0.5]), np.maximum(np.array([0.0, 1.0]), 0.0001)
    assert psi["x"] == pytest.approx(float(np.sum((q - p) * np.log(q / p))), abs=1e-12)
    assert psi["__prediction__"] == 0.0  # class 1 only, as in the reference
    assert set(psi) == {"x", "__prediction__"}  # no scores sent: no __score__


def test_alerts_sent_and_firing(scraped):
    # Final windows (no grace): window 0 at 2/3 is below the objective and becomes the baseline;
    # window 1 at 1/2 drops 17 points below it. Three values of x cannot prove a drift.
    sent = {labels: v for (name, labels), v in scraped.items() if name == "model_monitor_alerts_sent_total"}
    assert sent == {(("status", "firing"), ("type", "accuracy_below_threshold")): 1,
                    (("status", "firing"), ("type", "accuracy_drop")): 1}
    assert scraped[("model_monitor_alerts_firing", (*VERSION, ("type", "accuracy_drop")))] == 1
    assert scraped[("model_monitor_alerts_firing", (*VERSION, ("type", "feature_drift")))] == 0


def test_latency_histogram_counts_every_message_of_the_batch(scraped):
    le = {dict(labels)["le"]: v for (name, labels), v in scraped.items()
          if name == "model_monitor_processing_latency_seconds_bucket"}
    assert (le["10.0"], le["30.0"], le["+Inf"]) == (0, 20, 20)
    assert scraped[("model_monitor_processing_latency_seconds_count", ())] == 20
    assert 20 * MESSAGE_AGE_S <= scraped[("model_monitor_processing_latency_seconds_sum", ())] < 20 * 30
    assert scraped[("model_monitor_batch_size_messages_count", ())] == 1
    assert scraped[("model_monitor_batch_size_messages_sum", ())] == 20
    assert scraped[("model_monitor_batch_duration_seconds_count", ())] == 1


def test_sink_figures(scraped):
    written = {dict(labels)["table"]: v for (name, labels), v in scraped.items()
               if name == "model_monitor_sink_rows_written_total"}
    assert (written["predictions"], written["labels"], written["outcomes"], written["alerts"]) == (8, 7, 5, 2)
    assert scraped[("model_monitor_sink_rows_pending", ())] == 0
    assert scraped[("model_monitor_sink_outage_seconds", ())] == 0
    assert scraped[("model_monitor_sink_failures_total", ())] == 0
    assert math.isfinite(scraped[("process_resident_memory_bytes", ())])


if __name__ == "__main__":
    sys.stdout.write(asyncio.run(_scenario()))


def test_estimated_accuracy_of_the_newest_window_with_an_estimate(scraped):
    key = (("model", "m"), ("model_version", "v1"))
    assert [scraped[("model_monitor_estimated_accuracy_ratio", (("bound", b), *key))]
            for b in ("estimate", "low", "high")] == [0.8, 0.7, 0.9]


def test_label_health_of_the_newest_closed_window(scraped):
    # Window 1: p5, p6, p7 predicted; p5 and p6 labeled 9 s after their predictions.
    assert scraped[("model_monitor_label_coverage_ratio", VERSION)] == 2 / 3
    assert scraped[("model_monitor_label_delay_p90_seconds", VERSION)] == 9.0
