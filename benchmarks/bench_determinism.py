"""One log, four ways: the same alerts on 1 partition, on 8, on 4 with three kill -9, backlog and live.

For each built-in scenario (producers.scenarios, seed 0, the runs of bench_alerts; not
``stable-long`` unless asked for), for ``mixed``, the seven base scenarios in one log (each
its own model, with one reference file keyed by model and version), and for the logs of other
shapes in benchmarks/foreign_logs.py (``ticket-router``, ``churn-daily``), the file is replayed by
producers.replay into three fresh topic sets on one broker: 1 partition, 8 partitions and 4
partitions, and a fourth set of 4 partitions for the live way. Each set is read by a fresh
worker (`faust -A streams.app worker`, own group and store) with the settings a user would
give: defaults apart from WINDOW_SECONDS (the log's window) and REFERENCE_PATH (LABEL_GRACE_SECONDS stays
86400, MONITOR_IDLE_SECONDS 30). The first three sets are backlogs: replayed, then read; the
4-partition worker is killed with SIGKILL three times, after reading a quarter, a fifth and a
sixth more of the backlog in its successive lives, then started a fourth time and left to
finish. Live: the worker is started first, then the file is replayed at LIVE_SPEED x real time
(faster for a log spanning more than LIVE_SPEED x LIVE_REPLAY_S, so that it lasts LIVE_REPLAY_S)
while the worker is killed LIVE_LIFE_S after each of its first three starts and restarted at
once.

When a worker has drained its input and its watermarks reached the last event, it is stopped
(SIGTERM) and its store is read: the alert rows (`monitoring.alerts FINAL`: alert_id, type,
subject, status, window), the window figures, the drift rows and the distinct outcomes. The
four must be equal; the report lists, per scenario, the alerts of the 1-partition run and
whether each other way holds the same alert rows and figures.

    python -m benchmarks.bench_determinism [--only degradation,canary] [--write]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.bench_alerts import RUNS, RunSpec
from benchmarks.common import (
    BENCHMARKS_MD,
    commit,
    fresh_topics,
    load_average,
    local_broker,
    log,
    machine,
    now_utc,
    replay_all,
    wait_up,
    write_section,
)
from benchmarks.foreign_logs import FOREIGN_LOGS
from benchmarks.markdown import markdown_table
from producers.scenarios import COLUMNS, REFERENCE_COLUMNS, parse_start, reference_path, write
from streams.settings import Settings
from streams.tabular import read_rows, write_rows
from tests.figures_snapshot import snapshot
from tests.worker_harness import WorkerRun, worker_env


@dataclass(frozen=True)
class WaySpec:
    """One way of reading a log: partitions, SIGKILLs on the way, and whether the worker runs
    before the replay (live, at ``LIVE_SPEED``) or after it (backlog)."""
    name: str
    partitions: int
    kills: int = 0
    live: bool = False


WAYS = (WaySpec("1 partition", 1), WaySpec("8 partitions", 8), WaySpec("4 partitions, 3 kills", 4, 3),
        WaySpec("4 partitions live, 3 kills", 4, 3, live=True))
KILL_AFTER = (4, 5, 6)  # backlog: life k reads total // KILL_AFTER[k] more messages, then SIGKILL
LIVE_SPEED = 2000.0  # x real time at least: a 20-period scenario with labels up to 12 h late replays in ~1 min
LIVE_REPLAY_S = 60.0  # live: a log whose events span longer is replayed faster, so that it lasts this long
LIVE_TAIL_S = 5.0  # live: after the replay's last acknowledgement, before waiting for the worker to settle
LIVE_LIFE_S = 12.0  # live: each killed life lasts this long from its start (~5 s of it start-up)
ALERT_ROWS = ("SELECT alert_id, model, model_version, type, subject, status, "
              "toUnixTimestamp64Milli(window_start) FROM monitoring.alerts FINAL ORDER BY 1")
MIXED = ("stable", "degradation", "feature-drift", "sudden-drift", "covariate-shift", "label-outage", "canary")
NAMES = (*(s.name for s in RUNS), "mixed", *FOREIGN_LOGS)
DEFAULT_RUNS = (*(s.name for s in RUNS if s.name != "stable-long"), "mixed", *FOREIGN_LOGS)


@dataclass
class Way:
    """What one way of reading the log left in its store, and how long it took."""
    name: str
    store: dict[str, list[tuple]]
    seconds: float
    lives: int
    run: WorkerRun  # stopped; its store can still be queried


def replay_file(rows_path: Path, settings: Settings, speed: float | None = None) -> int:
    """The file through the project's replay producer, every event acknowledged: events sent."""
    return replay_all(rows_path, settings, speed=speed).events


def read_backlog(name: str, run: WorkerRun, events: int, kills: int) -> None:
    """Start the worker on the whole backlog; kill it ``kills`` times after it read a share more."""
    for life in range(kills):
        run.start().wait_for_messages(events // KILL_AFTER[life % len(KILL_AFTER)], timeout=600, settle=0)
        run.kill()
        log(f"{name}: life {life + 1} killed with SIGKILL")
    run.start().wait_until_settled(events, timeout=900, counted_since_start=kills > 0)


def live_speed(rows_path: Path) -> float:
    """LIVE_SPEED, or faster for a log whose events (predictions and labels) span more than
    LIVE_SPEED x LIVE_REPLAY_S: a month of daily windows would otherwise replay for half an hour."""
    stamps = [parse_start(str(row[column])) for _line, row in read_rows(rows_path)
              for column in ("timestamp", "actual_timestamp") if row.get(column) is not None]
    span_s = (max(stamps) - min(stamps)) / 1000
    return max(LIVE_SPEED, span_s / LIVE_REPLAY_S)


def read_live(name: str, run: WorkerRun, rows_path: Path, settings: Settings, kills: int) -> int:
    """Start the worker, then replay the file at its live speed while the worker is killed
    ``kills`` times, LIVE_LIFE_S after each start, and restarted at once: events sent."""
    speed = live_speed(rows_path)
    run.start()
    wait_up(run)
    with ThreadPoolExecutor(max_workers=1) as pool:
        replaying = pool.submit(replay_file, rows_path, settings, speed)
        for life in range(kills):
            time.sleep(max(0.0, LIVE_LIFE_S - (3.0 if life == 0 else 0.0)))
            if replaying.done():
                log(f"{name}: the replay ended before kill {life + 1}")
            run.kill()
            log(f"{name}: life {life + 1} killed with SIGKILL during the replay")
            run.start()
        events = replaying.result()
    # The tail of a replay is sparse (late labels): the worker may have paused long enough to
    # count as drained just before the last messages came. Give it time to fetch them first.
    time.sleep(LIVE_TAIL_S)
    run.wait_until_settled(events, timeout=900, counted_since_start=kills > 0)
    return events


def read_way(spec: WaySpec, log_: Log, bootstrap: str, workdir: Path, env: dict[str, Any]) -> tuple[int, Way]:
    """One fresh worker reading the log ``spec``'s way: (events, its store at the end)."""
    name = f"{log_.name}, {spec.name}"
    started = time.monotonic()
    topics, settings = fresh_topics(bootstrap, f"det-{log_.name}-{spec.partitions}p", spec.partitions)
    workdir.mkdir(parents=True, exist_ok=True)
    run = WorkerRun(worker_env(bootstrap, topics, workdir, **env, TOPIC_PARTITIONS=spec.partitions), workdir)
    if spec.live:
        events = read_live(name, run, log_.rows_path, settings, spec.kills)
    else:
        events = replay_file(log_.rows_path, settings)
        log(f"{name}: {events:,} events replayed; reading them")
        read_backlog(name, run, events, spec.kills)
    code = run.stop(timeout=300)
    if code != 0:
        raise RuntimeError(f"{name}: worker exited with {code}:\n{run.log_tail()}")
    store = snapshot(run)
    store["alert_rows"] = run.query(ALERT_ROWS)
    way = Way(spec.name, store, time.monotonic() - started, spec.kills + 1, run)
    log(f"{name}: {len(store['alert_rows'])} alert rows in {way.seconds:.0f} s (load {load_average()})")
    return events, way


@dataclass(frozen=True)
class Log:
    """An inference log in the replay shape, its reference file and its windows."""
    name: str
    rows_path: Path
    ref_path: Path
    start_ms: int
    period_ms: int


def scenario_log(spec: RunSpec, scratch: Path) -> Log:
    """One built-in scenario written as a file, with its reference beside it."""
    scenario = spec.generate()
    rows_path, ref_path = write(scenario, scratch / f"{spec.name}.csv")
    return Log(spec.name, rows_path, ref_path, parse_start(scenario.start), scenario.period_seconds * 1000)


def mixed_log(scratch: Path) -> Log:
    """The seven base scenarios in one log (each its own model; they share start and windows),
    with one reference file holding every (model, version)'s rows."""
    rows: list[dict[str, Any]] = []
    reference: list[dict[str, Any]] = []
    for spec in RUNS:
        if spec.name not in MIXED:
            continue
        scenario = spec.generate()
        rows += scenario.rows
        for version in sorted({row["model_version"] for row in scenario.rows}):
            reference += [{**row, "model": scenario.model, "model_version": version} for row in scenario.reference]
        start_ms, period_ms = parse_start(scenario.start), scenario.period_seconds * 1000
    rows.sort(key=lambda row: (row["timestamp"], row["request_id"]))
    rows_path = write_rows(scratch / "mixed.csv", rows, COLUMNS)
    ref_path = write_rows(reference_path(rows_path), reference, (*REFERENCE_COLUMNS, "model", "model_version"))
    return Log("mixed", rows_path, ref_path, start_ms, period_ms)


def foreign_log(name: str, scratch: Path) -> Log:
    """One of benchmarks.foreign_logs: shapes unlike the built-in scenarios."""
    written = FOREIGN_LOGS[name](scratch)
    return Log(name, written.rows_path, written.ref_path, written.start_ms, written.window_seconds * 1000)


def make_log(name: str, scratch: Path) -> Log:
    """The log a run name stands for, written under ``scratch``."""
    if name == "mixed":
        return mixed_log(scratch)
    if name in FOREIGN_LOGS:
        return foreign_log(name, scratch)
    return scenario_log(next(s for s in RUNS if s.name == name), scratch)


def run_log(log_: Log) -> tuple[int, list[Way]]:
    """The log read the three ways, each on fresh topics of one broker: (events, ways)."""
    env = {"WINDOW_SECONDS": log_.period_ms // 1000, "REFERENCE_PATH": str(log_.ref_path.resolve())}
    ways: list[Way] = []
    with local_broker(f"bench-determinism-{log_.name}-") as (broker, data):
        for i, spec in enumerate(WAYS):
            events, way = read_way(spec, log_, broker.bootstrap, data / f"way-{i}", env)
            ways.append(way)
    return events, ways


def alert_summary(rows: list[tuple], start_ms: int, period_ms: int) -> str:
    """`type subject: F5 R9` per condition, in window order."""
    by_condition: dict[tuple[str, str, str, str], list[str]] = {}
    for _id, model, version, kind, subject, status, window_ms in sorted(rows, key=lambda r: r[6]):
        mark = "F" if status == "firing" else "R"
        by_condition.setdefault((model, version, kind, subject), []).append(
            f"{mark}{(window_ms - start_ms) // period_ms}")
    return "; ".join(f"{kind} {subject} ({model} {version}): {' '.join(marks)}"
                     for (model, version, kind, subject), marks in sorted(by_condition.items())) or "no alert"


def report(results: dict[str, tuple[int, list[Way]]], logs: dict[str, Log],
           command: str, minutes: float) -> str:
    table = []
    equal_all = True
    for name, (events, ways) in results.items():
        first = ways[0].store
        same = [all(w.store[k] == first[k] for k in ("alert_rows", "figures", "drift", "outcomes")) for w in ways[1:]]
        equal_all &= all(same)
        table.append([f"{name} ({events:,} events)", str(len(first["alert_rows"])),
                      *("yes" if s else "**no**" for s in same),
                      ", ".join(f"{w.seconds:.0f}" for w in ways)])
    lines = [
        "## One log, four ways: 1 partition, 8 partitions, 4 partitions with three kill -9, backlog and live",
        "",
        f"Measured {now_utc()} by `{command}` ({minutes:.0f} min), commit {commit()}.",
        f"Machine: {machine()}.",
        "",
        "Each scenario file (producers.scenarios, seed 0, the runs of bench-alerts; mixed: the seven "
        "base scenarios in one log, each its own model, one reference file keyed by model and version; "
        "ticket-router and churn-daily: logs of other shapes from benchmarks/foreign_logs.py, three string "
        "classes in 15-minute windows from JSONL, and boolean labels without scores in daily windows from "
        "Parquet with labels 1-5 days late) replayed by "
        "producers.replay into fresh topics and read by a fresh worker with defaults apart from "
        "WINDOW_SECONDS (the log's window: 3600 s for the scenarios) and REFERENCE_PATH "
        "(LABEL_GRACE_SECONDS 86400, MONITOR_IDLE_SECONDS 30). "
        "1 partition, 8 partitions: backlogs (replayed, then read). 4 partitions, 3 kills: a backlog "
        "whose worker is killed with SIGKILL after reading a quarter, a fifth and a sixth more of it "
        f"in its first three lives. 4 partitions live: the worker first, then the replay at {LIVE_SPEED:g}x "
        f"real time (faster for a log whose events span more than {LIVE_SPEED * LIVE_REPLAY_S / 3600:g} h, so that "
        f"it lasts {LIVE_REPLAY_S:g} s: churn-daily), the worker killed with SIGKILL {LIVE_LIFE_S:g} s after each of its first three "
        "starts and restarted at once. Equal: the same alert rows (alert_id, model, version, type, "
        "subject, status, window), window figures, drift rows and distinct outcomes as the "
        "1-partition run.",
        "",
        markdown_table(["scenario", "alerts", *(f"{w.name} equal" for w in WAYS[1:]),
                        f"seconds ({', '.join(w.name for w in WAYS)})"], table),
        "",
        f"All equal: **{'yes' if equal_all else 'no'}**.",
        "",
        "Alerts of the 1-partition run (F/R = firing/resolved at window index):",
    ]
    for name, (_events, ways) in results.items():
        lines.append(f"- {name}: {alert_summary(ways[0].store['alert_rows'], logs[name].start_ms, logs[name].period_ms)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(DEFAULT_RUNS), help=f"comma-separated runs of {', '.join(NAMES)}")
    parser.add_argument("--write", nargs="?", const=BENCHMARKS_MD, type=Path, metavar="FILE",
                        help="update the bench-determinism section of BENCHMARKS.md (or FILE)")
    args = parser.parse_args(argv)
    command = "python -m benchmarks.bench_determinism " + " ".join(argv if argv is not None else sys.argv[1:])
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    if unknown := [n for n in only if n not in NAMES]:
        parser.error(f"unknown run {', '.join(unknown)}: expected some of {', '.join(NAMES)}")
    started = time.monotonic()
    results: dict[str, tuple[int, list[Way]]] = {}
    logs: dict[str, Log] = {}
    with tempfile.TemporaryDirectory(prefix="bench-determinism-") as scratch_dir:
        scratch = Path(scratch_dir)
        for name in only:
            logs[name] = make_log(name, scratch)
            results[name] = run_log(logs[name])
            ways = results[name][1]
            differing = [f"{w.name} ({', '.join(k for k in w.store if w.store[k] != ways[0].store[k])})"
                         for w in ways[1:] if w.store != ways[0].store]
            log(f"{name}: " + (f"DIFFERENT in {'; '.join(differing)}" if differing else "every way equal"))
    text = report(results, logs, command, (time.monotonic() - started) / 60)
    print(text)
    if args.write:
        write_section("bench-determinism", text, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
