"""Alert detection quality through the real stack: every built-in scenario, replayed as a backlog and live.

Runs (producers.scenarios.generate, seed 0; a period = a window = 3600 s):
- ``stable``, ``degradation``, ``feature-drift``, ``sudden-drift``: the default arguments
  (10,000 requests over 20 periods);
- ``stable-long``: ``stable`` with 210,000 requests over 100 periods (~410k events: every
  prediction and every label), a long run for false alarms;
- ``stable-small``: ``stable`` with 2,000 requests over 20 periods, ~100 predictions per
  window, where drift tests have little data.

Each run writes the scenario with producers.scenarios.write (rows and reference file beside
them) and, in each mode, starts a Tansu broker of its own, fresh topics (4 partitions) and a
fresh worker (`faust -A streams.app worker`, own group and store) with the settings a user
would give: defaults apart from WINDOW_SECONDS=3600 and REFERENCE_PATH = the reference file
(LABEL_GRACE_SECONDS stays 86400). Modes:
- backlog: the whole file is replayed (producers.replay) as fast as possible, then the worker
  is started on it;
- live: the worker is started first, then the file is replayed at ``--speed`` x real time
  (1000x for the 20-hour runs: 72 s of predictions, the last labels up to 12 h of event
  time later, ~110 s in all; 2500x for the 100-hour run, ~160 s).
When the worker has read every message and its rows caught up (/status: with the default
MONITOR_IDLE_SECONDS=30 the last partitions stop holding the watermark ~30 s after the last
message), and
``SETTLE_S`` seconds more, every alert is read from the alerts topic (deduplicated by
alert_id, first occurrence, topic order) and from `monitoring.alerts FINAL` (the worker's
/query), and the topic's alerts are compared with the scenario's truth.

Definitions:
- condition: (model, model_version, type, subject); its alert events in topic order.
- window index of an alert: (window_start - scenario start) / 3600 s.
- false alert: a `firing` the scenario's truth does not allow: a (type, subject) the truth
  does not list, or a window index before the period the truth allows it from.
- flap: a `firing` of a condition that had already been resolved earlier in the run
  (fire -> resolve -> fire; an orphan resolve does not count as the resolve).
- repeat: a `firing` while the same condition is already firing (no `resolved` between).
- orphan resolve: a `resolved` with no `firing` of the same condition before it.
- detection delay (windows) of a condition the truth allows: window index of its first
  `firing` minus the period it is allowed from (negative: it fired before, a false alert).
- delay in labels (error_rate_drift): labeled requests whose label timestamp
  (actual_timestamp) lies in [start of the allowed period, detection event time], the
  detection event time being the alert's ``evidence["detected_event_time"]`` when it has
  one, else its window_end.
Truth (type allowed for subject, from period; derived from the scenario's plan, with the
worker's default ACCURACY_THRESHOLD 0.85 and DEGRADATION_THRESHOLD 0.05 and the baseline =
period 0's accuracy, which is the reference's label accuracy):
- accuracy_below_threshold (accuracy): from the first period whose accuracy < 0.85;
- accuracy_drop (accuracy): from the first period whose accuracy <= baseline - 0.05;
- error_rate_drift (error_rate): from the first period whose accuracy < baseline;
- estimated_accuracy_below_threshold (estimated_accuracy): as accuracy_below_threshold;
- feature_drift (each drifted feature) and prediction_drift (`__score__`, `__prediction__`):
  from the change period, when the scenario drifts features;
- labels_missing (labels): from the first period of a label outage;
- version_worse (the old version) and the canary's accuracy alerts: from the period the
  canary starts serving.
So stable: nothing; degradation (0.95 - 0.025 p): accuracy_below_threshold and the estimate
from 5, accuracy_drop from 2, error_rate_drift from 1; feature-drift: age, income, is_premium
and prediction drift from 10; sudden-drift: avg_transaction, credit_score, region, prediction
drift, accuracy_drop and error_rate_drift from 12; covariate-shift (~0.90, then ~0.81 falling
to ~0.75 as credit_score moves): credit_score, prediction drift, both accuracy alerts and the
estimate from 10; label-outage: labels_missing from 8; canary (v2 at 0.87 beside v1 at 0.95):
version_worse against v1 and accuracy_drop from 10.
Targets, per mode: 0 false alerts, 0 flaps, 0 repeats, 0 orphan resolves; degradation:
error_rate_drift fires at window <= 5 (the period accuracy falls below the SLO);
feature-drift: age and income fire at window <= 11 (change + 1) and are never resolved
afterwards; covariate-shift: the estimate fires at window <= 10 (the first below the SLO);
label-outage: labels_missing at window <= 8; canary: version_worse at window <= 11 (its first
window has ~95 labels beside ~380: 0.87 against 0.95 gives p ~ 0.03 there, above the 0.01 of
the rule; two windows pooled prove it).

    .venv/bin/python -m benchmarks.bench_alerts [--only degradation,stable] [--modes backlog,live] [--write]
"""

from __future__ import annotations

import argparse
import bisect
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.common import (
    BENCHMARKS_MD,
    PROGRESS_EVERY_S,
    commit,
    faust_process,
    fresh_topics,
    load_average,
    local_broker,
    log,
    machine,
    now_utc,
    read_topic,
    wait_read,
    wait_up,
    worker_query,
    write_section,
)
from benchmarks.markdown import markdown_table
from producers.replay import ReplayResult, replay
from producers.scenarios import VARIANTS, Scenario, generate, parse_start, write
from streams.settings import Settings, load_settings
from tests.worker_harness import WorkerRun

MODES = ("backlog", "live")
PARTITIONS = 4
SETTLE_S = 5.0
ACCURACY_TOLERANCE = 1e-9  # plan accuracies are rounded to 6 places; 0.95 - 0.05 is 0.8999999999999999
SCORE_SUBJECT, PREDICTION_SUBJECT = "__score__", "__prediction__"

Alert = dict[str, Any]
Subject = tuple[str, str]  # (type, subject)
Allowed = dict[Subject, int]  # (type, subject) -> first period it may fire in


@dataclass(frozen=True)
class RunSpec:
    name: str
    scenario: str
    rows: int | None = None
    periods: int = 20
    speed: float = 1000.0  # live mode: x real time

    def generate(self) -> Scenario:
        return generate(self.scenario, rows=self.rows, periods=self.periods)


RUNS = (
    RunSpec("stable", "stable"),
    RunSpec("degradation", "degradation"),
    RunSpec("feature-drift", "feature-drift"),
    RunSpec("sudden-drift", "sudden-drift"),
    RunSpec("covariate-shift", "covariate-shift"),
    RunSpec("label-outage", "label-outage"),
    RunSpec("canary", "canary"),
    RunSpec("stable-long", "stable", rows=210_000, periods=100, speed=2500.0),
    RunSpec("stable-small", "stable", rows=2000),
)


# -- truth ------------------------------------------------------------------------------------

def truth(expected_accuracy: Sequence[float], change_period: int | None, drifted_features: Sequence[str],
          accuracy_threshold: float, degradation: float) -> Allowed:
    """Which (type, subject) may fire, from which period (see the module docstring)."""
    baseline = expected_accuracy[0]

    def first(test: Any) -> int | None:
        return next((p for p, a in enumerate(expected_accuracy) if test(a)), None)

    allowed: Allowed = {}
    for subject, period in (
        (("accuracy_below_threshold", "accuracy"), first(lambda a: a < accuracy_threshold - ACCURACY_TOLERANCE)),
        (("estimated_accuracy_below_threshold", "estimated_accuracy"),
         first(lambda a: a < accuracy_threshold - ACCURACY_TOLERANCE)),
        (("accuracy_drop", "accuracy"), first(lambda a: a <= baseline - degradation + ACCURACY_TOLERANCE)),
        (("error_rate_drift", "error_rate"), first(lambda a: a < baseline - ACCURACY_TOLERANCE)),
    ):
        if period is not None:
            allowed[subject] = period
    if change_period is not None and drifted_features:
        for feature in drifted_features:
            allowed[("feature_drift", feature)] = change_period
        for subject in (SCORE_SUBJECT, PREDICTION_SUBJECT):
            allowed[("prediction_drift", subject)] = change_period
    return allowed


def scenario_truth(scenario: Scenario, settings: Settings) -> Allowed:
    """:func:`truth`, plus the label outage (labels_missing from its first period) and the
    canary (version_worse against the old version, and the canary's own accuracy alerts
    against the reference's baseline, from the period it starts serving)."""
    allowed = truth(scenario.expected_accuracy, scenario.change_period, scenario.drifted_features,
                    settings.accuracy_threshold, settings.degradation_threshold)
    if scenario.label_outage is not None:
        allowed[("labels_missing", "labels")] = scenario.label_outage[0]
    canary = VARIANTS[scenario.name].canary if scenario.name in VARIANTS else None
    if scenario.canary_version is not None and canary is not None and scenario.change_period is not None:
        allowed[("version_worse", scenario.model_version)] = scenario.change_period
        baseline = scenario.expected_accuracy[0]
        if canary.accuracy <= baseline - settings.degradation_threshold + ACCURACY_TOLERANCE:
            allowed[("accuracy_drop", "accuracy")] = scenario.change_period
        if canary.accuracy < settings.accuracy_threshold - ACCURACY_TOLERANCE:
            allowed[("accuracy_below_threshold", "accuracy")] = scenario.change_period
    return allowed


@dataclass(frozen=True)
class Target:
    """A condition that must fire by window ``by_window`` (and, if ``never_resolved``, stay firing)."""

    type: str
    subject: str
    by_window: int
    never_resolved: bool = False

    def describe(self) -> str:
        return (f"{self.type} {self.subject} fires at window <= {self.by_window}"
                + (" and is never resolved afterwards" if self.never_resolved else ""))


def scenario_targets(scenario: Scenario, allowed: Allowed) -> tuple[Target, ...]:
    """degradation: ADWIN no later than the SLO breach; feature-drift: the two strongly drifted
    numeric features one window after the change, for good (is_premium moves 0.30 -> 0.35 only);
    covariate-shift: the estimate below the SLO in the first window whose accuracy is;
    label-outage: labels_missing on the first window without labels; canary: version_worse
    within one window of the canary's start (one window of it is too small to prove 8 points)."""
    if scenario.name == "degradation" and ("accuracy_below_threshold", "accuracy") in allowed:
        return (Target("error_rate_drift", "error_rate", allowed[("accuracy_below_threshold", "accuracy")]),)
    if scenario.name == "covariate-shift" and ("accuracy_below_threshold", "accuracy") in allowed:
        return (Target("estimated_accuracy_below_threshold", "estimated_accuracy",
                       allowed[("accuracy_below_threshold", "accuracy")]),)
    if scenario.label_outage is not None:
        return (Target("labels_missing", "labels", scenario.label_outage[0]),)
    if ("version_worse", scenario.model_version) in allowed:  # one window of the canary cannot prove it
        return (Target("version_worse", scenario.model_version,
                       allowed[("version_worse", scenario.model_version)] + 1),)
    if scenario.name == "feature-drift" and scenario.change_period is not None:
        return tuple(Target("feature_drift", f, scenario.change_period + 1, never_resolved=True)
                     for f in ("age", "income") if f in scenario.drifted_features)
    return ()


# -- alerts -> figures (pure) -------------------------------------------------------------------

def iso_to_ms(text: str) -> int:
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def dedupe(alerts: Iterable[Alert]) -> list[Alert]:
    """The first event of each alert_id, in topic order."""
    seen: set[str] = set()
    out = []
    for alert in alerts:
        if alert["alert_id"] not in seen:
            seen.add(alert["alert_id"])
            out.append(alert)
    return out


def condition(alert: Alert) -> tuple[str, str, str, str]:
    return alert["model"], alert["model_version"], alert["type"], alert["subject"]


def window_index(alert: Alert, start_ms: int, period_ms: int) -> int | None:
    """(window_start - scenario start) / period; None when the alert has no window."""
    if not alert.get("window_start"):
        return None
    return (iso_to_ms(alert["window_start"]) - start_ms) // period_ms


def is_allowed(alert: Alert, allowed: Allowed, start_ms: int, period_ms: int) -> bool:
    since = allowed.get((alert["type"], alert["subject"]))
    window = window_index(alert, start_ms, period_ms)
    return since is not None and window is not None and window >= since


@dataclass
class Classified:
    """Events per category, each in topic order (a firing may be false and a flap or repeat at once)."""

    firing: int = 0
    resolved: int = 0
    false: list[Alert] = field(default_factory=list)
    flaps: list[Alert] = field(default_factory=list)
    repeats: list[Alert] = field(default_factory=list)
    orphans: list[Alert] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"firing": self.firing, "resolved": self.resolved, "false": len(self.false),
                "flaps": len(self.flaps), "repeats": len(self.repeats), "orphans": len(self.orphans)}


def classify(alerts: Sequence[Alert], allowed: Allowed, start_ms: int, period_ms: int) -> Classified:
    """False alerts, flaps, repeats and orphan resolves of deduplicated alerts in topic order."""
    out = Classified()
    firing: set[tuple[str, ...]] = set()
    fired: set[tuple[str, ...]] = set()
    resolved: set[tuple[str, ...]] = set()
    for alert in alerts:
        key = condition(alert)
        if alert["status"] == "firing":
            out.firing += 1
            if not is_allowed(alert, allowed, start_ms, period_ms):
                out.false.append(alert)
            if key in firing:
                out.repeats.append(alert)
            elif key in resolved:
                out.flaps.append(alert)
            firing.add(key)
            fired.add(key)
        elif alert["status"] == "resolved":
            out.resolved += 1
            if key in fired:
                resolved.add(key)
            else:
                out.orphans.append(alert)
            firing.discard(key)
    return out


def first_firings(alerts: Sequence[Alert]) -> dict[Subject, Alert]:
    """The first `firing` of each (type, subject), in topic order."""
    out: dict[Subject, Alert] = {}
    for alert in alerts:
        if alert["status"] == "firing":
            out.setdefault((alert["type"], alert["subject"]), alert)
    return out


def delays(alerts: Sequence[Alert], allowed: Allowed, start_ms: int, period_ms: int) -> dict[Subject, int | None]:
    """Per allowed (type, subject): window index of its first firing - the period it is allowed from
    (None: never fired)."""
    first = first_firings(alerts)
    out: dict[Subject, int | None] = {}
    for subject, since in allowed.items():
        window = window_index(first[subject], start_ms, period_ms) if subject in first else None
        out[subject] = None if window is None else window - since
    return out


def detection_ms(alert: Alert) -> int | None:
    """The event time the alert was decided at: evidence["detected_event_time"], else window_end."""
    at = (alert.get("evidence") or {}).get("detected_event_time") or alert.get("window_end")
    return iso_to_ms(at) if at else None


def label_times(rows: Iterable[dict[str, Any]]) -> list[int]:
    """Sorted label timestamps (ms) of the distinct labeled requests of a scenario's rows."""
    seen: dict[str, int] = {}
    for row in rows:
        if row.get("actual_timestamp") and row.get("actual_label") is not None:
            seen.setdefault(str(row["request_id"]), iso_to_ms(row["actual_timestamp"]))
    return sorted(seen.values())


def labels_between(times: Sequence[int], start_ms: int, end_ms: int) -> int:
    """How many of the sorted ``times`` lie in [start_ms, end_ms]."""
    return max(0, bisect.bisect_right(times, end_ms) - bisect.bisect_left(times, start_ms))


def label_delay(alerts: Sequence[Alert], times: Sequence[int], since_ms: int) -> int | None:
    """Labels from ``since_ms`` to the detection of the first error_rate_drift firing (None: none)."""
    first = first_firings(alerts).get(("error_rate_drift", "error_rate"))
    at = detection_ms(first) if first else None
    return None if at is None else labels_between(times, since_ms, at)


def check_target(alerts: Sequence[Alert], target: Target, start_ms: int, period_ms: int) -> tuple[bool, str]:
    """(met, detail): first firing window of the target's condition, and any resolve after it."""
    first = first_firings(alerts).get((target.type, target.subject))
    window = window_index(first, start_ms, period_ms) if first else None
    if window is None:
        return False, "never fired"
    detail = f"first firing at window {window}"
    met = window <= target.by_window
    if target.never_resolved:
        after = [a for a in alerts[alerts.index(first):] if a["status"] == "resolved"
                 and (a["type"], a["subject"]) == (target.type, target.subject)]
        if after:
            detail += f", resolved at window {window_index(after[0], start_ms, period_ms)}"
            met = False
    return met, detail


def compare_ids(a: Iterable[str], b: Iterable[str]) -> tuple[bool, int, int]:
    """(same set, ids only in a, ids only in b)."""
    a, b = set(a), set(b)
    return a == b, len(a - b), len(b - a)


def timeline(alerts: Sequence[Alert], start_ms: int, period_ms: int, limit: int = 12) -> list[str]:
    """One line per condition: its events as F<window> / R<window>, in topic order."""
    events: dict[Subject, list[str]] = {}
    for alert in alerts:
        window = window_index(alert, start_ms, period_ms)
        events.setdefault((alert["type"], alert["subject"]), []).append(
            f"{'F' if alert['status'] == 'firing' else 'R'}{'?' if window is None else window}")
    return [f"{t} {s}: {' '.join(e[:limit])}" + (f" ... ({len(e)} events)" if len(e) > limit else "")
            for (t, s), e in events.items()]


# -- runs ---------------------------------------------------------------------------------------

@dataclass
class RunResult:
    spec: RunSpec
    mode: str
    alerts: list[Alert]  # deduplicated, topic order
    topic_messages: int
    store_ids: set[str]
    events: int  # produced and acknowledged
    status: dict[str, Any]
    seconds: dict[str, float]


def replay_file(path: Path, settings: Settings, speed: float | None, label: str,
                run: WorkerRun | None = None) -> ReplayResult:
    """The scenario file through the project's replay producer, with progress lines."""
    last = time.monotonic()

    def progress(done: int, total: int) -> None:
        nonlocal last
        if time.monotonic() - last > PROGRESS_EVERY_S:
            last = time.monotonic()
            status = run.status() if run is not None else None
            read = f"; worker read {status['counters']['messages']:,}" if status else ""
            log(f"{label}: replay {done:,} of {total:,} events sent{read}")

    result = replay(path, settings, speed=speed, progress=progress)
    if not result.ok or result.skipped:
        raise RuntimeError(f"{label}: replay failed: {result.first_error}, {result.skipped} rows skipped")
    return result


def collect(run: WorkerRun, bootstrap: str, topic: str, expected: int, label: str) -> tuple[dict[str, Any], list[Alert], set[str]]:
    """Wait until the worker read everything and its rows caught up, SETTLE_S more, then read the
    alerts from the topic and from the store."""
    wait_read(run, expected, label)
    status = run.wait_until_settled(expected, timeout=900)
    status["settled_at"] = time.time()
    log(f"{label}: worker caught up ({status['counters']['messages']:,} messages read); reading the alerts")
    time.sleep(SETTLE_S)
    store = {row[0] for row in worker_query(run, "SELECT alert_id FROM monitoring.alerts FINAL")}
    messages = read_topic(bootstrap, topic, lambda m: len({a["alert_id"] for a in m}) >= len(store))
    return status, messages, store


def run_mode(spec: RunSpec, rows_path: Path, ref_path: Path, period_seconds: int, mode: str,
             speed: float) -> RunResult:
    label = f"{spec.name} {mode}"
    started = time.monotonic()
    env = {"WINDOW_SECONDS": period_seconds, "REFERENCE_PATH": str(ref_path.resolve()),
           "TOPIC_PARTITIONS": PARTITIONS}
    seconds: dict[str, float] = {}
    with local_broker(f"bench-alerts-{spec.name}-{mode}-") as (broker, data):
        topics, settings = fresh_topics(broker.bootstrap, f"alerts-{spec.name}")
        assert settings.topic_partitions == PARTITIONS
        if mode == "backlog":
            result = replay_file(rows_path, settings, None, label)
            log(f"{label}: {result.events:,} events produced in {result.seconds:.1f} s; starting the worker")
            worker_started = time.time()
            with faust_process("streams.app", broker.bootstrap, topics, data / "worker", **env) as run:
                status, messages, store = collect(run, broker.bootstrap, settings.topic_alerts, result.events, label)
            seconds["start-up"] = status["first_message_at"] - worker_started
            seconds["reading"] = status["last_message_at"] - status["first_message_at"]
            replayed = 0.0
        else:
            with faust_process("streams.app", broker.bootstrap, topics, data / "worker", **env) as run:
                wait_up(run)
                log(f"{label}: worker up; replaying at {speed:g}x real time")
                result = replay_file(rows_path, settings, speed, label, run)
                replayed = time.time()
                status, messages, store = collect(run, broker.bootstrap, settings.topic_alerts, result.events, label)
        seconds["replay"] = result.seconds
        # caught up (rows refreshed, watermarks at the last event) after the last message was read
        seconds["caught up"] = status["settled_at"] - max(status["last_message_at"], replayed)
        seconds["total"] = time.monotonic() - started
    alerts = dedupe(messages)
    log(f"{label}: {len(alerts)} alerts ({len(messages)} messages on the topic, {len(store)} in the store), "
        f"{seconds['total']:.0f} s in all (load {load_average()})")
    return RunResult(spec, mode, alerts, len(messages), store, result.events, status, seconds)


# -- report -------------------------------------------------------------------------------------

@dataclass
class Evaluated:
    result: RunResult
    classified: Classified
    delays: dict[Subject, int | None]
    label_delay: int | None
    targets: list[tuple[str, bool, str]]  # (description, met, detail)


def evaluate(result: RunResult, scenario: Scenario, allowed: Allowed, targets: Sequence[Target],
             times: Sequence[int]) -> Evaluated:
    start_ms, period_ms = parse_start(scenario.start), scenario.period_seconds * 1000
    classified = classify(result.alerts, allowed, start_ms, period_ms)
    erd = allowed.get(("error_rate_drift", "error_rate"))
    checks = [(f"{name} = 0", len(getattr(classified, key)) == 0, str(len(getattr(classified, key))))
              for name, key in (("false alerts", "false"), ("flaps", "flaps"), ("repeats", "repeats"),
                                ("orphan resolves", "orphans"))]
    checks += [(t.describe(), *check_target(result.alerts, t, start_ms, period_ms)) for t in targets]
    return Evaluated(result, classified, delays(result.alerts, allowed, start_ms, period_ms),
                     label_delay(result.alerts, times, start_ms + erd * period_ms) if erd is not None else None,
                     checks)


def cell(value: int | None) -> str:
    return "-" if value is None else str(value)


def report(evaluated: dict[str, dict[str, Evaluated]], truths: dict[str, Allowed],
           scenarios: dict[str, Scenario], args: argparse.Namespace, minutes: float) -> str:
    run_rows, delay_rows, target_lines, odd_lines, timelines = [], [], [], [], []
    for name, modes in evaluated.items():
        same = "-"
        if len(modes) == 2:
            ok, only_b, only_l = compare_ids(*([a["alert_id"] for a in modes[m].result.alerts] for m in MODES))
            same = "yes" if ok else f"no ({only_b} only backlog, {only_l} only live)"
        for mode, e in modes.items():
            c, r = e.classified.counts(), e.result
            topic_ids = {a["alert_id"] for a in r.alerts}
            stored = "yes" if topic_ids == r.store_ids else (f"no ({len(topic_ids - r.store_ids)} only topic, "
                                                             f"{len(r.store_ids - topic_ids)} only store)")
            run_rows.append([f"{name} ({r.events:,} events)", mode, f"{len(r.alerts)} ({c['firing']}/{c['resolved']})",
                             str(c["false"]), str(c["flaps"]), str(c["repeats"]), str(c["orphans"]), stored, same,
                             ", ".join(f"{k} {v:.0f}" for k, v in r.seconds.items())])
            for description, met, detail in e.targets:
                target_lines.append(f"- {name} {mode}: {description}: **{'met' if met else 'missed'}** ({detail})")
            scenario = scenarios[name]
            start_ms, period_ms = parse_start(scenario.start), scenario.period_seconds * 1000
            bad = [("false", a) for a in e.classified.false] + [("flap", a) for a in e.classified.flaps] + \
                  [("repeat", a) for a in e.classified.repeats] + [("orphan", a) for a in e.classified.orphans]
            if bad:
                odd_lines.append(f"- {name} {mode}: " + "; ".join(
                    f"{kind} {a['status']} {a['type']} {a['subject']} window {window_index(a, start_ms, period_ms)}"
                    + (f" value {a['value']:.4g}" if isinstance(a.get("value"), int | float) else "")
                    for kind, a in bad[:8]) + (f"; ... {len(bad)} in all" if len(bad) > 8 else ""))
            timelines.append(f"- {name} {mode}: " + ("; ".join(timeline(r.alerts, start_ms, period_ms)) or "no alert"))
        for (type_, subject), since in truths[name].items():
            cells = [cell(modes[m].delays.get((type_, subject))) if m in modes else "n/a" for m in MODES]
            labels = ([cell(modes[m].label_delay) if m in modes else "n/a" for m in MODES]
                      if type_ == "error_rate_drift" else ["", ""])
            delay_rows.append([name, f"{type_} {subject}", str(since), *cells, *labels])
    truth_lines = [f"- {name}: " + (", ".join(f"{t} {s} from {p}" for (t, s), p in truths[name].items()) or "nothing")
                   for name in evaluated]
    definitions = __doc__.split("Definitions:\n", 1)[1].split("\n\n    .venv", 1)[0]
    return "\n".join([
        "## Alert detection quality: built-in scenarios through the real stack", "",
        f"Measured {now_utc()} by `{args.command}` ({minutes:.0f} min), commit {commit()}.",
        f"Machine: {machine()}.", "",
        "Each scenario file (producers.scenarios, seed 0) replayed by producers.replay into fresh topics "
        f"({PARTITIONS} partitions) on a broker of its own, read by a fresh worker with default settings apart "
        "from WINDOW_SECONDS=3600 and REFERENCE_PATH = the scenario's reference file. backlog: the whole file "
        "produced first, then the worker started; live: the worker first, then the replay at "
        + ", ".join(f"{s.speed:g}x ({s.name})" for s in RUNS if s.name in evaluated)
        + f" real time. Alerts read {SETTLE_S:g} s after the worker caught up, from the alerts topic "
        "(deduplicated by alert_id) and `monitoring.alerts FINAL`.", "",
        "Definitions:", definitions.strip(), "",
        "Truth in force (type subject from period):", *truth_lines, "",
        markdown_table(["run", "mode", "alerts (firing/resolved)", "false", "flaps", "repeats", "orphan resolves",
                        "store = topic", "backlog = live ids", "seconds"], run_rows, right_from=2),
        "",
        "Detection delay in windows after the period each condition is allowed from (`-`: never fired); "
        "error_rate_drift also in labels:", "",
        markdown_table(["run", "condition", "from period", "backlog", "live", "backlog labels", "live labels"],
                       delay_rows, right_from=2) if delay_rows else "(no run here has a condition to detect)",
        "", "Targets:", *target_lines,
        *(["", "Alerts that miss the targets (the first 8 of each run):", *odd_lines] if odd_lines else []),
        "", "Each run's alerts per condition, in topic order (F/R = firing/resolved at window index):", *timelines,
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = [s.name for s in RUNS]
    parser.add_argument("--only", default=",".join(names), help=f"comma-separated runs of {', '.join(names)}")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: backlog, live")
    parser.add_argument("--speed", type=float, default=None, help="live replay speed for every run "
                        "(default: 1000x, 2500x for stable-long)")
    parser.add_argument("--write", nargs="?", const=BENCHMARKS_MD, type=Path, metavar="FILE",
                        help="update the bench-alerts section of BENCHMARKS.md (or FILE)")
    args = parser.parse_args(argv)
    args.command = "python -m benchmarks.bench_alerts " + " ".join(argv if argv is not None else sys.argv[1:])
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if unknown := [n for n in only if n not in names]:
        parser.error(f"unknown run {', '.join(unknown)}: expected some of {', '.join(names)}")
    if bad := [m for m in modes if m not in MODES]:
        parser.error(f"unknown mode {', '.join(bad)}: expected backlog and/or live")
    started = time.monotonic()
    defaults = load_settings({})
    evaluated: dict[str, dict[str, Evaluated]] = {}
    truths: dict[str, Allowed] = {}
    scenarios: dict[str, Scenario] = {}
    with tempfile.TemporaryDirectory(prefix="bench-alerts-") as scratch_dir:
        scratch = Path(scratch_dir)
        for spec in (s for s in RUNS if s.name in only):
            scenario = spec.generate()
            rows_path, ref_path = write(scenario, scratch / f"{spec.name}.csv")
            allowed = scenario_truth(scenario, defaults)
            targets = scenario_targets(scenario, allowed)
            times = label_times(scenario.rows)
            truths[spec.name], scenarios[spec.name] = allowed, scenario
            log(f"{spec.name}: {len(scenario.rows):,} rows over {scenario.periods} periods written; truth "
                + (", ".join(f"{t} {s} from {p}" for (t, s), p in allowed.items()) or "nothing"))
            for mode in modes:
                result = run_mode(spec, rows_path, ref_path, scenario.period_seconds, mode, args.speed or spec.speed)
                e = evaluate(result, scenario, allowed, targets, times)
                evaluated.setdefault(spec.name, {})[mode] = e
                log(f"{spec.name} {mode}: " + ", ".join(f"{k} {v}" for k, v in e.classified.counts().items())
                    + "; " + "; ".join(f"{d}: {'met' if met else 'MISSED'} ({detail})" for d, met, detail in e.targets))
    text = report(evaluated, truths, scenarios, args, (time.monotonic() - started) / 60)
    print(text)
    if args.write:
        write_section("bench-alerts", text, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
