"""Cost per feature: the full worker beside the do-nothing Faust agent at 3 to 300 features.

Real models send 50-500 features. For each width W (``--widths``, default 3, 30, 100, 300):

- the `stable` scenario's requests, labels, timestamps and predictions (about ``--events``
  events), each prediction carrying W numeric features and ``--categorical`` string ones
  instead of the scenario's ten (see :func:`wide_rows`), are produced once through the
  replay producer onto fresh topics;
- each round, the stock do-nothing Faust agent (benchmarks/noop_app.py) and the full worker
  read them from the beginning, each with a fresh consumer group (the worker also with a
  fresh store), as in bench_worker: rate = events / (last event handled - first event
  handled). A worker round counts only when it read every event and rejected none;
- memory, with ``--pending`` distinct predictions of that width that are never labeled:
  bytes per pending request of the join state alone (bench_state's child process: RSS
  delta / n of a bare ``JoinState``) and of the whole worker (bench_backlog's run: the
  least-squares slope of the worker's RSS over the number pending, from a tenth of them on;
  JOIN_TTL_SECONDS of a year); with ``--apart`` also with ClickHouse in a process of its own
  (``sinks/http_front.py``), which splits the worker's share from the engine's.

    .venv/bin/python -m benchmarks.bench_features --events 40000 --runs 2 --pending 100000 --write
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks import bench_backlog, bench_state
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
    produce_scenario,
    read_rate,
    scenario_rows,
    wait_read,
    write_section,
)
from benchmarks.markdown import markdown_table
from benchmarks.stats import spread
from producers.replay import layout_of, row_events
from producers.scenarios import FEATURES, generate

WIDTHS = (3, 30, 100, 300)
CATEGORIES = {"region": ("north", "south", "east", "west"), "channel": ("web", "app", "branch", "phone", "partner"),
              "device": ("ios", "android", "desktop")}
MB = 1e6


def feature_names(width: int, categorical: int) -> list[str]:
    return [f"num_{i:03d}" for i in range(width)] + [f"cat_{i}" for i in range(categorical)]


def wide_rows(rows: list[dict[str, Any]], width: int, categorical: int, seed: int = 0) -> list[dict[str, Any]]:
    """The scenario's rows with ``width`` numeric and ``categorical`` string features instead of its own.

    Numeric feature i is, by i % 3: a measure rounded to 2 decimals (like the scenarios' ages and
    amounts), a count (an int), or a full-precision float (a standardised value or an embedding
    component: no short exact form). Categorical ones take 3-5 values. A duplicate row repeats
    its original's features (same request_id, same event)."""
    distinct = list(dict.fromkeys(row["request_id"] for row in rows))
    index = {rid: i for i, rid in enumerate(distinct)}
    rng = np.random.default_rng(seed)
    n = len(distinct)
    columns: list[list[Any]] = []
    for i in range(width):
        kind = i % 3
        if kind == 0:
            values = np.round(rng.normal(50 + i, 10, n), 2).tolist()
        elif kind == 1:
            values = rng.poisson(1 + i % 7, n).tolist()
        else:
            values = rng.normal(0, 1, n).tolist()
        columns.append(values)
    choices = list(CATEGORIES.values())
    for i in range(categorical):
        options = np.array(choices[i % len(choices)], dtype=object)
        columns.append(options[rng.integers(0, len(options), n)].tolist())
    names = feature_names(width, categorical)
    out = []
    for row in rows:
        wide = {k: v for k, v in row.items() if k not in FEATURES}
        j = index[row["request_id"]]
        for name, values in zip(names, columns, strict=True):
            wide[name] = values[j]
        out.append(wide)
    return out


def write_pending(path: Path, pending: int, width: int, categorical: int) -> None:
    """``pending`` distinct prediction events of this width, one JSON line each, for the memory runs
    (bench_backlog.pending_memory reads this file; its labels are never produced)."""
    rows = generate("stable", seed=1, rows=pending + pending // 100 + 20).rows
    rows = list({row["request_id"]: row for row in rows}.values())[:pending]
    if len(rows) < pending:
        raise RuntimeError(f"only {len(rows)} distinct rows for --pending {pending}")
    rows = wide_rows(rows, width, categorical, seed=1)
    layout = layout_of(rows[0])
    with path.open("wb") as out:
        for row in rows:
            out.write(orjson.dumps(row_events(row, layout)[0]) + b"\n")


def consumer_rate(module: str, bootstrap: str, topics: dict[str, str], workdir: Path, total: int,
                  label: str, timeout: float = 1800.0) -> float:
    with faust_process(module, bootstrap, topics, workdir) as run:
        status = wait_read(run, total, label, timeout=timeout)
        counters = status["counters"]
        if counters["messages"] != total or counters.get("rejected", 0):
            raise RuntimeError(f"{label}: read {counters} of {total:,} produced")
        return read_rate(status)


def throughput(bootstrap: str, data: Path, width: int, categorical: int, events: int,
               runs: int, timeout: float) -> dict[str, Any]:
    rows = wide_rows(scenario_rows("stable", events), width, categorical)
    topics, settings = fresh_topics(bootstrap, f"features{width}")
    started = time.monotonic()
    result = produce_scenario(settings, rows)
    total = result.events
    size = sum(len(orjson.dumps(row_events(r, layout_of(rows[0]))[0])) for r in rows[:1000]) / min(1000, len(rows))
    log(f"{width} features: {total:,} events produced in {time.monotonic() - started:.0f} s "
        f"(prediction events ~{size:,.0f} bytes)")
    del rows
    out: dict[str, Any] = {"width": width, "events": total, "bytes": size, "noop": [], "worker": [], "load": [],
                           "failed": ""}
    for i in range(runs):
        before = load_average()
        out["noop"].append(consumer_rate("benchmarks.noop_app", bootstrap, topics, data / f"noop-{width}-{i}",
                                         total, f"{width} features, round {i + 1}, do-nothing agent", timeout))
        try:
            out["worker"].append(consumer_rate("streams.app", bootstrap, topics, data / f"worker-{width}-{i}", total,
                                               f"{width} features, round {i + 1}, worker", timeout))
        except (RuntimeError, AssertionError) as err:  # did not read everything in time (or stop)
            out["failed"] = f"the worker did not read the {total:,} events within {timeout:,.0f} s"
            log(f"{width} features, round {i + 1}: {out['failed']}: {str(err).splitlines()[0][:200]}")
            break
        out["load"].append(f"{before} -> {load_average()}")
        log(f"{width} features, round {i + 1}: do-nothing agent {out['noop'][-1]:,.0f}/s, worker "
            f"{out['worker'][-1]:,.0f}/s ({out['worker'][-1] / out['noop'][-1]:.2f}x)")
    return out


def memory(bootstrap: str, data: Path, width: int, categorical: int, pending: int, apart: bool) -> dict[str, Any]:
    where = data / f"pending-{width}"
    where.mkdir(parents=True, exist_ok=True)
    write_pending(where / "pending.jsonl", pending, width, categorical)  # the file pending_memory reads
    try:
        result = bench_backlog.pending_memory(bootstrap, where, pending)
    except (RuntimeError, AssertionError) as err:
        log(f"{width} features: the memory run failed: {str(err).splitlines()[0][:200]}")
        return {"failed": True, "pending": pending,
                "in_process": bench_state._run_child("new", "rss", where / "pending.jsonl")["bytes_per_pending"]}
    if apart:  # ClickHouse in a process of its own: the worker's own share, and the engine's
        alone = bench_backlog.pending_memory(bootstrap, where, pending, front=True)
        result |= {"apart": alone["slope"], "store": alone["store_slope"]}
    log(f"{width} features: {result['in_process']:,.0f} bytes per pending request in the join state, "
        f"{result['slope']:,.0f} in the worker (RSS slope)"
        + (f", {result['apart']:,.0f} with ClickHouse apart (+ {result['store']:,.0f} in ClickHouse)" if apart else ""))
    return result


def report(args: argparse.Namespace, seconds: float, runs: list[dict[str, Any]],
           memories: dict[int, dict[str, Any]]) -> str:
    rows = []
    for r in runs:
        mem = memories.get(r["width"])
        worker = mem and not mem.get("failed")
        if r["worker"]:
            ratios = [w / n for w, n in zip(r["worker"], r["noop"], strict=False)]
            figures = [spread(r["worker"])[1], f"**{statistics.median(r['worker']) / statistics.median(r['noop']):.2f}**",
                       f"{min(ratios):.2f}-{max(ratios):.2f}"]
        else:
            figures = ["did not finish", "", ""]
        rows.append([f"{r['width']} + {args.categorical}", f"{r['bytes']:,.0f}", f"{r['events']:,}",
                     spread(r["noop"])[1], *figures,
                     f"{mem['in_process']:,.0f}" if mem else "", f"{mem['slope']:,.0f}" if worker else "",
                     *([f"{mem['apart']:,.0f} + {mem['store']:,.0f}" if worker else ""] if args.apart else [])])
    header = ["features (numeric + categorical)", "prediction event (bytes)", "events",
              "do-nothing Faust agent (events/s, median)", "full worker (events/s, median)",
              "worker / agent (medians)", "per round", "bytes per pending: join state alone",
              "bytes per pending: whole worker (RSS slope)",
              *(["the same with ClickHouse apart: worker + ClickHouse"] if args.apart else [])]
    pending = next(iter(memories.values()))["pending"] if memories else 0
    failed = [f"{r['width']} features: {r['failed']}" for r in runs if r["failed"]]
    failed += [f"{w} features: the whole-worker memory run did not finish" for w, m in memories.items()
               if m.get("failed")]
    lines = [f"Measured {now_utc()} by `{args.command}` ({seconds / 60:.0f} min), commit {commit()}.",
             f"Machine: {machine()}.", "",
             f"The `stable` scenario's requests (about {args.events:,} events per width, 4 partitions per input "
             f"topic) with W numeric and {args.categorical} categorical features per prediction; "
             f"{args.runs} round(s) per width, each consumer reading from the beginning with a fresh group (and "
             "store). Memory: " + (f"{pending:,} distinct never-labeled predictions per width, JOIN_TTL_SECONDS "
                                   "of a year; the worker's figure is the slope of its RSS over the number "
                                   f"pending from {pending // 10:,} to {pending:,}." if memories else "not measured."),
             "", markdown_table(header, rows), ""]
    if failed:
        lines += ["Not finished: " + "; ".join(failed) + ".", ""]
    lines.append("Load average (1/5/15 min) before -> after each round: "
                 + "; ".join(f"{r['width']}: " + ", ".join(r["load"]) for r in runs) + ".")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default=",".join(map(str, WIDTHS)), help="numeric features per prediction")
    parser.add_argument("--categorical", type=int, default=3, help="categorical features per prediction")
    parser.add_argument("--events", type=int, default=40_000, help="about this many input events per width")
    parser.add_argument("--runs", type=int, default=2, help="rounds per width")
    parser.add_argument("--pending", type=int, default=100_000, help="pending predictions per width (0: skip memory)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds a consumer may take to read a width")
    parser.add_argument("--apart", action="store_true",
                        help="memory also with ClickHouse in a process of its own (worker's and engine's shares)")
    parser.add_argument("--write", nargs="?", const=BENCHMARKS_MD, type=Path, metavar="FILE",
                        help="update the bench-features section of BENCHMARKS.md (or FILE)")
    args = parser.parse_args(argv)
    args.command = "python -m benchmarks.bench_features " + " ".join(argv if argv is not None else sys.argv[1:])
    widths = [int(w) for w in args.widths.split(",")]
    started = time.monotonic()
    runs, memories = [], {}
    with local_broker("bench-features-") as (broker, data):
        for width in widths:
            if args.runs:
                runs.append(throughput(broker.bootstrap, data, width, args.categorical, args.events, args.runs,
                                       args.timeout))
        for width in widths:
            if args.pending:
                memories[width] = memory(broker.bootstrap, data, width, args.categorical, args.pending, args.apart)
    text = report(args, time.monotonic() - started, runs, memories)
    print(text)
    if args.write:
        write_section("bench-features", text, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
