"""Shared pieces of the worker benchmarks: a broker, fresh topics, backlogs, worker runs, reports.

bench_worker (100k events, `make bench`), bench_backlog (1M backlog and memory) and
bench_latency (latency at half load) start a Tansu broker of their own, create fresh topics
per backlog and run each consumer with a fresh group (the worker also with a fresh store),
so that every consumer reads the same events from the beginning.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from benchmarks.markdown import replace_section
from benchmarks.stats import spread
from producers.replay import PRODUCER_CONFIG, ReplayResult, replay
from producers.scenarios import generate
from streams.settings import Settings, load_settings
from tests.worker_harness import WorkerRun, worker_env
from tools.broker import Broker, start_broker, stop_broker
from tools.topics import create_topics, topic_env

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
PROGRESS_EVERY_S = 15.0


# -- broker, topics, backlogs ---------------------------------------------------

@contextlib.contextmanager
def local_broker(prefix: str, keep: bool = False) -> Iterator[tuple[Broker, Path]]:
    """A Tansu broker on a free port and a scratch directory (removed afterwards unless ``keep``)."""
    data = Path(tempfile.mkdtemp(prefix=prefix))
    broker = start_broker(None, data_dir=data)
    try:
        yield broker, data
    finally:
        stop_broker(broker)
        if not keep:
            shutil.rmtree(data, ignore_errors=True)


def fresh_topics(bootstrap: str, tag: str = "bench", partitions: int | None = None) -> tuple[dict[str, str], Settings]:
    """Topic names no earlier run used, created with ``partitions`` partitions (default: the
    configured count)."""
    topics = topic_env(f"{tag}-{uuid.uuid4().hex[:8]}")
    if partitions is not None:
        topics["TOPIC_PARTITIONS"] = str(partitions)
    settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": bootstrap, **topics})
    create_topics(settings)
    return topics, settings


def produce_scenario(settings: Settings, rows: list[dict[str, Any]]) -> ReplayResult:
    """A scenario's rows through the replay producer (the project's own), every message acknowledged."""
    return replay_all(enumerate(rows, start=1), settings, workers=1)


def replay_all(source: Path | Iterable[tuple[int, dict[str, Any]]], settings: Settings, *,
               speed: float | None = None, workers: int | None = None) -> ReplayResult:
    """A file or numbered rows through the replay producer, every message acknowledged and no row
    skipped, else RuntimeError."""
    result = replay(source, settings, speed=speed, workers=workers)
    if not result.ok or result.skipped:
        raise RuntimeError(f"producing the backlog failed: {result.first_error}, {result.skipped} rows skipped")
    return result


def scenario_rows(name: str, events: int) -> list[dict[str, Any]]:
    """Rows of a built-in scenario giving about ``events`` events (two per labeled row)."""
    return generate(name, rows=events // 2).rows


def produce_messages(bootstrap: str, messages: Sequence[tuple[str, bytes, bytes]], progress: str = "") -> float:
    """Pre-encoded (topic, key, value) messages as fast as possible; events/s; fails on any loss."""
    acknowledged = 0

    def delivered(err: object, _msg: object) -> None:
        nonlocal acknowledged
        if err is None:
            acknowledged += 1

    producer = Producer({**PRODUCER_CONFIG, "bootstrap.servers": bootstrap, "on_delivery": delivered})
    started = last_report = time.perf_counter()
    for i, (topic, key, value) in enumerate(messages, start=1):
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        if progress and time.perf_counter() - last_report > PROGRESS_EVERY_S:
            last_report = time.perf_counter()
            log(f"{progress}: {i:,} of {len(messages):,} produced")
    producer.flush(120)
    seconds = time.perf_counter() - started
    if acknowledged != len(messages):
        raise RuntimeError(f"produce: {acknowledged} of {len(messages)} acknowledged")
    return len(messages) / seconds


# -- consumers -------------------------------------------------------------------

def raw_rate(bootstrap: str, topics: list[str], expected: int) -> float:
    """(a) raw confluent-kafka consume + orjson decode of every message: the machine's limit."""
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


@contextlib.contextmanager
def faust_process(module: str, bootstrap: str, topics: dict[str, str], workdir: Path,
                  **extra: Any) -> Iterator[WorkerRun]:
    """`faust -A <module> worker` with a fresh group and store in ``workdir``; SIGTERM on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**worker_env(bootstrap, topics, workdir, **extra), "PYTHONPATH": str(ROOT)}
    run = WorkerRun(env, workdir, app_module=module).start()
    try:
        yield run
    finally:
        run.stop(timeout=300)


def wait_read(run: WorkerRun, expected: int, label: str, timeout: float = 1800.0,
              sample: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Until the process has read ``expected`` input messages (its /status), with progress lines."""
    deadline = time.monotonic() + timeout
    last_report = time.monotonic()
    status: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        assert run.process is not None
        if run.process.poll() is not None:
            raise RuntimeError(f"{label} exited with {run.process.returncode}:\n{run.log_tail()}")
        status = run.status()
        if status and sample is not None:
            sample(status)
        read = status["counters"]["messages"] if status else 0
        if read >= expected:
            return status
        if time.monotonic() - last_report > PROGRESS_EVERY_S:
            last_report = time.monotonic()
            first = status and status.get("first_message_at")
            speed = f", {read / (time.time() - first):,.0f} events/s so far" if first else ""
            log(f"{label}: {read:,} of {expected:,} read{speed}")
        time.sleep(0.25)
    raise RuntimeError(f"{label} read {status and status['counters']} of {expected} in {timeout} s:\n"
                       f"{run.log_tail()}")


def read_rate(status: dict[str, Any]) -> float:
    """Events / (last event handled - first event handled): start-up and group join do not count."""
    return status["counters"]["messages"] / (status["last_message_at"] - status["first_message_at"])


def worker_query(run: WorkerRun, sql: str, timeout: float = 60.0) -> list[list[Any]]:
    """Read-only SQL on the running worker's embedded store, through its /query page."""
    url = f"http://127.0.0.1:{run.env['MONITOR_WEB_PORT']}/query?" + urllib.parse.urlencode({"sql": sql})
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())["rows"]
    except urllib.error.HTTPError as err:
        raise RuntimeError(f"/query failed: {err.read()[:500]!r}") from None


def proc_memory(pid: int) -> dict[str, int]:
    """Current (VmRSS) and peak (VmHWM) resident memory of a process, in bytes."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0]) * 1024
    return out


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds a process has used so far (its threads included)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def host_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole host since boot, all CPUs (/proc/stat)."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return (total - idle) / os.sysconf("SC_CLK_TCK"), total / os.sysconf("SC_CLK_TCK")


# -- figures and reports --------------------------------------------------------------

def summary(values: list[float]) -> str:
    low, mid, high = spread(values)
    return f"{low:>9} {mid:>9} {high:>9}"


def load_average() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    """The host and the versions that decide the figures, one line."""
    import chdb
    import confluent_kafka
    import faust

    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), cpu)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} CPUs ({cpu}), {memory:.0f} GB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, faust-streaming {faust.__version__}, confluent-kafka "
            f"{metadata.version('confluent-kafka')} (librdkafka {confluent_kafka.libversion()[0]}), chDB "
            f"{chdb.__version__}, Tansu 0.6.0 (memory storage) on the same host")


def commit() -> str:
    """HEAD, and whether the worker's code differs from it (other work in the same tree)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()

    if not (ROOT / ".git").exists():  # a `git archive` copy, run apart from a tree others are editing
        return f"{os.environ.get('BENCH_COMMIT', 'unknown')} (exported copy)"
    head = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--", "streams", "sinks", "producers")
    return head + (" with uncommitted changes in streams/sinks/producers" if dirty else "")


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def write_section(name: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    path.write_text(replace_section(path.read_text() if path.exists() else "# Benchmarks\n", name, body))
    log(f"{path.name}: section {name} updated")


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- added for bench_alerts ------------------------------------------------------------

def wait_up(run: WorkerRun, settle: float = 3.0, timeout: float = 120.0) -> None:
    """Until the process answers /status (the worker: its monitor started), then ``settle`` s for
    the group join, so that what is produced next is read as it arrives."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert run.process is not None
        if run.process.poll() is not None:
            raise RuntimeError(f"{run.app_module} exited with {run.process.returncode}:\n{run.log_tail()}")
        status = run.status()
        if status and status.get("started", True):
            time.sleep(settle)
            return
        time.sleep(0.2)
    raise RuntimeError(f"{run.app_module} did not start:\n{run.log_tail()}")


def read_topic(bootstrap: str, topic: str, enough: Callable[[list[Any]], bool], quiet: float = 2.0,
               timeout: float = 60.0) -> list[Any]:
    """Every JSON message of ``topic`` from the beginning, in the order received (each partition in
    offset order): read until ``enough(messages)`` holds and nothing new came for ``quiet`` s, or
    ``timeout``. Never trusts high watermarks (the local broker reports wrong ones)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        messages: list[Any] = []
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline:
            message = consumer.poll(0.1)
            if message is not None and not message.error():
                messages.append(json.loads(message.value()))
                last = time.monotonic()
            elif time.monotonic() - last >= quiet and enough(messages):
                break
        return messages
    finally:
        consumer.close()
