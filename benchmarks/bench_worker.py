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
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from producers.replay import replay
from producers.scenarios import generate
from streams.broker import start_broker, stop_broker
from streams.settings import load_settings
from streams.topics import create_topics, topic_env
from streams.transport import SCHEME
from tests.worker_harness import WorkerRun, worker_env

ROOT = Path(__file__).resolve().parents[1]


def raw_rate(bootstrap: str, topics: list[str], expected: int) -> float:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "enable.auto.commit": False,
                         "fetch.max.bytes": 52_428_800})
    metadata = consumer.list_topics(timeout=10)
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in metadata.topics[t].partitions])
    seen, first = 0, None
    while seen < expected:
        for message in consumer.consume(10_000, timeout=1.0):
            if message.error():
                continue
            if first is None:
                first = time.perf_counter()
            orjson.loads(message.value())
            seen += 1
    elapsed = time.perf_counter() - first
    consumer.close()
    return seen / elapsed


def faust_rate(module: str, env: dict[str, str], workdir: Path, expected: int) -> float:
    run = WorkerRun(env, workdir, app_module=module).start()
    try:
        status = run.wait_for_messages(expected, timeout=900, settle=0)
    finally:
        run.stop()
    return status["counters"]["messages"] / (status["last_message_at"] - status["first_message_at"])


def summary(values: list[float]) -> str:
    return f"{min(values):>9,.0f} {statistics.median(values):>9,.0f} {max(values):>9,.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="about this many input events")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    broker = start_broker(None, data_dir=data)
    try:
        topics = topic_env(f"bench-{uuid.uuid4().hex[:8]}")
        settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, **topics})
        create_topics(settings)
        result = replay(enumerate(generate("stable", rows=args.events // 2).rows, start=1), settings)
        total = result.events
        print(f"{total:,} events on {settings.topic_partitions} partitions per topic", file=sys.stderr)
        rates: dict[str, list[float]] = {"raw": [], "noop": [], "noop-transport": [], "worker": []}
        for i in range(args.runs):
            rates["raw"].append(raw_rate(broker.bootstrap, list(settings.input_topics), total))
            for name, module, extra in (("noop", "benchmarks.noop_app", {}),
                                        ("noop-transport", "benchmarks.noop_app", {"NOOP_TRANSPORT": SCHEME}),
                                        ("worker", "streams.app", {})):
                workdir = data / f"{name}-{i}"
                workdir.mkdir()
                env = {**worker_env(broker.bootstrap, topics, workdir), "PYTHONPATH": str(ROOT), **extra}
                rates[name].append(faust_rate(module, env, workdir, total))
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
    finally:
        stop_broker(broker)
    return 0


if __name__ == "__main__":
    sys.exit(main())
