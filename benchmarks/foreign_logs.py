"""Inference logs unlike the built-in scenarios, for the determinism benchmark.

The built-in scenarios share one shape: binary, hourly windows, integer labels, scores,
labels within hours. A user's log need not: these two differ on every one of those axes,
so that "one log, four ways" is also checked on shapes the worker was not tuned on.

- ``ticket-router`` (JSONL): three classes named by strings with a probability column each,
  15-minute windows for 12 hours, a version name that looks like a number (``2026.03``);
  from window 24 the channel mix and message lengths move and from window 30 accuracy falls
  from 0.92 to 0.70; labels 1-90 min late, 8% never, 1% twice, 1% before the prediction.
- ``churn-daily`` (Parquet): boolean predictions and labels with no score at all, daily
  windows for 30 days, labels 2-36 hours late (about 9% after the default one-day grace:
  late labels of final windows); monthly_spend moves from day 12 and accuracy falls from
  0.90 to 0.78 from day 18.

Each comes with a reference file (features, prediction, label) of the first period's
distribution. Everything is drawn from one seed: the same files every time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from producers.scenarios import iso_ms, parse_start
from streams.tabular import write_rows

TICKET_CLASSES = ("billing", "tech", "sales")
TICKET_MIX = (0.4, 0.4, 0.2)  # how often each class is predicted
CHURN_MIX = (0.7, 0.3)  # False, True
CHANNELS = ("email", "chat", "phone")
PLANS = ("basic", "plus", "pro")
REGION_CODES = ("01", "02", "07", "11")
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


@dataclass(frozen=True)
class ForeignLog:
    """A written log: its rows file, reference file, first window start and window length."""
    name: str
    rows_path: Path
    ref_path: Path
    start_ms: int
    window_seconds: int


def _exactly_correct(rng: np.random.Generator, n: int, accuracy: float) -> np.ndarray:
    """A mask with exactly round(accuracy * n) True values, in random places."""
    correct = np.zeros(n, dtype=bool)
    correct[rng.choice(n, int(accuracy * n + 0.5), replace=False)] = True
    return correct


def _other_class(rng: np.random.Generator, predicted: np.ndarray, classes: int) -> np.ndarray:
    """A class different from each predicted one, uniformly among the others."""
    return (predicted + rng.integers(1, classes, len(predicted))) % classes


def _ticket_features(rng: np.random.Generator, n: int, shifted: bool) -> dict[str, list[Any]]:
    mix = (0.2, 0.6, 0.2) if shifted else (0.5, 0.3, 0.2)
    return {
        "message_length": np.round(rng.lognormal(5.4 if shifted else 5.0, 0.8, n)).astype(int).tolist(),
        "channel": [CHANNELS[i] for i in rng.choice(3, n, p=mix)],
        "priority": rng.integers(1, 5, n).tolist(),
        "is_vip": (rng.random(n) < 0.1).tolist(),
    }


def _ticket_probabilities(rng: np.random.Generator, predicted: np.ndarray) -> np.ndarray:
    """Per-class probabilities (rows sum to 1, 4 decimals) whose largest is the predicted class."""
    raw = rng.dirichlet((1.0, 1.0, 1.0), len(predicted))
    top = raw.max(axis=1)
    raw[np.arange(len(predicted)), predicted] = top + 0.05  # the prediction wins by a margin
    return np.round(raw / raw.sum(axis=1, keepdims=True), 4)


def ticket_router(directory: Path, seed: int = 0) -> ForeignLog:
    """The three-class, 15-minute log (JSONL) and its reference (CSV)."""
    rng = np.random.default_rng(seed)
    start_ms, window_ms, windows, per_window = parse_start("2026-03-02T08:00:00Z"), 15 * MINUTE_MS, 48, 180
    rows: list[dict[str, Any]] = []
    for w in range(windows):
        n = per_window
        ts = start_ms + w * window_ms + np.sort(rng.integers(0, window_ms, n))
        predicted = rng.choice(3, n, p=TICKET_MIX)
        correct = _exactly_correct(rng, n, 0.70 if w >= 30 else 0.92)
        label = np.where(correct, predicted, _other_class(rng, predicted, 3))
        delay = rng.integers(1 * MINUTE_MS, 90 * MINUTE_MS, n)
        early = rng.random(n) < 0.01
        delay[early] = -rng.integers(1_000, 60_000, int(early.sum()))
        labeled, twice = rng.random(n) >= 0.08, rng.random(n) < 0.01
        features = _ticket_features(rng, n, shifted=w >= 24)
        probabilities = _ticket_probabilities(rng, predicted)
        stamps, label_stamps = iso_ms(ts), iso_ms(ts + delay)
        for i in range(n):
            row = {"request_id": f"tkt-{w:02d}-{i:03d}-{rng.integers(1 << 30):08x}", "timestamp": stamps[i],
                   "model": "ticket-router", "model_version": "2026.03",
                   "prediction": TICKET_CLASSES[predicted[i]],
                   **{f"prediction_probability_{c}": float(probabilities[i, k]) for k, c in enumerate(TICKET_CLASSES)},
                   "actual_label": TICKET_CLASSES[label[i]] if labeled[i] else None,
                   "actual_timestamp": label_stamps[i] if labeled[i] else None,
                   **{name: values[i] for name, values in features.items()}}
            rows.append(row)
            if twice[i] and labeled[i]:
                rows.append(dict(row))
    reference = _reference(rng, 3000, lambda n: _ticket_features(rng, n, shifted=False), TICKET_MIX, 0.92,
                           lambda k: TICKET_CLASSES[k])
    return _write(directory, "ticket-router", "jsonl", rows, reference, start_ms, window_ms)


def _churn_features(rng: np.random.Generator, n: int, shifted: bool) -> dict[str, list[Any]]:
    return {
        "tenure_months": rng.integers(1, 73, n).tolist(),
        "monthly_spend": np.round(rng.normal(75.0 if shifted else 60.0, 20.0, n), 2).tolist(),
        "plan": [PLANS[i] for i in rng.choice(3, n, p=(0.5, 0.35, 0.15))],
        "region": [REGION_CODES[i] for i in rng.integers(0, len(REGION_CODES), n)],
    }


def churn_daily(directory: Path, seed: int = 0) -> ForeignLog:
    """The boolean, score-less, daily log (Parquet) and its reference (CSV)."""
    rng = np.random.default_rng(seed + 1)
    start_ms, days, per_day = parse_start("2026-02-01T00:00:00Z"), 30, 400
    rows: list[dict[str, Any]] = []
    for day in range(days):
        n = per_day
        ts = start_ms + day * DAY_MS + np.sort(rng.integers(0, DAY_MS, n))
        predicted = rng.random(n) < CHURN_MIX[1]
        correct = _exactly_correct(rng, n, 0.78 if day >= 18 else 0.90)
        label = np.where(correct, predicted, ~predicted)
        delay = rng.integers(2 * HOUR_MS, 36 * HOUR_MS, n)
        labeled = rng.random(n) >= 0.05
        features = _churn_features(rng, n, shifted=day >= 12)
        stamps, label_stamps = iso_ms(ts), iso_ms(ts + delay)
        for i in range(n):
            rows.append({"request_id": f"cust-{day:02d}-{i:04d}", "timestamp": stamps[i],
                         "model": "churn-daily", "model_version": "v7", "prediction": bool(predicted[i]),
                         "actual_label": bool(label[i]) if labeled[i] else None,
                         "actual_timestamp": label_stamps[i] if labeled[i] else None,
                         **{name: values[i] for name, values in features.items()}})
    reference = _reference(rng, 3000, lambda n: _churn_features(rng, n, shifted=False), CHURN_MIX, 0.90,
                           lambda k: bool(k))
    return _write(directory, "churn-daily", "parquet", rows, reference, start_ms, DAY_MS)


def _reference(rng: np.random.Generator, n: int, features: Callable[[int], dict[str, list[Any]]],
               mix: tuple[float, ...], accuracy: float, name_of: Callable[[int], Any]) -> list[dict[str, Any]]:
    """Baseline rows: features, a prediction drawn with the log's class mix and a label right
    exactly ``accuracy`` of the time."""
    classes = len(mix)
    columns = features(n)
    predicted = rng.choice(classes, n, p=mix)
    label = np.where(_exactly_correct(rng, n, accuracy), predicted, _other_class(rng, predicted, classes))
    return [{**{k: v[i] for k, v in columns.items()}, "prediction": name_of(int(predicted[i])),
             "label": name_of(int(label[i]))} for i in range(n)]


def _write(directory: Path, name: str, kind: str, rows: list[dict[str, Any]], reference: list[dict[str, Any]],
           start_ms: int, window_ms: int) -> ForeignLog:
    rows.sort(key=lambda row: (row["timestamp"], row["request_id"]))
    rows_path = write_rows(directory / f"{name}.{kind}", rows, list(rows[0]))
    ref_path = write_rows(directory / f"{name}.reference.csv", reference, list(reference[0]))
    return ForeignLog(name, rows_path, ref_path, start_ms, window_ms // 1000)


FOREIGN_LOGS: dict[str, Callable[[Path], ForeignLog]] = {"ticket-router": ticket_router, "churn-daily": churn_daily}
