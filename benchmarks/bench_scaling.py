"""Scaling: one worker against two workers of one app on the same four partitions.

Both set-ups read the same backlog from the beginning (fresh consumer group) and write
to a fresh ClickHouse engine served over HTTP (sinks/http_front.py: several workers need
one ClickHouse, and the single worker goes through the same front so that only the
number of workers differs). Throughput = events / (last event handled by any worker -
first event handled by any worker). Exactness: after both stopped, the window figures,
drift rows, distinct outcomes and alert ids of the two stores must be equal.

    python -m benchmarks.bench_scaling --events 100000 --runs 3
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect

from benchmarks.common import (
    ROOT,
    commit,
    fresh_topics,
    host_cpu,
    load_average,
    local_broker,
    log,
    machine,
    now_utc,
    produce_scenario,
    scenario_rows,
    summary,
    write_section,
)
from benchmarks.stats import spread
from sinks.http_front import FrontProcess, start_front
from tests.figures_snapshot import QUERIES
from tests.worker_harness import WorkerRun, worker_env

SECTION = "bench-scaling"


@contextlib.contextmanager
def workers(count: int, bootstrap: str, topics: dict[str, str], scratch: Path, tag: str
            ) -> Iterator[tuple[list[WorkerRun], FrontProcess]]:
    """``count`` workers of one fresh app (group) writing to one fresh ClickHouse behind a front."""
    front = start_front(scratch / f"{tag}-clickhouse")
    runs = []
    for i in range(count):
        workdir = scratch / f"{tag}-worker-{i}"
        workdir.mkdir()
        env = worker_env(bootstrap, topics, workdir, CLICKHOUSE_URL=front.url, MONITOR_APP_ID=f"scaling-{tag}",
                         MONITOR_IDLE_SECONDS=2)
        runs.append(WorkerRun({**env, "PYTHONPATH": str(ROOT)}, workdir))
    try:
        for run in runs:
            run.start()
        yield runs, front
    finally:
        for run in runs:
            if run.process is not None and run.process.poll() is None:
                run.stop(timeout=300)
        front.stop()


def read_all(runs: list[WorkerRun], expected: int, label: str, timeout: float = 1800.0) -> list[dict[str, Any]]:
    """Until the workers together have handled every event and each has drained its partitions."""
    deadline, last_report = time.monotonic() + timeout, time.monotonic()
    while time.monotonic() < deadline:
        for run in runs:
            if run.process.poll() is not None:
                raise RuntimeError(f"{label}: a worker exited with {run.process.returncode}:\n{run.log_tail()}")
        statuses = [run.status() for run in runs]
        if all(statuses):
            read = sum(s["counters"]["messages"] - s["counters"]["replay_skipped"] for s in statuses)
            if read >= expected and all(s["drained"] for s in statuses):
                return statuses
            if time.monotonic() - last_report > 15:
                last_report = time.monotonic()
                log(f"{label}: {read:,} of {expected:,} handled")
        time.sleep(0.25)
    raise RuntimeError(f"{label}: not done in {timeout} s")


def combined_rate(statuses: list[dict[str, Any]], events: int) -> float:
    """Events / (last event handled by any worker - first event handled by any worker)."""
    started = min(s["first_message_at"] for s in statuses if s["first_message_at"])
    ended = max(s["last_message_at"] for s in statuses if s["last_message_at"])
    return events / (ended - started)


def figures(front: FrontProcess) -> dict[str, list[tuple]]:
    client = clickhouse_connect.get_client(dsn=front.url)
    try:
        return {name: client.query(sql).result_rows for name, sql in QUERIES.items()}
    finally:
        client.close()


def one_round(count: int, bootstrap: str, topics: dict[str, str], scratch: Path, tag: str,
              expected: int) -> tuple[float, float, dict[str, list[tuple]], list[int]]:
    """(events/s, host CPU share busy, the stored figures, events handled per worker)."""
    with workers(count, bootstrap, topics, scratch, tag) as (runs, front):
        busy0, total0 = host_cpu()
        statuses = read_all(runs, expected, tag)
        busy1, total1 = host_cpu()
        for run in runs:
            run.stop(timeout=300)  # SIGTERM: every figure written
        # The front keeps running until the context ends: read the figures now.
        stored = figures(front)
    return combined_rate(statuses, expected), (busy1 - busy0) / (total1 - total0), stored, \
        [s["counters"]["messages"] for s in statuses]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenario", default="stable")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench-scaling-"))
    rates: dict[int, list[float]] = {1: [], 2: []}
    cpu: dict[int, list[float]] = {1: [], 2: []}
    exact: list[bool] = []
    shares: list[list[int]] = []
    try:
        with local_broker("bench-scaling-broker-") as (broker, _):
            topics, settings = fresh_topics(broker.bootstrap, "scaling")
            log(f"producing the {args.scenario} backlog (~{args.events:,} events)")
            produced = produce_scenario(settings, scenario_rows(args.scenario, args.events)).events
            log(f"{produced:,} events on {settings.topic_partitions} partitions per input topic")
            for r in range(1, args.runs + 1):
                results = {}
                for count in (1, 2):
                    tag = f"r{r}-{count}w"
                    rate, busy, stored, per_worker = one_round(count, broker.bootstrap, topics, scratch, tag, produced)
                    rates[count].append(rate)
                    cpu[count].append(busy)
                    results[count] = stored
                    if count == 2:
                        shares.append(per_worker)
                    log(f"round {r}, {count} worker(s): {rate:,.0f} events/s, host CPU {busy:.0%} busy, "
                        f"events per worker {per_worker}")
                exact.append(results[1] == results[2])
                log(f"round {r}: two workers' figures {'equal' if exact[-1] else 'DIFFER FROM'} one worker's")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    ratios = [two / one for one, two in zip(rates[1], rates[2], strict=True)]
    body = "\n".join([
        f"Measured {now_utc()} at {commit()}, load average before/after {load_average()}; {machine()}.",
        "",
        f"The `{args.scenario}` scenario, {produced:,} events on 4 partitions per input topic, read from the "
        "beginning by a fresh group; every worker writes to one fresh ClickHouse engine behind "
        "`sinks/http_front.py` (the single worker too, so only the number of workers differs). "
        "Rate = events / (last event handled by any worker - first event handled by any worker).",
        "",
        "| | min | median | max |",
        "| --- | ---: | ---: | ---: |",
        "| one worker (events/s) | " + " | ".join(spread(rates[1])) + " |",
        "| two workers, same app (events/s) | " + " | ".join(spread(rates[2])) + " |",
        "| two / one, per round | " + " | ".join(spread(ratios, "{:.2f}")) + " |",
        "| host CPU busy, one worker | " + " | ".join(spread([c * 100 for c in cpu[1]], "{:.0f}%")) + " |",
        "| host CPU busy, two workers | " + " | ".join(spread([c * 100 for c in cpu[2]], "{:.0f}%")) + " |",
        "",
        f"Events handled by each of the two workers, per round: {shares}.",
        f"Exact: the two workers' window figures, drift rows, distinct outcomes and alert ids equal the "
        f"single worker's in {sum(exact)} of {len(exact)} rounds.",
    ])
    print(f"one worker   {summary(rates[1])}\ntwo workers  {summary(rates[2])}\nratio        "
          + " ".join(spread(ratios, "{:.2f}")) + f"\nexact rounds {sum(exact)}/{len(exact)}")
    if not args.no_write:
        write_section(SECTION, body)
    return 0 if all(exact) else 1


if __name__ == "__main__":
    sys.exit(main())
