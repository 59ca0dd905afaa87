"""Join state memory: bytes per pending request, and the time of expire(), old beside new.

Builds ``--pending`` distinct waiting predictions from the degradation scenario (rows turned
into prediction events by the replay's own builder, parsed by the worker's parser; request
ids as the scenarios make them) and holds them in

- old: the join as it was, a dict request_id -> Prediction and expiry by scanning it all;
- new: ``streams.join.JoinState`` (packed bytes per half, buckets by event time).

Each figure comes from a fresh child process that reads the events from a file, so that
nothing else allocated in it muddles the measure: bytes per pending request as the
tracemalloc traced-memory delta / n (one child) and as the RSS delta / n (another child,
without tracemalloc, which also times add_prediction and expire()). Run:

    .venv/bin/python -m benchmarks.bench_state --pending 1000000
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson

from producers.replay import layout_of, row_events
from producers.scenarios import DEFAULT_START, generate, parse_start
from streams.join import JoinState
from streams.parsing import parse_prediction
from streams.records import Prediction

ROOT = Path(__file__).resolve().parents[1]
TTL_MS = 604_800_000  # the default JOIN_TTL_SECONDS
CHUNK_ROWS = 100_000
PERIODS, PERIOD_SECONDS = 20, 3600
BATCH = 1_000  # parsed predictions alive at once besides the state
TICKS = 10


class OldJoinState:
    """The pending predictions as they were kept before the compact form (for the baseline)."""

    def __init__(self, ttl_ms: int) -> None:
        self.ttl_ms = ttl_ms
        self.pending_predictions: dict[str, Prediction] = {}

    def add_prediction(self, prediction: Prediction) -> None:
        if prediction.request_id not in self.pending_predictions:
            self.pending_predictions[prediction.request_id] = prediction

    def expire(self, watermark_ms: int) -> list[Prediction]:
        limit = watermark_ms - self.ttl_ms
        old = [p for p in self.pending_predictions.values() if p.ts_ms < limit]
        for p in old:
            del self.pending_predictions[p.request_id]
        return old


def write_events(path: Path, pending: int) -> None:
    """``pending`` distinct prediction events, one JSON line each, chunk after chunk in event time."""
    seen: set[str] = set()
    start_ms = parse_start(DEFAULT_START)
    with path.open("wb") as out:
        for chunk in range((pending + CHUNK_ROWS - 1) // CHUNK_ROWS + 1):
            rows = generate("degradation", seed=chunk, rows=CHUNK_ROWS, periods=PERIODS,
                            period_seconds=PERIOD_SECONDS,
                            start=datetime.fromtimestamp(start_ms / 1000 + chunk * PERIODS * PERIOD_SECONDS,
                                                         UTC)).rows
            layout = layout_of(rows[0])
            for row in rows:
                if row["request_id"] in seen:  # the scenario's duplicate rows
                    continue
                seen.add(row["request_id"])
                out.write(orjson.dumps(row_events(row, layout)[0]) + b"\n")
                if len(seen) == pending:
                    return


def _batches(path: Path) -> Iterator[list[Prediction]]:
    with path.open("rb") as lines:
        batch: list[Prediction] = []
        for line in lines:
            parsed = parse_prediction(line.rstrip(b"\n"))
            assert isinstance(parsed, Prediction), parsed
            batch.append(parsed)
            if len(batch) == BATCH:
                yield batch
                batch = []
        if batch:
            yield batch


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(kind: str, mode: str, path: Path) -> dict[str, float]:
    """One measure in this process: build the state from the file, then (rss mode) time expire()."""
    state = JoinState(ttl_ms=TTL_MS) if kind == "new" else OldJoinState(ttl_ms=TTL_MS)
    gc.collect()
    if mode == "traced":
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    else:
        before = _rss_bytes()
    add_s, first_ts, last_ts = 0.0, None, 0
    parse_started = time.perf_counter()
    for batch in _batches(path):
        started = time.perf_counter()
        for p in batch:
            state.add_prediction(p)
        add_s += time.perf_counter() - started
        first_ts = batch[0].ts_ms if first_ts is None else first_ts
        last_ts = max(last_ts, batch[-1].ts_ms)
    read_and_parse_s = time.perf_counter() - parse_started - add_s
    del batch, p
    gc.collect()
    n = len(state.pending_predictions)
    after = tracemalloc.get_traced_memory()[0] if mode == "traced" else _rss_bytes()
    result = {"n": n, "bytes_per_pending": (after - before) / n, "add_us": add_s / n * 1e6,
              "parse_us": read_and_parse_s / n * 1e6}
    if kind == "new":
        codec = state.codec  # type: ignore[union-attr]
        result |= {"packed": sum(type(e) is bytes for e in state.pending_predictions.values()) / n,
                   "shapes": len(codec.shapes), "pairs": len(codec.pairs), "classes": len(codec.classes)}
    if mode == "traced":
        return result
    ticks, expired = [], 0
    for i in range(TICKS):  # the worker's once-a-second call: event time moved on by one second
        started = time.perf_counter()
        out = state.expire(first_ts + TTL_MS + 1000 * (i + 1))
        ticks.append(time.perf_counter() - started)
        expired += len(out[0] if kind == "new" else out)
    started = time.perf_counter()
    out = state.expire(last_ts + TTL_MS + 1)
    everything = time.perf_counter() - started
    halves = out[0] if kind == "new" else out
    assert all(type(p) is Prediction for p in halves)  # the new state unpacks each half here
    read = time.perf_counter() - started
    assert expired + len(halves) == n and not state.pending_predictions
    return result | {"tick_ms": statistics.median(ticks) * 1000, "tick_expired": expired / TICKS,
                     "all_s": everything, "all_read_s": read, "all_n": len(halves)}


def _run_child(kind: str, mode: str, path: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_state", "--child", kind, mode, str(path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind}/{mode} child failed:\n{done.stderr[-3000:]}")
    return orjson.loads(done.stdout.splitlines()[-1])


def table(results: dict[tuple[str, str], dict[str, float]]) -> str:
    old_t, new_t = results[("old", "traced")], results[("new", "traced")]
    old_r, new_r = results[("old", "rss")], results[("new", "rss")]
    rows = [
        ("bytes per pending request, tracemalloc delta / n", old_t["bytes_per_pending"],
         new_t["bytes_per_pending"], "{:,.0f}"),
        ("bytes per pending request, RSS delta / n", old_r["bytes_per_pending"], new_r["bytes_per_pending"],
         "{:,.0f}"),
        ("add_prediction, µs per call", old_r["add_us"], new_r["add_us"], "{:.2f}"),
        (f"expire(), one-second tick with {old_r['n']:,.0f} waiting, ms (median of {TICKS})",
         old_r["tick_ms"], new_r["tick_ms"], "{:.3f}"),
        (f"expire() of all {old_r['all_n']:,.0f} at once, ms", old_r["all_s"] * 1000, new_r["all_s"] * 1000,
         "{:,.0f}"),
        ("the same, and reading every expired half, ms", old_r["all_read_s"] * 1000,
         new_r["all_read_s"] * 1000, "{:,.0f}"),
    ]
    lines = ["| | old: dict of Prediction, scan | new: JoinState | new / old |", "| --- | ---: | ---: | ---: |"]
    for name, old, new, fmt in rows:
        lines.append(f"| {name} | {fmt.format(old)} | {fmt.format(new)} | {new / old:.3f} |")
    lines.append("")
    lines.append(f"Packed (not kept as objects): {new_t['packed']:.1%} of {new_t['n']:,.0f}; interned "
                 f"shapes {new_t['shapes']:.0f}, (model, version) pairs {new_t['pairs']:.0f}, "
                 f"classes {new_t['classes']:.0f}. Expired per tick: {new_r['tick_expired']:.1f}. For scale: "
                 f"reading + parse_prediction took {new_r['parse_us']:.1f} µs per event in the same run.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=1_000_000, help="distinct waiting predictions")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "MODE", "EVENTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, mode, path = args.child
        print(orjson.dumps(child(kind, mode, Path(path))).decode())
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-state-") as tmp:
        path = Path(tmp) / "predictions.jsonl"
        started = time.perf_counter()
        write_events(path, args.pending)
        print(f"{args.pending:,} prediction events written in {time.perf_counter() - started:.0f} s "
              f"({path.stat().st_size / 1e6:,.0f} MB)", file=sys.stderr)
        results = {}
        for kind in ("old", "new"):
            for mode in ("traced", "rss"):
                started = time.perf_counter()
                results[(kind, mode)] = _run_child(kind, mode, path)
                print(f"{kind}/{mode}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, --pending {args.pending:,}\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
