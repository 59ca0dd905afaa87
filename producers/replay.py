"""Replay an inference log (or a built-in scenario) into the predictions and ground-truth topics.

Each row of the log becomes a prediction event and, when it has an ``actual_label``, a
ground-truth event (see the contract's "Replay input"). Every event is checked by the
same parser the worker uses, so a row the worker would reject is reported here, with its
line, and skipped. Events go out in event-time order across both topics (a label that
precedes its prediction is sent first), keyed by request_id, and the command ends only
when the broker has acknowledged every message.

>>> layout = layout_of(["request_id", "timestamp", "prediction", "prediction_probability_1",
...                     "prediction_probability_0", "actual_label", "actual_timestamp", "age"])
>>> layout
Layout(features=('age',), probabilities=(('1', 'prediction_probability_1'), ('0', 'prediction_probability_0')))
>>> row = {"request_id": "r1", "timestamp": "2026-01-05T00:00:00Z", "prediction": 1,
...        "prediction_probability_1": 0.8, "prediction_probability_0": 0.2,
...        "actual_label": 0, "actual_timestamp": "2026-01-05T00:30:00Z", "age": 41.5}
>>> prediction, label = row_events(row, layout, default_model="churn")
>>> prediction
{'request_id': 'r1', 'model': 'churn', 'model_version': 'v1', 'timestamp': '2026-01-05T00:00:00Z', 'prediction': 1, 'scores': {'1': 0.8, '0': 0.2}, 'features': {'age': 41.5}}
>>> label
{'request_id': 'r1', 'label': 0, 'timestamp': '2026-01-05T00:30:00Z', 'model': 'churn', 'model_version': 'v1'}
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import KafkaException, Producer

from streams.kafka_config import confluent_config
from streams.parsing import FUTURE_SKEW_MS, parse_ground_truth, parse_prediction
from streams.records import Rejection
from streams.settings import Settings, SettingsError, load_settings
from streams.tabular import Shard, file_format, identifier_text, read_rows

DEFAULT_MODEL = "model"
DEFAULT_VERSION = "v1"
PROBABILITY_PREFIX = "prediction_probability_"
RESERVED = frozenset({
    "request_id", "timestamp", "model", "model_version", "prediction", "score",
    "latency_ms", "actual_label", "actual_timestamp",
})
MAX_REPORTED = 20
DELIVERY_TIMEOUT_S = 30.0
PARALLEL_MIN_BYTES = 4 * 1024 * 1024
MAX_WORKERS = 8
PRODUCER_CONFIG = {
    "acks": "all",
    "enable.idempotence": False,
    "linger.ms": 20,
    "batch.num.messages": 10_000,
    "batch.size": 1_000_000,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "message.timeout.ms": int(DELIVERY_TIMEOUT_S * 1000),
    # Java clients and Faust (aiokafka) partition keys with murmur2: a request_id produced
    # here lands in the same partition as one produced by them.
    "partitioner": "murmur2_random",
}
PREDICTIONS, GROUND_TRUTH = 0, 1

# librdkafka would print every refused connection; the replay reports one clear line instead.
_QUIET = logging.getLogger("producers.replay.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False

Row = dict[str, Any]
NumberedRows = Iterable[tuple[int, Row]]
# (event time ms, line, PREDICTIONS | GROUND_TRUTH, key, value): sorting the tuples orders
# events by event time, then by input line, a prediction before its own label.
Event = tuple[int, int, int, bytes, bytes]
Progress = Callable[[int, int], None]  # (events sent, events in all)


class ReplayError(RuntimeError):
    """The replay cannot run (broker unreachable, topics unusable); the message is one line."""


# --- rows -> events ---

@dataclass(frozen=True)
class Layout:
    """Which columns of a row are features and which hold class probabilities."""

    features: tuple[str, ...]
    probabilities: tuple[tuple[str, str], ...]  # (class, column)


def layout_of(columns: Iterable[str]) -> Layout:
    """Split columns by the contract: reserved names, ``prediction_probability_<class>``, features."""
    features, probabilities = [], []
    for name in columns:
        if name.startswith(PROBABILITY_PREFIX) and len(name) > len(PROBABILITY_PREFIX):
            probabilities.append((name[len(PROBABILITY_PREFIX):], name))
        elif name not in RESERVED:
            features.append(name)
    return Layout(tuple(features), tuple(probabilities))


def row_events(row: Row, layout: Layout, default_model: str = DEFAULT_MODEL) -> tuple[Row, Row | None]:
    """The prediction event of a row and its ground-truth event (None when never labeled).

    ``request_id``, ``model`` and ``model_version`` are text: :func:`~streams.tabular.read_rows`
    keeps a file's identifiers as written, and a number in rows given directly becomes its
    text here the same way (3 -> "3").
    """
    model = identifier_text(row.get("model")) or default_model
    version = identifier_text(row.get("model_version")) or DEFAULT_VERSION
    prediction: Row = {
        "request_id": identifier_text(row.get("request_id")),
        "model": model,
        "model_version": version,
        "timestamp": row.get("timestamp"),
        "prediction": row.get("prediction"),
    }
    scores = {cls: row[col] for cls, col in layout.probabilities if row.get(col) is not None}
    if scores:
        prediction["scores"] = scores
    if row.get("score") is not None:
        prediction["score"] = row["score"]
    if row.get("latency_ms") is not None:
        prediction["latency_ms"] = row["latency_ms"]
    prediction["features"] = {name: row.get(name) for name in layout.features}
    label = row.get("actual_label")
    if label is None:
        return prediction, None
    truth = {"request_id": prediction["request_id"], "label": label,
             "timestamp": row.get("actual_timestamp"), "model": model, "model_version": version}
    return prediction, truth


def _dumps(event: Row) -> bytes:
    """JSON bytes of an event, in a right-sized copy: orjson's own result keeps a 4 KB buffer,
    and a replay holds every event until it is sorted (200k rows: 1.6 GB instead of 0.2 GB)."""
    return memoryview(orjson.dumps(event)).tobytes()


@dataclass
class Prepared:
    """Encoded, validated events in event-time order, and what was skipped on the way."""

    events: list[Event] = field(default_factory=list)
    rows: int = 0
    skipped: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # the first MAX_REPORTED

    def skip(self, line: int, reason: str) -> None:
        self.skipped += 1
        if len(self.rejected) < MAX_REPORTED:
            self.rejected.append((line, reason))

    @classmethod
    def merge(cls, parts: Iterable[Prepared]) -> Prepared:
        """One Prepared from the shards of a file, as if it had been read in one go."""
        merged = cls()
        for part in parts:
            merged.events += part.events
            merged.rows += part.rows
            merged.skipped += part.skipped
            merged.rejected += part.rejected
        merged.events.sort()
        merged.rejected = sorted(merged.rejected)[:MAX_REPORTED]
        return merged


class _Encoder:
    """Rows -> checked events; caches the column layout per column set."""

    def __init__(self, settings: Settings, default_model: str, now_ms: int) -> None:
        self.default_model = default_model
        self.positive_label = settings.positive_label
        self.max_ts_ms = now_ms + FUTURE_SKEW_MS  # what the worker accepts
        self.layouts: dict[tuple[str, ...], Layout] = {}

    def encode(self, line: int, row: Row) -> list[Event] | str:
        """The row's events, or the reason the worker would reject one of them."""
        columns = tuple(row)
        layout = self.layouts.get(columns) or self.layouts.setdefault(columns, layout_of(columns))
        prediction, truth = row_events(row, layout, self.default_model)
        try:
            value = _dumps(prediction)
            truth_value = _dumps(truth) if truth is not None else None
        except orjson.JSONEncodeError as err:
            return f"cannot encode as JSON: {err}"
        key = prediction["request_id"].encode() if isinstance(prediction["request_id"], str) else None
        parsed = parse_prediction(value, key=key, positive_label=self.positive_label, max_ts_ms=self.max_ts_ms)
        if isinstance(parsed, Rejection):
            return f"prediction {parsed}"
        events = [(parsed.ts_ms, line, PREDICTIONS, key, value)]
        if truth_value is not None:
            label = parse_ground_truth(truth_value, key=key, max_ts_ms=self.max_ts_ms)
            if isinstance(label, Rejection):
                return f"ground truth {label}"
            events.append((label.ts_ms, line, GROUND_TRUTH, key, truth_value))
        return events


def _encode_rows(rows: NumberedRows, settings: Settings, model: str | None, prepared: Prepared) -> Prepared:
    encoder = _Encoder(settings, model or DEFAULT_MODEL, now_ms=int(time.time() * 1000))
    events = prepared.events
    for line, row in rows:
        prepared.rows += 1
        encoded = encoder.encode(line, row)
        if isinstance(encoded, str):
            prepared.skip(line, encoded)
        else:
            events += encoded
    events.sort()
    return prepared


def _prepare_shard(path: Path, shard: Shard, settings: Settings, model: str | None) -> Prepared:
    """One process's share of a file (top level, so that a worker process can run it)."""
    prepared = Prepared()
    return _encode_rows(read_rows(path, on_error=prepared.skip, shard=shard), settings, model, prepared)


def default_workers(path: Path) -> int:
    """Processes to prepare a file with: checking every event with the worker's parser is the
    replay's main cost, so big files get one process per CPU; small ones are not worth the start."""
    if path.stat().st_size < PARALLEL_MIN_BYTES:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cpus, MAX_WORKERS))


def prepare(source: str | Path | NumberedRows, settings: Settings, *, model: str | None = None,
            limit: int | None = None, workers: int | None = None) -> Prepared:
    """Read, encode and check the first ``limit`` rows, then order all events by event time.

    A file is read by ``workers`` processes (default: :func:`default_workers`), each
    taking every n-th row; the result is the same as reading it in one process.
    """
    if not isinstance(source, str | Path):
        rows = source if limit is None else islice(source, limit)
        return _encode_rows(rows, settings, model, Prepared())
    path = Path(source)
    count = workers or default_workers(path)
    shards = [Shard(index, count, limit) for index in range(count)]
    if count == 1:
        return _prepare_shard(path, shards[0], settings, model)
    with ProcessPoolExecutor(count - 1, mp_context=get_context("spawn")) as pool:
        others = [pool.submit(_prepare_shard, path, shard, settings, model) for shard in shards[1:]]
        own = _prepare_shard(path, shards[0], settings, model)  # this process takes a share too
        return Prepared.merge([own, *(future.result() for future in others)])


# --- events -> Kafka ---

class Deliveries:
    """Delivery callback: acknowledged and failed counts per topic, and the first error."""

    def __init__(self, topics: Sequence[str]) -> None:
        self.acknowledged = dict.fromkeys(topics, 0)
        self.failed = dict.fromkeys(topics, 0)
        self.pending = 0  # neither acknowledged nor failed when the final flush gave up
        self.first_error: str | None = None

    def __call__(self, err: Any, msg: Any) -> None:
        if err is None:
            self.acknowledged[msg.topic()] += 1
            return
        self.failed[msg.topic()] += 1
        if self.first_error is None:
            self.first_error = err.str()


@dataclass(frozen=True)
class ReplayResult:
    """What the broker acknowledged, per topic, and how fast."""

    rows: int  # rows read (a row too broken to read counts only as skipped)
    skipped: int  # rows not sent: unreadable, or an event the worker would reject
    rejected: list[tuple[int, str]]  # (line, reason) of the first MAX_REPORTED skipped rows
    acknowledged: dict[str, int]  # topic -> messages the broker acknowledged
    failed: dict[str, int]  # topic -> messages whose delivery failed
    pending: int  # messages still unacknowledged when the final flush gave up
    first_error: str | None
    seconds: float  # from the first row read to the last acknowledgement
    created_topics: list[str]

    @property
    def events(self) -> int:
        return sum(self.acknowledged.values())

    @property
    def ok(self) -> bool:
        return not any(self.failed.values()) and not self.pending

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def make_producer(settings: Settings, deliveries: Callable[[Any, Any], None]) -> Producer:
    """The replay producer: PRODUCER_CONFIG on the brokers and security settings of `settings`."""
    return Producer({**PRODUCER_CONFIG, **confluent_config(settings),
                     "on_delivery": deliveries, "logger": _QUIET})


def ensure_topics(settings: Settings) -> list[str]:
    """Create the topics with the right partitions before producing (a producer would auto-create
    them with the broker's default count); one clear ReplayError when that cannot be done."""
    from tools.topics import TopicError, create_topics

    try:
        return create_topics(settings)
    except TopicError as err:
        raise ReplayError(str(err)) from None


class _Pacer:
    """Sleeps so that events go out at ``speed`` x real time, relative to the first event."""

    def __init__(self, speed: float, first_ts_ms: int, producer: Producer) -> None:
        self.scale = 1.0 / (1000.0 * speed)
        self.first_ts_ms = first_ts_ms
        self.start = time.monotonic()
        self.producer = producer

    def wait(self, ts_ms: int) -> None:
        due = self.start + (ts_ms - self.first_ts_ms) * self.scale
        while (delay := due - time.monotonic()) > 0:
            self.producer.poll(min(delay, 0.1))  # serve delivery callbacks while waiting


def _produce(producer: Producer, topic: str, key: bytes, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:  # the local queue is full: let deliveries drain it
            producer.poll(0.1)


def send(events: Sequence[Event], settings: Settings, *, speed: float | None = None,
         progress: Progress | None = None, progress_every: int = 5000) -> Deliveries:
    """Produce the events in order and wait for every acknowledgement (bounded by the delivery timeout)."""
    topics = settings.input_topics
    deliveries = Deliveries(topics)
    producer = make_producer(settings, deliveries)
    pacer = _Pacer(speed, events[0][0], producer) if speed and events else None
    poll = producer.poll
    if progress is not None:
        progress(0, len(events))
    for count, (ts_ms, _line, topic, key, value) in enumerate(events, start=1):
        if pacer is not None:
            pacer.wait(ts_ms)
        _produce(producer, topics[topic], key, value)
        poll(0)
        if progress is not None and count % progress_every == 0:
            progress(count, len(events))
    deliveries.pending = producer.flush(DELIVERY_TIMEOUT_S + 5)
    if progress is not None:
        progress(len(events), len(events))
    return deliveries


def replay(source: str | Path | NumberedRows, settings: Settings, *, model: str | None = None,
           limit: int | None = None, speed: float | None = None, progress: Progress | None = None,
           workers: int | None = None) -> ReplayResult:
    """Replay a file (CSV/Parquet/JSONL) or ``(line, row)`` pairs; the importable form of the CLI.

    Raises ReplayError when the topics cannot be created or checked (e.g. no broker);
    delivery failures are counted in the result, whose ``ok`` is then False. A file may be
    read by worker processes (see :func:`prepare`): call this under ``if __name__ == "__main__"``
    in scripts, or pass ``workers=1``.
    """
    created = ensure_topics(settings)
    started = time.monotonic()
    prepared = prepare(source, settings, model=model, limit=limit, workers=workers)
    deliveries = send(prepared.events, settings, speed=speed, progress=progress)
    return ReplayResult(
        rows=prepared.rows,
        skipped=prepared.skipped,
        rejected=prepared.rejected,
        acknowledged=deliveries.acknowledged,
        failed=deliveries.failed,
        pending=deliveries.pending,
        first_error=deliveries.first_error,
        seconds=time.monotonic() - started,
        created_topics=created,
    )


# --- command line ---

def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _parser() -> argparse.ArgumentParser:
    from producers.scenarios import PLANS, VARIANTS

    parser = argparse.ArgumentParser(
        prog="python -m producers.replay",
        description="Replay an inference log or a built-in scenario into the predictions and "
                    "ground-truth topics, in event-time order.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="CSV, Parquet or JSONL file in the replay shape")
    source.add_argument("--scenario", choices=[*PLANS, *VARIANTS], help="generate a built-in scenario")
    parser.add_argument("--speed", type=float, default=None,
                        help="X times real time, relative to the first event (default: as fast as possible)")
    parser.add_argument("--limit", type=_positive_int, default=None, help="replay at most N rows")
    parser.add_argument("--model", default=None,
                        help=f"model name for rows without a model column (default {DEFAULT_MODEL!r}; "
                             "with --scenario: the scenario's model)")
    parser.add_argument("--seed", type=int, default=0, help="scenario seed")
    parser.add_argument("--rows", type=int, default=None, help="scenario rows (distinct requests)")
    parser.add_argument("--bootstrap", default=None, help="brokers (default KAFKA_BOOTSTRAP_SERVERS)")
    return parser


def _source(args: argparse.Namespace) -> str | NumberedRows:
    """The rows to replay; bad input is reported before Kafka is contacted."""
    if args.input:
        file_format(args.input)
        if not Path(args.input).is_file():
            raise ValueError(f"{args.input}: no such file")
        return args.input
    from producers.scenarios import generate

    scenario = generate(args.scenario, seed=args.seed, rows=args.rows, model=args.model)
    return enumerate(scenario.rows, start=1)


def _print_rejected(result: ReplayResult) -> None:
    for line, reason in result.rejected:
        print(f"line {line}: skipped: {reason}", file=sys.stderr)
    if result.skipped > len(result.rejected):
        print(f"... and {result.skipped - len(result.rejected)} more skipped rows", file=sys.stderr)


class _ProgressBar:
    """A rich progress bar on stderr with events/s and ETA, shown once sending starts."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        columns = (TextColumn("replay"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]:>9,.0f} events/s"), TimeRemainingColumn())
        self.bar = Progress(*columns, console=Console(stderr=True))
        self.task = self.bar.add_task("replay", total=None, rate=0.0)
        self.started = 0.0

    def __call__(self, done: int, total: int) -> None:
        if done == 0:
            self.bar.start()
            self.bar.update(self.task, total=total)
            self.started = time.monotonic()
            return
        rate = done / max(time.monotonic() - self.started, 1e-9)
        self.bar.update(self.task, completed=done, rate=rate)

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()


def _run(args: argparse.Namespace, settings: Settings) -> int:
    source = _source(args)
    with _ProgressBar() as progress:
        result = replay(source, settings, model=args.model, limit=args.limit,
                        speed=args.speed, progress=progress)
    if result.created_topics:
        print(f"created topics: {', '.join(result.created_topics)}")
    _print_rejected(result)
    return _report(result)


def _report(result: ReplayResult) -> int:
    for topic, count in result.acknowledged.items():
        print(f"{topic}: {count} acknowledged")
    print(f"skipped rows: {result.skipped}")
    print(f"{result.events} events in {result.seconds:.2f} s ({result.events_per_second:,.0f} events/s)")
    if result.ok:
        return 0
    lost = [f"{n} to {t} failed" for t, n in result.failed.items() if n]
    lost += [f"{result.pending} still unacknowledged after {DELIVERY_TIMEOUT_S + 5:g} s"] if result.pending else []
    print(f"replay failed: {', '.join(lost)}: {result.first_error or 'no answer from the broker'}",
          file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = dict(os.environ)
    if args.bootstrap:
        env["KAFKA_BOOTSTRAP_SERVERS"] = args.bootstrap
    try:
        settings = load_settings(env)
    except SettingsError as err:
        print(err, file=sys.stderr)
        return 2
    if args.speed is not None and args.speed <= 0:
        print(f"--speed {args.speed:g} is not valid: expected a positive number", file=sys.stderr)
        return 2
    try:
        return _run(args, settings)
    except ValueError as err:  # unreadable input, unknown file type, bad scenario arguments
        print(f"replay: {err}", file=sys.stderr)
        return 2
    except (ReplayError, KafkaException) as err:
        print(f"replay failed: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("replay: interrupted; messages not yet acknowledged may be lost", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
