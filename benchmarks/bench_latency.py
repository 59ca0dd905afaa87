"""Latency at a fraction of the worker's maximum rate: label -> window row, label -> alert.

1. Maximum rate, in the same run: a fresh worker reads a backlog of ``--max-events`` events
   of the very shape used below; rate = events / (last - first event handled).
2. For each fraction of it (``--fractions``: a half, a quarter, a tenth), events are
   produced in real time by a paced producer in this process (event timestamps = the
   moment each is produced; plan in benchmarks/latency_plan.py; ``--linger-ms`` 20 as the
   project's replay producer) three times, each time to a fresh broker:
   - the baseline: the stock do-nothing Faust agent (benchmarks/noop_app.py), produce ->
     received, every event: what the broker, the client and Faust cost at this rate;
   - the same agent on the worker's transport (streams/transport.py): the floor of the path;
   - the full worker (fresh group and store).
Measurements (one clock, ``time.time()`` on this host; samples from labels produced after
the first ``--warmup`` seconds):
- label -> window row: for the k-th label (in produce order) counted in a window of a
  version, the first version of that window's window_metrics row with ``labeled >= k``;
  `seen` = when a poll of the worker's /query (every ``--poll`` s, rows with a newer
  `updated_at`, without FINAL so that every version is seen) first returned it (upper
  bound, within one poll), `computed` = its `updated_at` (lower bound: just before the
  insert). Latency = that time - the label's produce call.
- label -> joined: `outcomes.joined_at` (the start of the batch that joined it and fed
  ADWIN) - its produce call, for every label.
- label -> alert: ADWIN and the AlertBook replay each version's produced label sequence
  offline (latency_plan.expected_alerts); the label whose update raises the alert is the
  one that made it due. Latency = when this process's consumer of the alerts topic
  received the alert with that alert_id - that label's produce call; split at the alert's
  `detected_at` (the start of the batch holding that label).
Checks, reported: every window row equals the produced counts; every expected alert arrived
with ADWIN's exact value and width and no other; period boundaries kept by the join.

    .venv/bin/python -m benchmarks.bench_latency --write
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import sys
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from benchmarks.common import (
    BENCHMARKS_MD,
    commit,
    cpu_seconds,
    faust_process,
    fresh_topics,
    host_cpu,
    load_average,
    local_broker,
    log,
    machine,
    now_utc,
    produce_messages,
    read_rate,
    wait_read,
    wait_up,
    worker_query,
    write_section,
)
from benchmarks.latency_plan import (
    MODEL,
    Encoder,
    Key,
    Plan,
    Schedule,
    build_schedule,
    expected_alerts,
    phase_order,
    prediction_index,
    refreshes,
    row_latencies,
)
from benchmarks.markdown import markdown_table
from benchmarks.stats import percentile
from producers.replay import PRODUCER_CONFIG
from streams.monitor import REFRESH_INTERVAL_S, REFRESH_SHARE
from streams.settings import load_settings
from streams.transport import FETCH_MAX_WAIT_MS, FETCH_MIN_BYTES, SCHEME
from tests.worker_harness import WorkerRun
from tools.broker import Broker

ROOT = Path(__file__).resolve().parents[1]
# The paced producer lingers as long as the project's own replay producer (20 ms; counted in every
# latency). Not librdkafka's 5 ms: the local broker (Tansu 0.6, memory storage) lists every batch a
# partition has ever stored on every fetch (tansu-storage/src/dynostore.rs, `fn fetch`), so its cost
# per fetch grows with the number of batches, and 5 ms gives ~200 batches/s per partition. A Kafka
# broker finds an offset through its index. Reading (f) in BENCHMARKS.md has both.
LATENCY_PRODUCER = {"acks": "all", "linger.ms": PRODUCER_CONFIG["linger.ms"], "enable.idempotence": False}


def module_constant(path: Path, name: str) -> Any:
    """A module-level constant read from the source (importing streams.app would build the app)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise LookupError(f"{name} not found in {path}")


class CpuMeter:
    """CPU used by the processes that matter, and by the whole host, between start and stop."""

    def __init__(self, pids: dict[str, int | str]) -> None:
        self.pids = pids
        self.started = time.monotonic()
        self.before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self.host_before = host_cpu()

    def stop(self) -> dict[str, float]:
        """Share of one CPU per process, and `host` = busy share of all CPUs."""
        wall = time.monotonic() - self.started
        out = {name: (cpu_seconds(pid) - self.before[name]) / wall for name, pid in self.pids.items()}
        busy, total = host_cpu()
        out["host"] = (busy - self.host_before[0]) / (total - self.host_before[1])
        return out


# -- watchers (threads of this process while the producer runs) -------------------------------------

class Observed:
    """What the watcher threads saw while the producer ran."""

    def __init__(self) -> None:
        self.alerts: list[tuple[float, dict[str, Any]]] = []
        self.rows: dict[tuple[Key, float], tuple[float, int]] = {}  # (key, computed at) -> (first seen, labeled)
        self.polls = 0
        self.poll_seconds = 0.0
        self.produced = 0  # events handed to the producer so far
        self.behind: list[tuple[float, int]] = []  # (time, produced - read by the consumer)


def watch_alerts(bootstrap: str, topic: str, stop: threading.Event, ready: threading.Event, seen: Observed) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "enable.auto.commit": False,
                         "fetch.wait.max.ms": 10, "fetch.min.bytes": 1})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    consumer.poll(0.5)
    ready.set()
    while not stop.is_set():
        message = consumer.poll(0.05)
        if message is not None and not message.error():
            seen.alerts.append((time.time(), json.loads(message.value())))
    consumer.close()


def watch_rows(run: WorkerRun, every: float, stop: threading.Event, seen: Observed) -> None:
    newest = 0
    while not stop.is_set():
        started = time.time()
        rows = worker_query(run, "SELECT model_version, toUnixTimestamp64Milli(window_start), labeled, "
                                 "toUnixTimestamp64Micro(updated_at) FROM monitoring.window_metrics "
                                 f"WHERE model = '{MODEL}' AND updated_at > fromUnixTimestamp64Micro(toInt64({newest}))")
        now = time.time()
        seen.polls += 1
        seen.poll_seconds += now - started
        for version, window, labeled, updated in rows:
            seen.rows.setdefault(((version, int(window)), int(updated) / 1e6), (now, int(labeled)))
            newest = max(newest, int(updated))
        stop.wait(max(0.0, every - (time.time() - started)))


def watch_status(run: WorkerRun, stop: threading.Event, seen: Observed) -> None:
    """How far behind the producer the consumer is, four times a second."""
    while not stop.wait(0.25):
        produced = seen.produced
        status = run.status()
        if status:
            seen.behind.append((time.time(), produced - status["counters"]["messages"]))


def produce_paced(bootstrap: str, topics: tuple[str, str], schedule: Schedule, encoder: Encoder, period: float,
                  seen: Observed, linger_ms: float) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Every event when due, from the next epoch multiple of ``period`` (so that windows that are a
    multiple of it start on a period boundary); returns (prediction ts ms, label produce times,
    lateness of each event)."""
    producer = Producer({**LATENCY_PRODUCER, "linger.ms": linger_ms, "bootstrap.servers": bootstrap})
    due, order = schedule.order()
    n = len(schedule.pred_at)
    pred_ts = np.zeros(n, dtype=np.int64)
    label_sent = np.zeros(len(schedule.label_at))
    late: list[float] = []
    start = math.ceil((time.time() + 0.5) / period) * period
    next_report = start + 30
    i = 0
    while i < len(order):
        now = time.time()
        while i < len(order) and start + due[i] <= now:
            event = int(order[i])
            now = time.time()
            ms = int(now * 1000)
            if event < n:
                pred_ts[event] = ms
                producer.produce(topics[0], *reversed(encoder.prediction(event, ms)))
            else:
                label_sent[event - n] = now
                producer.produce(topics[1], *reversed(encoder.label(event - n, ms)))
            late.append(now - start - due[i])
            i += 1
            seen.produced = i
        producer.poll(0)
        if now > next_report:
            next_report = now + 30
            behind = seen.behind[-1][1] if seen.behind else 0
            log(f"paced producer: {i:,} of {len(order):,} events, {now - start:.0f} s; consumer {behind:,} behind; "
                f"load {load_average()}")
        if i < len(order):
            time.sleep(min(max(start + due[i] - time.time(), 0.0), 0.005))
    if producer.flush(60):
        raise RuntimeError("the paced producer could not deliver everything")
    return pred_ts, label_sent, late


# -- runs ---------------------------------------------------------------------------------------------

def max_rate(bootstrap: str, data: Path, events: int, env: dict[str, Any], plan: Plan) -> float:
    """The worker's rate on a backlog of the same kind of events (timestamps in the recent past)."""
    plan = replace(plan, rate=5000, seconds=events / 5000, seed=6)
    schedule = build_schedule(plan)
    encoder = Encoder(schedule, "max")
    topics, settings = fresh_topics(bootstrap, "max-rate")
    base_ms = int(time.time() * 1000) - int((plan.seconds + plan.delay_max + 60) * 1000)
    due, order = schedule.order()
    n = len(schedule.pred_at)
    messages = []
    for t, event in zip(due.tolist(), order.tolist(), strict=True):
        ms = base_ms + int(t * 1000)
        if event < n:
            messages.append((settings.topic_predictions, *encoder.prediction(event, ms)))
        else:
            messages.append((settings.topic_ground_truth, *encoder.label(event - n, ms)))
    produce_messages(bootstrap, messages)
    with faust_process("streams.app", bootstrap, topics, data / "max-rate", **env) as run:
        rate = read_rate(wait_read(run, len(messages), "maximum-rate worker"))
    log(f"maximum rate on a backlog of {len(messages):,} events: {rate:,.0f} events/s (load {load_average()})")
    return rate


def live(broker: Broker, data: Path, plan: Plan, env: dict[str, Any], poll: float, warmup: float,
         worker: bool, linger_ms: float, transport: str = "kafka") -> dict[str, Any]:
    """Feed a fresh consumer (the worker, or the do-nothing agent on Faust's ``transport``) at
    ``plan.rate`` in real time."""
    schedule = build_schedule(plan)
    encoder = Encoder(schedule, "lat")
    topics, settings = fresh_topics(broker.bootstrap, "latency")
    seen = Observed()
    stop, ready = threading.Event(), threading.Event()
    name = "worker" if worker else f"do-nothing agent ({transport}://)"
    module, extra = ("streams.app", env) if worker else ("benchmarks.noop_app",
                                                          {"NOOP_LATENCY": 1, "NOOP_TRANSPORT": transport})
    workdir = data / f"{'worker' if worker else 'agent-' + transport}-{plan.rate:.0f}"
    with faust_process(module, broker.bootstrap, topics, workdir, **extra) as run:
        wait_up(run)
        threads = [threading.Thread(target=watch_status, args=(run, stop, seen))]
        if worker:
            threads += [threading.Thread(target=watch_alerts, args=(broker.bootstrap, settings.topic_alerts, stop,
                                                                    ready, seen)),
                        threading.Thread(target=watch_rows, args=(run, poll, stop, seen))]
        else:
            ready.set()
        for thread in threads:
            thread.start()
        ready.wait(30)
        log(f"{name}: producing {schedule.events:,} events at {plan.rate:,.0f}/s for {plan.seconds:.0f} s")
        meter = CpuMeter({"consumer": run.process.pid, "broker": broker.pid, "bench": "self"})
        load_before = load_average()
        pred_ts, label_sent, late = produce_paced(broker.bootstrap, settings.input_topics, schedule, encoder,
                                                  plan.period_s, seen, linger_ms)
        cpu = meter.stop()
        out = {"schedule": schedule, "pred_ts": pred_ts, "label_sent": label_sent, "late": late, "seen": seen,
               "cpu": cpu, "load": (load_before, load_average()), "produced_until": time.time()}
        if worker:
            status = run.wait_until_settled(schedule.events, timeout=300)
            time.sleep(max(3 * poll, 1.5))
        else:
            status = wait_read(run, schedule.events, name, timeout=300)
        stop.set()
        for thread in threads:
            thread.join(30)
        out["status"] = status
        if worker:
            out["final"] = worker_query(run, "SELECT model_version, toUnixTimestamp64Milli(window_start), "
                                             "predictions, labeled, correct FROM monitoring.window_metrics FINAL "
                                             f"WHERE model = '{MODEL}'")
            out["phases"] = worker_query(run, "SELECT model_version, toInt64(splitByChar('-', request_id)[3]) AS p, "
                                              "toUnixTimestamp64Micro(min(joined_at)), "
                                              "toUnixTimestamp64Micro(max(joined_at)) FROM monitoring.outcomes FINAL "
                                              f"WHERE model = '{MODEL}' GROUP BY model_version, p")
            out["joined"] = worker_query(run, "SELECT request_id, toUnixTimestamp64Micro(joined_at) FROM "
                                              f"monitoring.outcomes FINAL WHERE model = '{MODEL}'", timeout=300)
        else:
            since = float(label_sent.min()) + warmup
            url = f"http://127.0.0.1:{run.env['MONITOR_WEB_PORT']}/latency?since={since}"
            with urllib.request.urlopen(url, timeout=60) as response:
                out["floor"] = json.loads(response.read())
            out["behind"] = [n for t, n in seen.behind if since <= t <= out["produced_until"]]
            log(f"{name} at {plan.rate:,.0f}/s: produce -> received p99 "
                f"{out['floor'].get('p99', 0) * 1000:,.0f} ms")
    return out


# -- analysis -------------------------------------------------------------------------------------

def iso_ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def analyse(result: dict[str, Any], window_seconds: int, warmup: float) -> dict[str, Any]:
    s: Schedule = result["schedule"]
    pred_ts, label_sent, seen = result["pred_ts"], result["label_sent"], result["seen"]
    size = window_seconds * 1000
    versions = [f"v{v + 1}" for v in s.version.tolist()]
    label_of = {int(i): j for j, i in enumerate(s.label_pred.tolist())}
    since = float(label_sent.min()) + warmup
    produced: dict[Key, list[int]] = defaultdict(lambda: [0, 0, 0])
    for i, ts in enumerate(pred_ts.tolist()):
        produced[(versions[i], ts // size * size)][0] += 1
    label_times: dict[Key, list[float]] = defaultdict(list)
    per_version: dict[str, list[tuple[bool, int, int, str]]] = defaultdict(list)  # (wrong, join ts, label, id)
    rids = Encoder(s, "lat").ids
    for j, i in enumerate(s.label_pred.tolist()):
        key = (versions[i], int(pred_ts[i]) // size * size)
        produced[key][1] += 1
        produced[key][2] += not s.label_wrong[j]
        label_times[key].append(float(label_sent[j]))
        join_ms = max(int(pred_ts[i]), int(label_sent[j] * 1000))
        per_version[versions[i]].append((bool(s.label_wrong[j]), join_ms, j, rids[i]))
    got = {(v, int(w)): [int(p), int(lab), int(c)] for v, w, p, lab, c in result["final"]}
    wrong_windows = sorted(k for k in set(got) | set(produced) if got.get(k) != produced.get(k))

    versions_seen: dict[Key, list[tuple[float, float, int]]] = defaultdict(list)
    for (key, computed), (first_seen, labeled) in seen.rows.items():
        versions_seen[key].append((computed, first_seen, labeled))
    row_seen, row_computed, row_missing = row_latencies(label_times, versions_seen, since)
    intervals, spans = refreshes([c for (_, c) in seen.rows if since <= c <= result["produced_until"]])
    joined = [at / 1e6 - label_sent[j] for rid, at in result["joined"]
              if (j := label_of.get(prediction_index(rid))) is not None and label_sent[j] >= since]

    delta = load_settings({}).adwin_delta
    received = {a["alert_id"]: (t, a) for t, a in seen.alerts if a["type"] == "error_rate_drift"}
    expected, to_alert, to_batch, batch_to_alert, mismatched = 0, [], [], [], []
    for version, outcomes in per_version.items():
        for index, alert in expected_alerts(version, [(w, ts, rid) for w, ts, _, rid in outcomes], window_seconds, delta):
            expected += 1
            trigger = float(label_sent[outcomes[index][2]])
            arrived = received.pop(alert.alert_id, None)
            if arrived is None:
                mismatched.append(f"{version} {alert.status} after label {index}: not received")
                continue
            at, body = arrived
            if (body["value"], body["evidence"]["adwin_width"]) != (alert.value, alert.evidence["adwin_width"]):
                mismatched.append(f"{version} {alert.status}: value/width {body['value']}/"
                                  f"{body['evidence']['adwin_width']}, expected {alert.value}/"
                                  f"{alert.evidence['adwin_width']}")
                continue
            if trigger >= since:
                detected = iso_ms(body["detected_at"]) / 1000
                to_alert.append(at - trigger)
                to_batch.append(detected - trigger)
                batch_to_alert.append(at - detected)
    reversed_, shared = phase_order([(v, int(p), int(a), int(b)) for v, p, a, b in result["phases"]])
    return {"refresh_intervals": intervals, "refresh_spans": spans, "row_seen": row_seen, "row_computed": row_computed, "row_missing": row_missing, "joined": joined,
            "to_alert": to_alert, "to_batch": to_batch, "batch_to_alert": batch_to_alert, "alerts_expected": expected,
            "alerts_unexpected": len(received), "alerts_mismatched": mismatched, "wrong_windows": wrong_windows,
            "windows": len(produced), "reversed": reversed_, "shared": shared, "since": since,
            "behind": [n for t, n in seen.behind if since <= t <= result["produced_until"]]}


# -- report ---------------------------------------------------------------------------------------

def ms_cells(values: list[float]) -> list[str]:
    if not values:
        return ["0", "-", "-", "-", "-"]
    return [f"{len(values):,}", *(f"{percentile(values, p) * 1000:,.0f}" for p in (50, 95, 99)),
            f"{max(values) * 1000:,.0f}"]


def floor_cells(floor: dict[str, Any]) -> list[str]:
    if not floor.get("n"):
        return ["0", "-", "-", "-", "-"]
    return [f"{floor['n']:,}", *(f"{floor[k] * 1000:,.0f}" for k in ("p50", "p95", "p99", "max"))]


def cpu_line(cpu: dict[str, float], consumer: str) -> str:
    return (f"{consumer} {cpu['consumer']:.0%}, broker {cpu['broker']:.0%}, this process (producer, watchers) "
            f"{cpu['bench']:.0%} of one CPU; host {cpu['host']:.0%} busy")


def report_rate(fraction: float | None, plan: Plan, floor: dict[str, Any], ours: dict[str, Any],
                result: dict[str, Any], figures: dict[str, Any], args: argparse.Namespace) -> str:
    rows = [
        ["baseline: event produced -> received by the do-nothing Faust agent", *floor_cells(floor["floor"])],
        ["the same agent on the worker's transport (`streams/transport.py`: fetches of "
         f"{FETCH_MIN_BYTES // 1024} KiB or {FETCH_MAX_WAIT_MS} ms)", *floor_cells(ours["floor"])],
        ["label -> joined and fed to ADWIN (start of its batch, `outcomes.joined_at`)", *ms_cells(figures["joined"])],
        ["**label -> alert received** (`error_rate_drift`)", *ms_cells(figures["to_alert"])],
        ["  of which label -> start of the batch holding it (`detected_at`)", *ms_cells(figures["to_batch"])],
        ["  of which batch start -> alert received", *ms_cells(figures["batch_to_alert"])],
        ["label -> window row computed (`updated_at`, lower bound)", *ms_cells(figures["row_computed"])],
        ["label -> window row returned by a /query poll (upper bound)", *ms_cells(figures["row_seen"])],
        ["  interval between two refreshes of the window rows", *ms_cells(figures["refresh_intervals"])],
        ["  time a refresh spends computing rows (first to last `updated_at`, lower bound)",
         *ms_cells(figures["refresh_spans"])],
    ]
    behind = figures["behind"] or [0]
    p99 = percentile(figures["to_alert"], 99) if figures["to_alert"] else float("inf")
    counters = result["status"]["counters"]
    late = result["late"]
    title = f"{fraction:g} x the maximum" if fraction else "given with --rate"
    return "\n".join([
        f"**{plan.rate:,.0f} events/s ({title})** for {plan.seconds:.0f} s: {result['schedule'].events:,} events; "
        f"samples from labels produced after the first {args.warmup:g} s. Paced producer at most "
        f"{max(late) * 1000:,.0f} ms behind schedule (p99 {percentile(late, 99) * 1000:,.0f} ms).", "",
        markdown_table(["latency (ms)", "n", "p50", "p95", "p99", "max"], rows), "",
        f"- Target label -> alert p99 < 1 s: **{'met' if p99 < 1 else 'not met'}** (p99 {p99 * 1000:,.0f} ms of "
        f"{len(figures['to_alert'])} alerts).",
        f"- Events produced but not yet read by the worker (/status, 4 samples/s): p50 {percentile(behind, 50):,}, "
        f"p99 {percentile(behind, 99):,}, max {max(behind):,} (the baseline agent: p99 "
        f"{percentile(floor['behind'] or [0], 99):,}).",
        f"- CPU while producing: worker run: {cpu_line(result['cpu'], 'worker')}; baseline run: "
        f"{cpu_line(floor['cpu'], 'agent')}; agent on the worker's transport: {cpu_line(ours['cpu'], 'agent')}. "
        f"Load average before -> after: {result['load'][0]} -> "
        f"{result['load'][1]} (baseline run {floor['load'][0]} -> {floor['load'][1]}).",
        f"- Checks: {counters['messages']:,} events read = {result['schedule'].events:,} produced, "
        f"{counters['rejected']} rejected; {figures['windows'] - len(figures['wrong_windows'])} of "
        f"{figures['windows']} window rows equal to the produced counts (predictions, labeled, correct); "
        f"{figures['alerts_expected'] - len(figures['alerts_mismatched'])} of {figures['alerts_expected']} expected "
        f"alerts received with ADWIN's exact value and width, {figures['alerts_unexpected']} unexpected"
        + (f" ({'; '.join(figures['alerts_mismatched'][:3])})" if figures["alerts_mismatched"] else "")
        + f"; phase boundaries: {figures['reversed']} joined in reverse batch order, {figures['shared']} in one "
        f"batch; labels never reflected in a row: {figures['row_missing']}; {result['seen'].polls:,} row polls, "
        f"{result['seen'].poll_seconds / max(result['seen'].polls, 1) * 1000:.0f} ms each.",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=150, help="how long predictions are produced, per run")
    parser.add_argument("--fractions", default="0.5,0.25,0.1", help="of the measured maximum rate")
    parser.add_argument("--rate", type=float, help="one input rate in events/s instead (no maximum measured)")
    parser.add_argument("--max-events", type=int, default=150_000, help="backlog for the maximum rate")
    parser.add_argument("--versions", type=int, default=8)
    parser.add_argument("--window-seconds", type=int, default=20, help="a multiple of --period-seconds")
    parser.add_argument("--period-seconds", type=float, default=10, help="right and wrong label periods")
    parser.add_argument("--gap-seconds", type=float, default=2.5, help="no label at the start of a period")
    parser.add_argument("--warmup", type=float, default=30)
    parser.add_argument("--linger-ms", type=float, default=LATENCY_PRODUCER["linger.ms"],
                        help="the paced producer's linger.ms (counted in every latency)")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between two polls of window_metrics")
    parser.add_argument("--write", nargs="?", const=BENCHMARKS_MD, type=Path, metavar="FILE",
                        help="update the bench-latency section of BENCHMARKS.md (or FILE)")
    args = parser.parse_args(argv)
    args.command = "python -m benchmarks.bench_latency " + " ".join(argv if argv is not None else sys.argv[1:])
    started = time.monotonic()
    if args.window_seconds % args.period_seconds:
        parser.error("--window-seconds must be a multiple of --period-seconds")
    env = {"WINDOW_SECONDS": args.window_seconds}
    parts = []
    base = Plan(rate=1, seconds=args.seconds, versions=args.versions, period_s=args.period_seconds,
                gap_s=args.gap_seconds)
    measured = None
    if not args.rate:
        with local_broker("bench-latency-") as (broker, data):
            measured = max_rate(broker.bootstrap, data, args.max_events, env, base)
    runs = [(None, args.rate)] if args.rate else [(f, f * measured) for f in map(float, args.fractions.split(","))]
    for fraction, rate in runs:
        plan = replace(base, rate=rate)
        # A broker of its own for each run: the local broker keeps every topic in memory and its
        # cost per fetch grows with what it holds, so a later run would pay for the earlier ones.
        with local_broker("bench-latency-") as (broker, data):
            floor = live(broker, data, plan, env, args.poll, args.warmup, worker=False, linger_ms=args.linger_ms)
        with local_broker("bench-latency-") as (broker, data):
            ours = live(broker, data, plan, env, args.poll, args.warmup, worker=False, linger_ms=args.linger_ms,
                        transport=SCHEME)
        with local_broker("bench-latency-") as (broker, data):
            result = live(broker, data, plan, env, args.poll, args.warmup, worker=True, linger_ms=args.linger_ms)
        figures = analyse(result, args.window_seconds, args.warmup)
        parts.append(report_rate(fraction, plan, floor, ours, result, figures, args))
        log(parts[-1].splitlines()[0])
    how = (f"maximum measured in this run: **{measured:,.0f} events/s**, a fresh worker reading a backlog of "
           f"{args.max_events:,} events of this shape" if measured else "rate given with --rate")
    text = "\n".join([
        f"Measured {now_utc()} by `{args.command}` ({(time.monotonic() - started) / 60:.0f} min), commit {commit()}.",
        f"Machine: {machine()}.", "",
        f"{how}. {args.versions} model versions of `{MODEL}`, WINDOW_SECONDS={args.window_seconds}, labels "
        f"0.5-2.5 s after their prediction, right/wrong periods of {args.period_seconds:g} s whose first "
        f"{args.gap_seconds:g} s have no label, producer linger.ms {args.linger_ms:g}, a fresh broker "
        f"for each run. Worker settings in force: "
        f"batch linger {module_constant(ROOT / 'streams' / 'app.py', 'BATCH_LINGER_S')} s, refresh every "
        f"{REFRESH_INTERVAL_S} s, at most {REFRESH_SHARE:.0%} of a busy worker's time.", "",
        *("\n\n".join(parts).splitlines()),
    ])
    print(text)
    if args.write:
        write_section("bench-latency", text, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
