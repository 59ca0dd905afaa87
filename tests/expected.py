"""The contract's figures computed independently with numpy, from the events a test sent.

Deliberately shares no code with `streams/`: it is the yardstick the real stack is
held to (counts and accuracy exactly, PSI to 1e-9).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np


def ts_ms(value: Any) -> int:
    if isinstance(value, str):
        moment = datetime.fromisoformat(value)
        delta = moment - datetime.fromisoformat("1970-01-01T00:00:00+00:00")
        return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000
    return math.floor(value)


def canon(value: Any) -> str:
    if value is True:
        return "1"
    if value is False:
        return "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value) if not isinstance(value, str) else value


@dataclass
class ExpectedWindow:
    predictions: int = 0
    labeled: int = 0
    correct: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    positives: int = 0
    confidences: list[float] = field(default_factory=list)
    features: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    scores: list[float] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labeled if self.labeled else None


def figures(predictions: list[dict], labels: list[dict], *, window_seconds: int, ttl_seconds: int,
            positive: str = "1") -> dict[tuple[str, str, int], ExpectedWindow]:
    """Per (model, version, window_start_ms): the contract's counts, from deduplicated events."""
    first_pred: dict[str, dict] = {}
    for p in predictions:
        first_pred.setdefault(p["request_id"], p)
    first_label: dict[str, dict] = {}
    for g in labels:
        first_label.setdefault(g["request_id"], g)
    size = window_seconds * 1000
    out: dict[tuple[str, str, int], ExpectedWindow] = defaultdict(ExpectedWindow)
    for rid, p in first_pred.items():
        t = ts_ms(p["timestamp"])
        w = out[(p["model"], p["model_version"], (t // size) * size)]
        pred = canon(p["prediction"])
        w.predictions += 1
        w.positives += pred == positive
        w.classes.append(pred)
        score = p.get("score")
        if score is not None:
            w.scores.append(float(score))
            w.confidences.append(max(score, 1 - score))
        for name, value in (p.get("features") or {}).items():
            w.features[name].append(value)
        g = first_label.get(rid)
        if g is not None and abs(ts_ms(g["timestamp"]) - t) <= ttl_seconds * 1000:
            label = canon(g["label"])
            w.labeled += 1
            w.correct += pred == label
            w.tp += pred == positive and label == positive
            w.fp += pred == positive and label != positive
            w.fn += pred != positive and label == positive
    return dict(out)


def psi_numeric(reference: list[float], window: list[float], bins: int) -> float:
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(window, dtype=float)
    edges = np.unique(np.quantile(ref, np.arange(1, bins) / bins))
    p = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=len(edges) + 1) / len(ref)
    q = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=len(edges) + 1) / len(cur)
    p, q = np.maximum(p, 1e-4), np.maximum(q, 1e-4)
    return float(np.sum((q - p) * np.log(q / p)))


def psi_categorical(reference: list[str], window: list[str]) -> float:
    categories = sorted(set(reference))
    index = {c: i for i, c in enumerate(categories)}
    p = np.zeros(len(categories) + 1)
    q = np.zeros(len(categories) + 1)
    for v in reference:
        p[index[v]] += 1
    for v in window:
        q[index.get(v, len(categories))] += 1
    p, q = np.maximum(p / len(reference), 1e-4), np.maximum(q / len(window), 1e-4)
    return float(np.sum((q - p) * np.log(q / p)))


def psi(reference: list[Any], window: list[Any], bins: int) -> float | None:
    """PSI of one feature (numeric when every reference value is a non-bool number)."""
    ref = [v for v in reference if v is not None]
    cur = [v for v in window if v is not None]
    if not ref or not cur:
        return None
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in ref):
        return psi_numeric([float(v) for v in ref], [float(v) for v in cur if isinstance(v, int | float)
                                                      and not isinstance(v, bool)], bins)
    return psi_categorical([canon(v) for v in ref], [canon(v) for v in cur])


def accuracy_alerts(windows: list[tuple[int, int, float | None]], *, threshold: float, degradation: float,
                    min_labeled: int, baseline: float | None = None) -> list[tuple[str, str, int]]:
    """(type, status, window_start) transitions over final windows in order (labeled >= min_labeled)."""
    out: list[tuple[str, str, int]] = []
    firing = {"accuracy_below_threshold": False, "accuracy_drop": False}
    for start, labeled, accuracy in windows:
        if labeled < min_labeled or accuracy is None:
            continue
        if baseline is None:
            baseline = accuracy
        for kind, active in (("accuracy_below_threshold", accuracy < threshold),
                             ("accuracy_drop", baseline - accuracy >= degradation - 1e-12)):
            if active != firing[kind]:
                firing[kind] = active
                out.append((kind, "firing" if active else "resolved", start))
    return out
