"""The full worker on a backlog of >= 1M events beside a do-nothing Faust agent, and its memory.

(c) Throughput. The `stable` scenario (>= ``--events`` events) is produced once; then, each
    round, raw confluent-kafka consumption, the stock do-nothing Faust agent
    (benchmarks/noop_app.py) and the full worker read it from the beginning, each with a
    fresh consumer group (the worker also with a fresh store). Rate = events / (last event
    handled - first event handled), as in bench_worker; for the worker also events / (first
    event handled -> every figure written), i.e. until /status shows every message refreshed
    and each watermark at its last event. A worker run counts only when it read exactly what
    was produced, rejected nothing, and its window_metrics (read through /query) equal an
    independent count of the events (tests/expected.py): predictions, labeled, correct.
(e) Memory. Peak RSS (VmHWM of the worker process, which holds the embedded ClickHouse
    too) during each backlog run. Then ``--pending`` distinct predictions that are never
    labeled (the degradation events of bench_state, JOIN_TTL_SECONDS of a year so that the
    join holds them all) are read by a fresh worker, while (pending, VmRSS) is sampled four
    times a second. Bytes per pending request = (RSS with them all pending - RSS baseline)
    / pending, with two baselines: the same worker's RSS when 100,000 (a tenth) were pending
    (same run, same state of buffers and store, so the difference is what holding more
    requests costs: the marginal figure), and its RSS once started, before its first batch
    (everything the worker grew by, charged to the pending requests: an upper bound).
    Beside them bench_state's in-process figure for the join state alone, same events file.

    .venv/bin/python -m benchmarks.bench_backlog --events 1000000 --runs 3 --pending 1000000
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks import bench_state
from benchmarks.common import (
    BENCHMARKS_MD,
    commit,
    faust_process,
    fresh_topics,
    load_average,
    local_broker,
    log,
    machine,
    now_utc,
    proc_memory,
    produce_messages,
    produce_scenario,
    raw_rate,
    read_rate,
    wait_read,
    worker_query,
    write_section,
)
from benchmarks.markdown import markdown_table
from benchmarks.stats import spread
from producers.replay import layout_of, row_events
from producers.scenarios import generate
from sinks.http_front import start_front
from streams.settings import load_settings
from tests import expected
from tests.worker_harness import WorkerRun

EVENTS_PER_ROW = 1.95  # the stable scenario: ~1.96 events per row (labels, duplicates, unlabeled rows)
YEAR_S = 366 * 86400
BASELINE_PENDING = 100_000
SMOOTH = 9  # RSS samples whose median stands for one point (RSS moves with each batch)
MB = 1e6
Windows = dict[tuple[str, str, int], tuple[int, int, int]]


def expected_windows(rows: list[dict[str, Any]]) -> Windows:
    """(predictions, labeled, correct) per window, counted from the events without the worker's code."""
    layout = layout_of(rows[0])
    predictions, labels = [], []
    for row in rows:
        prediction, truth = row_events(row, layout)
        predictions.append(prediction)
        if truth is not None:
            labels.append(truth)
    defaults = load_settings({})
    figures = expected.figures(predictions, labels, window_seconds=defaults.window_seconds,
                               ttl_seconds=defaults.join_ttl_seconds)
    return {key: (w.predictions, w.labeled, w.correct) for key, w in figures.items()}


def worker_windows(run: WorkerRun) -> Windows:
    rows = worker_query(run, "SELECT model, model_version, toUnixTimestamp64Milli(window_start), predictions, "
                             "labeled, correct FROM monitoring.window_metrics FINAL")
    return {(m, v, int(w)): (int(p), int(lab), int(c)) for m, v, w, p, lab, c in rows}


def check_worker(run: WorkerRun, status: dict[str, Any], total: int, want: Windows) -> str:
    """The run is of a correct worker: everything read once, nothing rejected, figures exact."""
    counters = status["counters"]
    problems = []
    if counters["messages"] != total:
        problems.append(f"read {counters['messages']:,} of {total:,}")
    if counters["rejected"]:
        problems.append(f"{counters['rejected']} rejected")
    got = worker_windows(run)
    if got != want:
        wrong = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
        problems.append(f"{len(wrong)} windows differ, e.g. {wrong[0]}: worker {got.get(wrong[0])}, "
                        f"expected {want.get(wrong[0])}")
    if problems:
        raise RuntimeError("worker run is not exact: " + "; ".join(problems))
    return (f"read {counters['messages']:,} = produced, rejected 0, {len(got)} windows equal to the "
            f"independent count ({sum(p for p, _, _ in got.values()):,} predictions, "
            f"{sum(lab for _, lab, _ in got.values()):,} labeled, {sum(c for _, _, c in got.values()):,} correct)")


def throughput(broker_bootstrap: str, data: Path, events: int, runs: int, raw: bool) -> dict[str, Any]:
    """(c): the same backlog read by each consumer in turn, ``runs`` rounds."""
    rows = generate("stable", rows=math.ceil(events / EVENTS_PER_ROW)).rows
    topics, settings = fresh_topics(broker_bootstrap, "backlog")
    started = time.monotonic()
    total = produce_scenario(settings, rows).events
    log(f"backlog: {total:,} events produced in {time.monotonic() - started:.0f} s")
    if total < events:
        raise RuntimeError(f"the backlog has {total:,} events, fewer than --events {events:,}")
    want = expected_windows(rows)
    del rows
    out: dict[str, Any] = {"events": total, "rates": {"raw": [], "noop": [], "worker": [], "worker-settled": []},
                           "hwm": {"noop": [], "worker": []}, "load": [], "check": ""}
    rates, hwm = out["rates"], out["hwm"]
    for i in range(runs):
        load_before = load_average()
        if raw:
            rates["raw"].append(raw_rate(broker_bootstrap, list(settings.input_topics), total))
        with faust_process("benchmarks.noop_app", broker_bootstrap, topics, data / f"noop-{i}") as run:
            rates["noop"].append(read_rate(wait_read(run, total, f"round {i + 1} do-nothing agent")))
            hwm["noop"].append(proc_memory(run.process.pid)["VmHWM"])
        with faust_process("streams.app", broker_bootstrap, topics, data / f"worker-{i}") as run:
            status = wait_read(run, total, f"round {i + 1} worker")
            rates["worker"].append(read_rate(status))
            status = run.wait_until_settled(total, timeout=600)
            rates["worker-settled"].append(total / (time.time() - status["first_message_at"]))
            hwm["worker"].append(proc_memory(run.process.pid)["VmHWM"])
            out["check"] = check_worker(run, status, total, want)
        out["load"].append(f"{load_before} -> {load_average()}")
        log(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in rates.items() if v)
            + f"; worker peak RSS {hwm['worker'][-1] / MB:,.0f} MB; load {out['load'][-1]}")
    return out


def pending_memory(broker_bootstrap: str, data: Path, pending: int, front: bool = False) -> dict[str, Any]:
    """(e): the worker's RSS against the number of predictions its join holds, one run; with
    ``front``, ClickHouse runs in a process of its own (sinks/http_front.py), so the worker's RSS
    holds no engine and the engine's is measured apart."""
    path = data / "pending.jsonl"
    if not path.exists():
        bench_state.write_events(path, pending)
    topics, settings = fresh_topics(broker_bootstrap, "pending")
    with path.open("rb") as lines:
        messages = [(settings.topic_predictions, orjson.loads(line)["request_id"].encode(), line.rstrip(b"\n"))
                    for line in lines]
    produce_messages(broker_bootstrap, messages, progress="pending predictions")
    del messages
    samples: list[tuple[int, int]] = []  # (pending, VmRSS)
    store_samples: list[tuple[int, int]] = []  # (pending, VmRSS of the ClickHouse process)
    server = start_front(data / f"pending-store-{uuid.uuid4().hex[:6]}") if front else None
    extra = {"CLICKHOUSE_URL": server.url} if server else {}
    try:
        with faust_process("streams.app", broker_bootstrap, topics, data / f"pending-{'front' if front else 'embedded'}",
                           JOIN_TTL_SECONDS=YEAR_S, MONITOR_IDLE_SECONDS=1, **extra) as run:
            while not (run.status() or {}).get("started"):
                time.sleep(0.05)
            started = proc_memory(run.process.pid)["VmRSS"]

            def sample(status: dict[str, Any]) -> None:
                samples.append((status["pending_predictions"], proc_memory(run.process.pid)["VmRSS"]))
                if server:
                    store_samples.append((status["pending_predictions"], proc_memory(server.process.pid)["VmRSS"]))

            wait_read(run, pending, "pending run" + (" (ClickHouse apart)" if front else ""), sample=sample)
            status = run.wait_until_settled(pending, timeout=600)
            time.sleep(2.0)
            status = run.status() or status
            memory = proc_memory(run.process.pid)
    finally:
        if server:
            server.stop()
    if status["pending_predictions"] != pending or status["counters"]["rejected"]:
        raise RuntimeError(f"the join holds {status['pending_predictions']:,} of {pending:,} ({status['counters']})")
    floor = min(BASELINE_PENDING, pending // 10)
    usable = [s for s in samples if s[0] >= floor]
    base = (usable[0][0], int(statistics.median(r for _, r in usable[:SMOOTH])))
    last = (usable[-1][0], int(statistics.median(r for _, r in usable[-SMOOTH:])))
    return {"pending": pending, "started": started, "end": memory["VmRSS"], "peak": memory["VmHWM"],
            "base": base, "last": last, "slope": rss_slope(samples, floor), "floor": floor, "samples": len(samples),
            "store_slope": rss_slope(store_samples, floor) if front else None, "load": load_average(),
            "in_process": None if front else bench_state._run_child("new", "rss", path)["bytes_per_pending"]}


def rss_slope(samples: list[tuple[int, int]], floor: int) -> float:
    """Bytes per pending request: least-squares slope of RSS over pending, from ``floor`` pending on."""
    usable = [s for s in samples if s[0] >= floor]
    return float(np.polyfit([p for p, _ in usable], [r for _, r in usable], 1)[0]) if len(usable) > 2 else math.nan


def header(args: argparse.Namespace, seconds: float) -> list[str]:
    return [f"Measured {now_utc()} by `{args.command}` ({seconds / 60:.0f} min for this part), commit {commit()}.",
            f"Machine: {machine()}.", ""]


def report_backlog(backlog: dict[str, Any]) -> list[str]:
    rates, hwm = backlog["rates"], backlog["hwm"]
    floor = statistics.median(rates["noop"])
    rows = []
    for key, label in (("raw", "raw confluent-kafka consume + orjson (events/s)"),
                       ("noop", "do-nothing Faust agent, stock Faust (events/s)"),
                       ("worker", "**full worker**, first to last event handled (events/s)"),
                       ("worker-settled", "full worker, first event to every figure written (events/s)")):
        if rates[key]:
            rows.append([label, *spread(rates[key]), f"{statistics.median(rates[key]) / floor:.2f}"])
    for key, label in (("noop", "peak RSS (VmHWM), do-nothing agent (MB)"),
                       ("worker", "peak RSS (VmHWM), full worker with its embedded ClickHouse (MB)")):
        rows.append([label, *spread([v / MB for v in hwm[key]]), ""])
    return [f"**(c) backlog of {backlog['events']:,} events** (`stable` scenario, 4 partitions per input topic), "
            f"{len(rates['noop'])} rounds; each consumer reads the whole backlog from the beginning with a fresh "
            "group (and store).", "",
            markdown_table(["", "min", "median", "max", "median ratio to the Faust floor"], rows), "",
            f"Every worker run: {backlog['check']}.",
            f"Load average (1/5/15 min) before -> after each round: {'; '.join(backlog['load'])}."]


def report_memory(memory: dict[str, Any], apart: dict[str, Any] | None = None) -> list[str]:
    n = memory["pending"]
    (base_n, base_rss), (last_n, last_rss) = memory["base"], memory["last"]
    rows = [
        ["RSS once started, before the first batch (MB)", f"{memory['started'] / MB:,.0f}"],
        [f"RSS with {base_n:,} pending, while reading (median of {SMOOTH} samples) (MB)", f"{base_rss / MB:,.0f}"],
        [f"RSS with {last_n:,} pending, while reading (median of the last {SMOOTH} samples) (MB)",
         f"{last_rss / MB:,.0f}"],
        [f"RSS with {n:,} pending, settled (MB)", f"{memory['end'] / MB:,.0f}"],
        ["peak RSS, VmHWM (MB)", f"{memory['peak'] / MB:,.0f}"],
        [f"**bytes per pending request**: least-squares slope of RSS over pending, {memory['floor']:,} to {n:,} "
         f"({memory['samples']} samples)", f"**{memory['slope']:,.0f}**"],
        [f"the same from two points: (RSS at {last_n:,} - RSS at {base_n:,}) / {last_n - base_n:,}",
         f"{(last_rss - base_rss) / (last_n - base_n):,.0f}"],
        [f"upper bound: (RSS settled - RSS once started) / {n:,}", f"{(memory['end'] - memory['started']) / n:,.0f}"],
        ["the join state alone in a bare process (bench_state, RSS delta / n, same events file)",
         f"{memory['in_process']:,.0f}"],
    ]
    if apart:
        rows += [
            ["the same worker with ClickHouse in a process of its own (`sinks/http_front.py`): bytes per pending "
             "request of the worker process (slope)", f"**{apart['slope']:,.0f}**"],
            ["  and of the ClickHouse process, per stored prediction (slope)", f"{apart['store_slope']:,.0f}"],
            ["  peak RSS of that worker, VmHWM (MB)", f"{apart['peak'] / MB:,.0f}"],
        ]
    return [f"**(e) {n:,} pending predictions** (distinct `degradation` predictions, never labeled, "
            "JOIN_TTL_SECONDS of a year), read by a fresh worker; its VmRSS and /status sampled four times a "
            "second:", "", markdown_table(["", "value"], rows), "", f"Load average at the end: {memory['load']}."]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="at least this many backlog events")
    parser.add_argument("--runs", type=int, default=3, help="rounds of the throughput part")
    parser.add_argument("--pending", type=int, default=1_000_000, help="pending predictions (0: skip (e))")
    parser.add_argument("--no-raw", action="store_true", help="skip raw confluent-kafka consumption")
    parser.add_argument("--write", nargs="?", const=BENCHMARKS_MD, type=Path, metavar="FILE",
                        help="update the bench-backlog and bench-memory sections of BENCHMARKS.md (or FILE)")
    args = parser.parse_args(argv)
    args.command = "python -m benchmarks.bench_backlog " + " ".join(argv if argv is not None else sys.argv[1:])
    sections: dict[str, str] = {}
    with local_broker("bench-backlog-") as (broker, data):
        if args.runs:
            started = time.monotonic()
            backlog = throughput(broker.bootstrap, data, args.events, args.runs, not args.no_raw)
            sections["bench-backlog"] = "\n".join(header(args, time.monotonic() - started) + report_backlog(backlog))
        if args.pending:
            started = time.monotonic()
            memory = pending_memory(broker.bootstrap, data, args.pending)
            apart = pending_memory(broker.bootstrap, data, args.pending, front=True)
            sections["bench-memory"] = "\n".join(header(args, time.monotonic() - started) + report_memory(memory, apart))
    for name, text in sections.items():
        print(text + "\n")
        if args.write:
            write_section(name, text, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
