"""Replay throughput from a CSV file, end to end, beside the raw produce rate of the same messages.

    .venv/bin/python benchmarks/bench_replay.py [--rows 200000] [--runs 3] [--scenario stable]

Generates a scenario CSV, starts a Tansu broker on a free port, then per run (fresh
topics each time):
- replay: `producers.replay.replay(csv)` - read, type, encode, check every event with
  the worker's parser, order by event time, produce, wait for every acknowledgement;
- raw: the already encoded messages, in the same order, through a bare confluent-kafka
  producer with the same configuration (produce + poll(0), flush) - the ceiling the
  replay's produce loop could reach.
Prints min / median / max events/s of both and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from producers.replay import PRODUCER_CONFIG, Prepared, prepare, replay
from producers.scenarios import generate, write
from streams.settings import Settings, load_settings
from tools.broker import start_broker, stop_broker
from tools.topics import create_topics, topic_env


def fresh_settings(bootstrap: str) -> Settings:
    """Topics no earlier run used, created with the configured partition count."""
    settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": bootstrap, **topic_env(f"bench-{uuid.uuid4().hex[:8]}")})
    create_topics(settings)
    return settings


def raw_produce(prepared: Prepared, settings: Settings) -> float:
    """Events/s of a bare producer sending the pre-encoded messages; fails loudly on any loss."""
    from confluent_kafka import Producer

    acknowledged = 0

    def delivered(err: object, _msg: object) -> None:
        nonlocal acknowledged
        if err is None:
            acknowledged += 1

    producer = Producer({**PRODUCER_CONFIG, "bootstrap.servers": settings.kafka_bootstrap_servers,
                         "on_delivery": delivered})
    topics = settings.input_topics
    started = time.perf_counter()
    for _ts, _line, topic, key, value in prepared.events:
        while True:
            try:
                producer.produce(topics[topic], value, key)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(60)
    seconds = time.perf_counter() - started
    if acknowledged != len(prepared.events):
        raise RuntimeError(f"raw produce: {acknowledged} of {len(prepared.events)} acknowledged")
    return len(prepared.events) / seconds


def write_input(name: str, rows: int, directory: Path) -> Path:
    """The scenario as CSV (its rows are not kept: the replay reads the file, like the CLI)."""
    scenario = generate(name, rows=rows)
    path, _ = write(scenario, directory / f"{name}.csv")
    print(f"input: {path.name}, {len(scenario.rows)} rows, {path.stat().st_size / 1e6:.1f} MB")
    return path


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (the replay's worker processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def spread(values: list[float]) -> str:
    return f"{min(values):,.0f} / {statistics.median(values):,.0f} / {max(values):,.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenario", default="stable")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        path = write_input(args.scenario, args.rows, Path(tmp))
        broker = start_broker(None, data_dir=Path(tmp) / "broker")
        try:
            replay_rates, raw_rates, cpu_rates = [], [], []
            for run in range(1, args.runs + 1):
                settings = fresh_settings(broker.bootstrap)
                cpu_before = cpu_seconds()
                result = replay(path, settings)
                cpu_rates.append(result.events / (cpu_seconds() - cpu_before))
                if not result.ok or result.skipped:
                    raise RuntimeError(f"replay run {run} failed: {result}")
                replay_rates.append(result.events_per_second)
                prepared = prepare(path, raw_settings := fresh_settings(broker.bootstrap))
                raw_rates.append(raw_produce(prepared, raw_settings))
                del prepared
                print(f"run {run}: {result.events} events in {result.seconds:.2f} s = "
                      f"{replay_rates[-1]:,.0f} events/s, {cpu_rates[-1]:,.0f} events per CPU second "
                      f"(raw produce {raw_rates[-1]:,.0f} events/s; load average {os.getloadavg()[0]:.2f})")
        finally:
            stop_broker(broker)
    ratio = statistics.median(replay_rates) / statistics.median(raw_rates)
    print(f"replay end to end from CSV, events/s min / median / max: {spread(replay_rates)}")
    print(f"raw confluent-kafka produce, events/s min / median / max: {spread(raw_rates)}")
    print(f"replay events per CPU second (all its processes), min / median / max: {spread(cpu_rates)}")
    print(f"ratio replay / raw (medians): {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
