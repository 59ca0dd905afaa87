"""Built-in scenarios: inference logs whose true figures are known before the monitor runs.

Each scenario is a binary classifier's log over ``periods`` consecutive periods, in the
replay shape of the contract, with realistic label behaviour (late labels, a few never
labeled, a few labeled before the prediction, a few duplicate rows) and a reference
file drawn from the pre-drift distribution. Accuracy is constructed exactly: among the
distinct labeled requests of period p, ``round(acc_p * labeled_p)`` are correct, so
the worker's window figures can be checked to the count, not to a sampling error.

>>> s = generate("degradation", rows=2000, periods=4)
>>> [(p.predictions, p.labeled, p.correct) for p in s.period_summaries]
[(500, 475, 451), (500, 471, 436), (500, 469, 422), (500, 477, 417)]
>>> s.expected_accuracy
[0.95, 0.925, 0.9, 0.875]
>>> s.rows[0]["request_id"], s.rows[0]["timestamp"], s.rows[0]["model"]
('degradation-0-0000000', '2026-01-05T00:00:13.254Z', 'banking-campaign')

Command line: ``python -m producers.scenarios NAME --out FILE`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from streams.tabular import write_rows

FEATURES = (
    "age", "income", "credit_score", "num_purchases", "account_age_days",
    "avg_transaction", "num_returns", "is_premium", "region", "category_preference",
)
COLUMNS = (
    "request_id", "timestamp", "model", "model_version", "prediction",
    "prediction_probability_0", "prediction_probability_1", "actual_label",
    "actual_timestamp", "latency_ms", *FEATURES,
)
REFERENCE_COLUMNS = (*FEATURES, "score", "prediction", "label")
REGIONS = ("north", "south", "east", "west")
DEFAULT_START = "2026-01-05T00:00:00Z"

UNLABELED_SHARE = 0.05
EARLY_LABEL_SHARE = 0.01
DUPLICATE_SHARE = 0.005
LABEL_DELAY_MEDIAN_S = 1800.0
LABEL_DELAY_BOUNDS_S = (60.0, 12 * 3600.0)
EARLY_LABEL_MAX_S = 300.0
REFERENCE_ROWS = 5000
MIN_REFERENCE_ROWS = 1000


@dataclass(frozen=True)
class FeatureShift:
    """Parameters of the feature distributions; the defaults are the baseline."""

    age_mean: float = 35.0
    age_sd: float = 10.0
    income_mean: float = 65000.0
    income_sd: float = 20000.0
    premium_rate: float = 0.3
    credit_shift: float = 0.0
    transaction_factor: float = 1.0
    offshore_share: float = 0.0


BASELINE = FeatureShift()
GRADUAL_DRIFT = replace(BASELINE, age_mean=38.0, age_sd=12.0, income_mean=70000.0,
                        income_sd=25000.0, premium_rate=0.35)
OOD_SHIFT = replace(BASELINE, credit_shift=-120.0, transaction_factor=3.0, offshore_share=0.3)


@dataclass(frozen=True)
class Plan:
    """What a scenario does over time: accuracy, feature distribution and change point."""

    default_model: str
    description: str
    accuracy: Callable[[int, int], float]  # (period, periods) -> target accuracy
    change_period: Callable[[int], int | None] = lambda periods: None
    shifted: FeatureShift = BASELINE
    drifted_features: tuple[str, ...] = ()

    def features_at(self, period: int, periods: int) -> FeatureShift:
        change = self.change_period(periods)
        return self.shifted if change is not None and period >= change else BASELINE


PLANS: dict[str, Plan] = {
    "stable": Plan(
        "fraud-detector",
        "Stationary features and predictions, accuracy 0.92 in every period.",
        lambda p, n: 0.92,
    ),
    "degradation": Plan(
        "banking-campaign",
        "Stationary features; accuracy 0.95 in period 0, 2.5 points lower each period.",
        lambda p, n: max(0.0, round(0.95 - 0.025 * p, 6)),
    ),
    "feature-drift": Plan(
        "customer-churn",
        "Accuracy 0.92 throughout; from the middle period on age, income and is_premium drift.",
        lambda p, n: 0.92,
        change_period=lambda n: n // 2,
        shifted=GRADUAL_DRIFT,
        drifted_features=("age", "income", "is_premium"),
    ),
    "sudden-drift": Plan(
        "credit-risk",
        "Out-of-distribution shift at 3/5 of the periods: avg_transaction x3, credit_score -120, "
        "new region 'offshore' for ~30% of rows; accuracy 0.96 before, 0.88 from then on.",
        lambda p, n: 0.96 if p < n * 3 // 5 else 0.88,
        change_period=lambda n: n * 3 // 5,
        shifted=OOD_SHIFT,
        drifted_features=("avg_transaction", "credit_score", "region"),
    ),
}


@dataclass(frozen=True)
class PeriodSummary:
    """The exact figures of one period: what a monitor with aligned windows must report."""

    period: int
    start: str
    rows: int  # rows written, duplicates included
    predictions: int  # distinct requests
    labeled: int
    correct: int
    expected_accuracy: float

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labeled if self.labeled else None


@dataclass
class Scenario:
    """A generated inference log (``rows``, replay shape) and its reference rows."""

    name: str
    description: str
    model: str
    model_version: str
    seed: int
    start: str
    periods: int
    period_seconds: int
    rows: list[dict[str, Any]]
    reference: list[dict[str, Any]]
    expected_accuracy: list[float]
    period_summaries: list[PeriodSummary]
    change_period: int | None = None
    change_start: str | None = None
    drifted_features: tuple[str, ...] = ()
    columns: tuple[str, ...] = field(default=COLUMNS)
    label_outage: tuple[int, int] | None = None  # periods [start, end) whose predictions never get labels
    canary_version: str | None = None  # a second version serving part of the traffic from change_period on


# --- sampling ---

def _sample_features(rng: np.random.Generator, n: int, shift: FeatureShift) -> dict[str, np.ndarray]:
    """Features as in the drift lab's baseline (seed 002), moved by ``shift``."""
    region = rng.choice(np.array(REGIONS, dtype=object), n)
    if shift.offshore_share:
        region[rng.random(n) < shift.offshore_share] = "offshore"
    return {
        "age": np.round(np.clip(rng.normal(shift.age_mean, shift.age_sd, n), 18, 80), 2),
        "income": np.round(np.clip(rng.normal(shift.income_mean, shift.income_sd, n), 20000, 200000), 2),
        "credit_score": np.round(np.clip(rng.normal(700, 50, n) + shift.credit_shift, 300, 850), 2),
        "num_purchases": rng.poisson(5, n),
        "account_age_days": np.round(rng.uniform(1, 3650, n), 2),
        "avg_transaction": np.round(rng.lognormal(4.5, 0.8, n) * shift.transaction_factor, 2),
        "num_returns": rng.poisson(1, n),
        "is_premium": rng.binomial(1, shift.premium_rate, n),
        "region": region,
        "category_preference": rng.integers(1, 10, n),
    }


def positive_probability(features: dict[str, np.ndarray]) -> np.ndarray:
    """The model: a fixed logistic function of the features, so drift moves its scores.

    >>> one = {k: np.array([v]) for k, v in dict(age=35, income=65000, credit_score=700,
    ...        num_purchases=5, avg_transaction=90.0, num_returns=1, is_premium=0).items()}
    >>> positive_probability(one).tolist()
    [0.2994]
    """
    return np.round(1.0 / (1.0 + np.exp(-_logit(features))), 4)


def _logit(features: dict[str, np.ndarray]) -> np.ndarray:
    """The log-odds of :func:`positive_probability`, unrounded."""
    return (
        -0.85
        + 0.35 * (features["age"] - 35) / 10
        + 0.30 * (features["income"] - 65000) / 20000
        - 0.90 * (features["credit_score"] - 700) / 50
        + 0.45 * (np.log(features["avg_transaction"]) - 4.5) / 0.8
        + 0.15 * (features["num_purchases"] - 5) / 2.24
        + 0.30 * (features["num_returns"] - 1)
        - 0.40 * features["is_premium"]
    )


def _exact_correct(rng: np.random.Generator, labeled: np.ndarray, accuracy: float) -> np.ndarray:
    """Mask of correct requests: exactly round(accuracy * labeled) of the labeled ones."""
    chosen = np.flatnonzero(labeled)
    k = math.floor(accuracy * len(chosen) + 0.5)
    correct = np.zeros(len(labeled), dtype=bool)
    correct[rng.choice(chosen, k, replace=False)] = True
    return correct


def _label_delays_ms(rng: np.random.Generator, n: int) -> np.ndarray:
    """Label delays: lognormal around 30 min, ~1% negative (labeled before the prediction)."""
    low, high = LABEL_DELAY_BOUNDS_S
    delays = np.clip(rng.lognormal(math.log(LABEL_DELAY_MEDIAN_S), 1.0, n), low, high)
    early = rng.random(n) < EARLY_LABEL_SHARE
    delays[early] = -rng.uniform(1, EARLY_LABEL_MAX_S, int(early.sum()))
    return np.round(delays * 1000).astype(np.int64)


def iso_ms(epoch_ms: np.ndarray) -> list[str]:
    """ISO-8601 UTC strings with milliseconds and 'Z'.

    >>> iso_ms(np.array([1767571200000, 1767571200123]))
    ['2026-01-05T00:00:00.000Z', '2026-01-05T00:00:00.123Z']
    """
    text = np.datetime_as_string(np.asarray(epoch_ms, dtype="datetime64[ms]"), unit="ms")
    return [t + "Z" for t in text.tolist()]


def parse_start(start: str | datetime) -> int:
    """Epoch milliseconds of an ISO-8601 start (UTC when it has no offset)."""
    try:
        moment = datetime.fromisoformat(start) if isinstance(start, str) else start
    except ValueError:
        raise ValueError(f"start={start!r} is not valid: expected ISO-8601 such as {DEFAULT_START}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


# --- one period ---

@dataclass(frozen=True)
class _Period:
    index: int
    n: int
    start_ms: int
    length_ms: int
    accuracy: float
    shift: FeatureShift


def _period_rows(rng: np.random.Generator, period: _Period, ids: Sequence[str],
                 model: str, model_version: str) -> tuple[list[dict[str, Any]], PeriodSummary]:
    """The rows of one period (duplicates placed next to their original) and its figures."""
    n = period.n
    features = _sample_features(rng, n, period.shift)
    p1 = positive_probability(features)
    prediction = (p1 >= 0.5).astype(np.int64)
    ts = np.sort(period.start_ms + rng.integers(0, period.length_ms, n))
    labeled = rng.random(n) >= UNLABELED_SHARE
    correct = _exact_correct(rng, labeled, period.accuracy)
    label = np.where(correct, prediction, 1 - prediction)
    actual_ts = ts + _label_delays_ms(rng, n)
    latency = np.round(rng.lognormal(math.log(12.0), 0.5, n), 2)
    duplicate = rng.random(n) < DUPLICATE_SHARE
    rows = _emit_rows(ids, model, model_version, features, p1, prediction, ts, labeled, label, actual_ts,
                      latency, duplicate)
    summary = PeriodSummary(
        period=period.index,
        start=iso_ms(np.array([period.start_ms]))[0],
        rows=len(rows),
        predictions=n,
        labeled=int(labeled.sum()),
        correct=int(correct.sum()),
        expected_accuracy=period.accuracy,
    )
    return rows, summary


def _emit_rows(ids: Sequence[str], model: str, model_version: str, features: dict[str, np.ndarray],
               p1: np.ndarray, prediction: np.ndarray, ts: np.ndarray, labeled: np.ndarray, label: np.ndarray,
               actual_ts: np.ndarray, latency: np.ndarray, duplicate: np.ndarray) -> list[dict[str, Any]]:
    """Rows in the replay shape, a duplicate placed next to its original."""
    n = len(ids)
    columns = {name: values.tolist() for name, values in features.items()}
    stamps, label_stamps = iso_ms(ts), iso_ms(actual_ts)
    p1_list, pred_list, label_list = p1.tolist(), prediction.tolist(), label.tolist()
    labeled_list, latency_list, duplicate_list = labeled.tolist(), latency.tolist(), duplicate.tolist()
    rows: list[dict[str, Any]] = []
    for i in range(n):
        row = {
            "request_id": ids[i],
            "timestamp": stamps[i],
            "model": model,
            "model_version": model_version,
            "prediction": pred_list[i],
            "prediction_probability_0": round(1.0 - p1_list[i], 4),
            "prediction_probability_1": p1_list[i],
            "actual_label": label_list[i] if labeled_list[i] else None,
            "actual_timestamp": label_stamps[i] if labeled_list[i] else None,
            "latency_ms": latency_list[i],
        }
        for name in FEATURES:
            row[name] = columns[name][i]
        rows.append(row)
        if duplicate_list[i]:
            rows.append(dict(row))
    return rows


def _reference_rows(rng: np.random.Generator, n: int, accuracy: float) -> list[dict[str, Any]]:
    """Baseline rows with score, prediction and a label at the period-0 accuracy (exactly)."""
    features = _sample_features(rng, n, BASELINE)
    p1 = positive_probability(features)
    prediction = (p1 >= 0.5).astype(np.int64)
    correct = _exact_correct(rng, np.ones(n, dtype=bool), accuracy)
    label = np.where(correct, prediction, 1 - prediction)
    columns = {name: values.tolist() for name, values in features.items()}
    columns |= {"score": p1.tolist(), "prediction": prediction.tolist(), "label": label.tolist()}
    return [{name: columns[name][i] for name in REFERENCE_COLUMNS} for i in range(n)]


# --- the API ---

def generate(
    name: str,
    seed: int = 0,
    rows: int | None = None,
    periods: int = 20,
    period_seconds: int = 3600,
    start: str | datetime = DEFAULT_START,
    model: str | None = None,
    model_version: str = "v1",
    label_outage: tuple[int, int] | None = None,
) -> Scenario:
    """Generate scenario ``name`` (one of :data:`PLANS` or :data:`VARIANTS`); the same arguments
    give the same rows.

    ``rows`` is the number of distinct requests (default 10000), split evenly over the
    periods; period p covers [start + p*period_seconds, start + (p+1)*period_seconds).
    ``label_outage=(start, end)``: the predictions of periods start..end-1 never get a label
    (the label pipeline is down, then comes back).
    """
    if name in CALIBRATED_PLANS:  # labels drawn from the scores (producers/scenarios.py, end)
        if label_outage is not None:
            raise ValueError(f"label_outage is not available for {name!r}: its labels are drawn from the scores")
        return _calibrated_scenario(name, CALIBRATED_PLANS[name], seed, rows, periods, period_seconds, start,
                                    model, model_version)
    variant = VARIANTS.get(name)
    if variant is not None and label_outage is None and variant.label_outage is not None:
        label_outage = variant.label_outage(periods)
    if label_outage is not None:
        _check_outage(label_outage, periods)
    plan = variant.plan if variant is not None else _plan(name)
    model = model or plan.default_model
    canary = variant.canary if variant is not None else None
    change_at = plan.change_period(periods)

    def rows_of(rng: np.random.Generator, p: int, n: int, start_ms: int, length_ms: int,
                ids: list[str]) -> tuple[list[dict[str, Any]], PeriodSummary]:
        period = _Period(p, n, start_ms, length_ms, plan.accuracy(p, periods), plan.features_at(p, periods))
        if canary is not None and change_at is not None and p >= change_at:
            period_rows, summary = _canary_period_rows(rng, period, ids, model, model_version, canary)
        else:
            period_rows, summary = _period_rows(rng, period, ids, model, model_version)
        if label_outage is not None and label_outage[0] <= p < label_outage[1]:
            period_rows, summary = _unlabeled(period_rows), replace(summary, labeled=0, correct=0)
        return period_rows, summary

    total = 10_000 if rows is None else rows
    reference_n = min(REFERENCE_ROWS, max(MIN_REFERENCE_ROWS, total))
    return _assemble(name, plan, seed, total, periods, period_seconds, start, model, model_version, rows_of,
                     lambda rng: _reference_rows(rng, reference_n, plan.accuracy(0, periods)),
                     label_outage=label_outage, canary_version=canary.version if canary is not None else None)


def _assemble(name: str, plan: Plan, seed: int, total: int, periods: int, period_seconds: int,
              start: str | datetime, model: str, model_version: str,
              rows_of: Callable[[np.random.Generator, int, int, int, int, list[str]],
                                tuple[list[dict[str, Any]], PeriodSummary]],
              reference_of: Callable[[np.random.Generator], list[dict[str, Any]]], **extra: Any) -> Scenario:
    """The periods' rows (``rows_of(rng, period, n, start_ms, length_ms, ids)``, one random
    stream for all of them, in period order) and the reference (a stream of its own) into a
    :class:`Scenario`: what every kind of scenario shares."""
    _check_positive(rows=total, periods=periods, period_seconds=period_seconds)
    if total < periods:
        raise ValueError(f"rows={total} is fewer than periods={periods}: every period needs a row")
    start_ms = parse_start(start)
    rows_rng, reference_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    out: list[dict[str, Any]] = []
    summaries: list[PeriodSummary] = []
    first_id = 0
    for p in range(periods):
        n = total // periods + (1 if p < total % periods else 0)
        ids = [f"{name}-{seed}-{i:07d}" for i in range(first_id, first_id + n)]
        period_rows, summary = rows_of(rows_rng, p, n, start_ms + p * period_seconds * 1000, period_seconds * 1000,
                                       ids)
        out.extend(period_rows)
        summaries.append(summary)
        first_id += n
    change = plan.change_period(periods)
    return Scenario(
        name=name,
        description=plan.description,
        model=model,
        model_version=model_version,
        seed=seed,
        start=iso_ms(np.array([start_ms]))[0],
        periods=periods,
        period_seconds=period_seconds,
        rows=out,
        reference=reference_of(reference_rng),
        expected_accuracy=[s.expected_accuracy for s in summaries],
        period_summaries=summaries,
        change_period=change,
        change_start=summaries[change].start if change is not None and change < periods else None,
        drifted_features=plan.drifted_features,
        **extra,
    )


def _plan(name: str) -> Plan:
    if name not in PLANS:
        raise ValueError(f"unknown scenario {name!r}: expected one of {', '.join(PLANS)}")
    return PLANS[name]


def _check_positive(**values: int) -> None:
    for key, value in values.items():
        if value < 1:
            raise ValueError(f"{key}={value} is not valid: expected a positive integer")


def reference_path(path: str | Path) -> Path:
    """Where the reference of a scenario file goes: ``<stem>.reference<suffix>`` beside it.

    >>> reference_path("out/degradation.csv").as_posix()
    'out/degradation.reference.csv'
    """
    path = Path(path)
    return path.with_name(f"{path.stem}.reference{path.suffix}")


def write(scenario: Scenario, path: str | Path) -> tuple[Path, Path]:
    """Write the rows to ``path`` and the reference beside it (same format); return both paths."""
    rows_path = write_rows(path, scenario.rows, scenario.columns)
    ref_path = write_rows(reference_path(path), scenario.reference, REFERENCE_COLUMNS)
    return rows_path, ref_path


# --- scenarios whose labels are drawn from the scores ---

@dataclass(frozen=True)
class CalibratedPlan:
    """A calibrated model (label ~ Bernoulli(score)), so that its accuracy follows from its
    scores alone, as a confidence-based estimate assumes; from ``change_period`` on, each row's
    credit_score is pulled a share ``pull(period, periods)`` of the way to where the model is
    undecided (log-odds times 1 - pull): covariate shift toward the decision boundary, the
    relation between features and labels unchanged. Labels come ``label_delay_periods``
    (uniform, in periods) after the prediction: after the window has closed."""

    sharpness: float  # the model's log-odds: sharpness x those of positive_probability
    pull: Callable[[int, int], float]
    rows_per_period: int  # default size of a period
    label_delay_periods: tuple[float, float]
    reference_rows: int  # a calibration is as good as its labeled rows: more than the other scenarios


def _covariate_pull(period: int, periods: int) -> float:
    """No pull in the first half; then 0.55 (accuracy ~0.91 -> ~0.81 in one period), growing to 0.7 (~0.75)."""
    change = periods // 2
    if period < change:
        return 0.0
    return round(0.55 + 0.15 * (period - change) / max(1, periods - change - 1), 6)


CALIBRATED_PLANS: dict[str, CalibratedPlan] = {
    "covariate-shift": CalibratedPlan(3.5, _covariate_pull, 2500, (1.25, 4.0), 20_000),
}
PLANS["covariate-shift"] = Plan(
    "loan-default",
    "Calibrated scores (label ~ Bernoulli(score)), accuracy ~0.91; from the middle period on credit_score "
    "moves toward the decision boundary (accuracy ~0.81, falling to ~0.75) while the relation between "
    "features and labels stays: labels come 1.25-4 periods late, so only the scores foresee the fall.",
    lambda p, n: 0.0,  # drawn, not constructed: see the period summaries' expected_accuracy
    change_period=lambda n: n // 2,
    drifted_features=("credit_score",),
)


def calibrated_probability(features: dict[str, np.ndarray], sharpness: float) -> np.ndarray:
    """P(label = 1) of a calibrated scenario: the score and the law its labels are drawn from."""
    return np.round(1.0 / (1.0 + np.exp(-sharpness * _logit(features))), 4)


def pull_to_boundary(features: dict[str, np.ndarray], pull: float) -> dict[str, np.ndarray]:
    """credit_score moved a share ``pull`` of the way to where the log-odds are 0 (their weight
    on credit_score is -0.9 per 50 points), so the log-odds become (1 - pull) times theirs."""
    if not pull:
        return features
    credit = features["credit_score"] + pull * _logit(features) * 50 / 0.9
    return {**features, "credit_score": np.round(credit, 2)}


def _calibrated_rows(rng: np.random.Generator, plan: CalibratedPlan, period: _Period, pull: float,
                     ids: Sequence[str], model: str, model_version: str) -> tuple[list[dict[str, Any]], PeriodSummary]:
    n = period.n
    features = pull_to_boundary(_sample_features(rng, n, BASELINE), pull)
    p1 = calibrated_probability(features, plan.sharpness)
    prediction = (p1 >= 0.5).astype(np.int64)
    ts = np.sort(period.start_ms + rng.integers(0, period.length_ms, n))
    labeled = rng.random(n) >= UNLABELED_SHARE
    label = (rng.random(n) < p1).astype(np.int64)
    low, high = plan.label_delay_periods
    actual_ts = ts + np.round(rng.uniform(low, high, n) * period.length_ms).astype(np.int64)
    latency = np.round(rng.lognormal(math.log(12.0), 0.5, n), 2)
    duplicate = rng.random(n) < DUPLICATE_SHARE
    rows = _emit_rows(ids, model, model_version, features, p1, prediction, ts, labeled, label, actual_ts,
                      latency, duplicate)
    summary = PeriodSummary(
        period=period.index,
        start=iso_ms(np.array([period.start_ms]))[0],
        rows=len(rows),
        predictions=n,
        labeled=int(labeled.sum()),
        correct=int((labeled & (label == prediction)).sum()),
        expected_accuracy=round(float(np.maximum(p1, 1 - p1).mean()), 6),
    )
    return rows, summary


def _calibrated_reference(rng: np.random.Generator, plan: CalibratedPlan, n: int) -> list[dict[str, Any]]:
    """Baseline rows with score, prediction and a label drawn from the score."""
    features = _sample_features(rng, n, BASELINE)
    p1 = calibrated_probability(features, plan.sharpness)
    prediction = (p1 >= 0.5).astype(np.int64)
    label = (rng.random(n) < p1).astype(np.int64)
    columns = {name: values.tolist() for name, values in features.items()}
    columns |= {"score": p1.tolist(), "prediction": prediction.tolist(), "label": label.tolist()}
    return [{name: columns[name][i] for name in REFERENCE_COLUMNS} for i in range(n)]


def _calibrated_scenario(name: str, plan: CalibratedPlan, seed: int, rows: int | None, periods: int,
                         period_seconds: int, start: str | datetime, model: str | None,
                         model_version: str) -> Scenario:
    """:func:`generate` for the scenarios of :data:`CALIBRATED_PLANS` (default rows: rows_per_period each)."""
    total = plan.rows_per_period * periods if rows is None else rows
    outline = PLANS[name]
    model = model or outline.default_model

    def rows_of(rng: np.random.Generator, p: int, n: int, start_ms: int, length_ms: int,
                ids: list[str]) -> tuple[list[dict[str, Any]], PeriodSummary]:
        period = _Period(p, n, start_ms, length_ms, 0.0, BASELINE)
        return _calibrated_rows(rng, plan, period, plan.pull(p, periods), ids, model, model_version)

    return _assemble(name, outline, seed, total, periods, period_seconds, start, model, model_version, rows_of,
                     lambda rng: _calibrated_reference(rng, plan, plan.reference_rows))


# --- command line ---

def summary_lines(scenario: Scenario) -> list[str]:
    """A human summary: what the scenario is and the exact figures of every period."""
    lines = [
        f"{scenario.name}: {scenario.description}",
        f"model {scenario.model} {scenario.model_version}, {scenario.periods} periods of "
        f"{scenario.period_seconds} s from {scenario.start}, seed {scenario.seed}",
        f"{'period':>6}  {'start':<24}  {'rows':>6}  {'requests':>8}  {'labeled':>7}  "
        f"{'correct':>7}  {'accuracy':>8}  {'target':>6}",
    ]
    for s in scenario.period_summaries:
        accuracy = f"{s.accuracy:.4f}" if s.accuracy is not None else "-"
        lines.append(
            f"{s.period:>6}  {s.start:<24}  {s.rows:>6}  {s.predictions:>8}  {s.labeled:>7}  "
            f"{s.correct:>7}  {accuracy:>8}  {s.expected_accuracy:>6.3f}"
        )
    if scenario.change_period is not None:
        lines.append(f"change at period {scenario.change_period} ({scenario.change_start}): "
                     f"{', '.join(scenario.drifted_features)}")
    return lines


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m producers.scenarios",
        description="Write a built-in scenario (and its reference file beside it) in the replay shape.",
    )
    parser.add_argument("name", choices=[*PLANS, *VARIANTS])
    parser.add_argument("--out", required=True, help="output file: .csv, .parquet or .jsonl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=int, default=None,
                        help="distinct requests (default 10000; covariate-shift: 2500 per period)")
    parser.add_argument("--periods", type=int, default=20)
    parser.add_argument("--period-seconds", type=int, default=3600)
    parser.add_argument("--start", default=DEFAULT_START, help="ISO-8601 start of period 0")
    parser.add_argument("--model", default=None, help="model name (default: the scenario's)")
    parser.add_argument("--model-version", default="v1")
    parser.add_argument("--label-outage", type=outage_periods, default=None, metavar="START:END",
                        help="periods START..END-1 get no labels (the label pipeline stops, then comes back)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        scenario = generate(args.name, seed=args.seed, rows=args.rows, periods=args.periods,
                            period_seconds=args.period_seconds, start=args.start,
                            model=args.model, model_version=args.model_version, label_outage=args.label_outage)
        rows_path, ref_path = write(scenario, args.out)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {rows_path} ({len(scenario.rows)} rows)")
    print(f"wrote {ref_path} ({len(scenario.reference)} reference rows)")
    print("\n".join(summary_lines(scenario)))
    return 0


# --- variants: label outage and canary (appended) ---

@dataclass(frozen=True)
class Canary:
    """A second version taking ``share`` of the traffic from the plan's change period on."""

    version: str
    share: float
    accuracy: float


@dataclass(frozen=True)
class Variant:
    """A scenario built on a plan: label outage periods and / or a canary version."""

    plan: Plan
    label_outage: Callable[[int], tuple[int, int]] | None = None
    canary: Canary | None = None


VARIANTS: dict[str, Variant] = {
    "label-outage": Variant(
        Plan("claims-triage",
             "Accuracy 0.92 throughout; the label pipeline stops for the periods from 2/5 to 3/5 "
             "(their predictions never get labels), then comes back.",
             lambda p, n: 0.92),
        label_outage=lambda n: (n * 2 // 5, max(n * 2 // 5 + 1, n * 3 // 5)),
    ),
    "canary": Variant(
        Plan("loan-approval",
             "v1 serves all traffic at accuracy 0.95; from the middle period on a canary v2 takes 20% "
             "of the requests at accuracy 0.87 (8 points worse, above the 0.85 objective).",
             lambda p, n: 0.95,
             change_period=lambda n: n // 2),
        canary=Canary("v2", 0.2, 0.87),
    ),
}


def outage_periods(text: str) -> tuple[int, int]:
    """``START:END`` as (start, end), periods START..END-1.

    >>> outage_periods("8:12")
    (8, 12)
    """
    start, sep, end = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return int(start), int(end)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not START:END (two period numbers)") from None


def _check_outage(outage: tuple[int, int], periods: int) -> None:
    start, end = outage
    if not 0 <= start < end <= periods:
        raise ValueError(f"label_outage={start}:{end} is not valid: expected 0 <= START < END <= periods ({periods})")


def _unlabeled(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**row, "actual_label": None, "actual_timestamp": None} for row in rows]


def _canary_period_rows(rng: np.random.Generator, period: _Period, ids: Sequence[str], model: str,
                        model_version: str, canary: Canary) -> tuple[list[dict[str, Any]], PeriodSummary]:
    """A period split between the main version and the canary, each at its own exact accuracy;
    rows in timestamp order, the summary summed over both."""
    n_canary = min(period.n - 1, max(1, round(period.n * canary.share)))
    main = replace(period, n=period.n - n_canary)
    side = replace(period, n=n_canary, accuracy=canary.accuracy)
    rows_main, s_main = _period_rows(rng, main, ids[:main.n], model, model_version)
    rows_side, s_side = _period_rows(rng, side, ids[main.n:], model, canary.version)
    rows = sorted(rows_main + rows_side, key=lambda r: r["timestamp"])
    summary = replace(s_main, rows=s_main.rows + s_side.rows, predictions=period.n,
                      labeled=s_main.labeled + s_side.labeled, correct=s_main.correct + s_side.correct)
    return rows, summary


if __name__ == "__main__":
    sys.exit(main())
