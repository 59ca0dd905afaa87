"""Worker throughput beside its baselines, on the same events and broker, in one run.

(a) raw confluent-kafka consume + JSON decode: the limit of the machine;
(b) a do-nothing Faust agent on the two input topics: the framework floor;
(b') the same do-nothing agent on the monitor's transport (streams.transport), to show
     how much of the worker's margin that transport alone buys;
(c) the full worker (`faust -A streams.app worker`) with the embedded ClickHouse store.
Each reads the same backlog from the beginning (fresh consumer group); the rate is
events / (last event handled - first event handled), so start-up and group join do
not count. Run:

    .venv/bin/python -m benchmarks.bench_worker --events 100000 --runs 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from benchmarks.common import (
    faust_process,
    fresh_topics,
    local_broker,
    produce_scenario,
    raw_rate,
    read_rate,
    scenario_rows,
    summary,
    wait_read,
)
from streams.transport import SCHEME


def faust_rate(module: str, bootstrap: str, topics: dict[str, str], workdir: Path, expected: int,
               **extra: str) -> float:
    with faust_process(module, bootstrap, topics, workdir, **extra) as run:
        return read_rate(wait_read(run, expected, f"{workdir.name}", timeout=900))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="about this many input events")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with local_broker("bench-worker-") as (broker, data):
        topics, settings = fresh_topics(broker.bootstrap)
        total = produce_scenario(settings, scenario_rows("stable", args.events)).events
        print(f"{total:,} events on {settings.topic_partitions} partitions per topic", file=sys.stderr)
        rates: dict[str, list[float]] = {"raw": [], "noop": [], "noop-transport": [], "worker": []}
        for i in range(args.runs):
            rates["raw"].append(raw_rate(broker.bootstrap, list(settings.input_topics), total))
            for name, module, extra in (("noop", "benchmarks.noop_app", {}),
                                        ("noop-transport", "benchmarks.noop_app", {"NOOP_TRANSPORT": SCHEME}),
                                        ("worker", "streams.app", {})):
                rates[name].append(faust_rate(module, broker.bootstrap, topics, data / f"{name}-{i}", total,
                                              **extra))
            print(f"run {i + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in rates.items()), file=sys.stderr)
        print(f"events: {total:,}; runs: {args.runs}\n")
        print("| | min | median | max | median ratio to the Faust floor |")
        print("| --- | ---: | ---: | ---: | ---: |")
        floor = statistics.median(rates["noop"])
        for name, label in (("raw", "raw confluent-kafka consume + orjson (events/s)"),
                            ("noop", "do-nothing Faust agent, stock Faust (events/s)"),
                            ("noop-transport", "do-nothing agent on the monitor's transport (events/s)"),
                            ("worker", "full worker (events/s)")):
            low, mid, high = summary(rates[name]).split()
            print(f"| {label} | {low} | {mid} | {high} | {statistics.median(rates[name]) / floor:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
