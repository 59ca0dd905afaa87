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
from scipy import stats as scipy_stats


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


def _numeric_bins(reference: list[float], window: list[float], bins: int) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(window, dtype=float)
    edges = np.unique(np.quantile(ref, np.arange(1, bins) / bins))
    return (np.bincount(np.searchsorted(edges, ref, side="left"), minlength=len(edges) + 1),
            np.bincount(np.searchsorted(edges, cur, side="left"), minlength=len(edges) + 1))


def _categorical_bins(reference: list[str], window: list[str]) -> tuple[np.ndarray, np.ndarray]:
    categories = sorted(set(reference))
    index = {c: i for i, c in enumerate(categories)}
    p = np.zeros(len(categories) + 1)
    q = np.zeros(len(categories) + 1)
    for v in reference:
        p[index[v]] += 1
    for v in window:
        q[index.get(v, len(categories))] += 1
    return p, q


def _psi_of(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    p = np.maximum(p_counts / p_counts.sum(), 1e-4)
    q = np.maximum(q_counts / q_counts.sum(), 1e-4)
    return float(np.sum((q - p) * np.log(q / p)))


def psi_numeric(reference: list[float], window: list[float], bins: int) -> float:
    return _psi_of(*_numeric_bins(reference, window, bins))


def psi_categorical(reference: list[str], window: list[str]) -> float:
    return _psi_of(*_categorical_bins(reference, window))


def _present(reference: list[Any], window: list[Any]) -> tuple[list[Any], list[Any], bool]:
    ref = [v for v in reference if v is not None]
    cur = [v for v in window if v is not None]
    numeric = bool(ref) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in ref)
    return ref, cur, numeric


def bins_of(reference: list[Any], window: list[Any], bins: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(reference counts, window counts) in the PSI bins of one feature; None without values."""
    ref, cur, numeric = _present(reference, window)
    if not ref or not cur:
        return None
    if numeric:
        return _numeric_bins([float(v) for v in ref], [float(v) for v in cur if isinstance(v, int | float)
                                                       and not isinstance(v, bool)], bins)
    return _categorical_bins([canon(v) for v in ref], [canon(v) for v in cur])


def psi(reference: list[Any], window: list[Any], bins: int) -> float | None:
    """PSI of one feature (numeric when every reference value is a non-bool number)."""
    counts = bins_of(reference, window, bins)
    return None if counts is None else _psi_of(*counts)


def chi_square_p(ref_counts: np.ndarray, win_counts: np.ndarray) -> float:
    """Pearson's homogeneity test, bins expecting < 5 window values pooled (one pool; a pool still
    below 5 joins the bin expecting the fewest)."""
    n, m = float(np.sum(win_counts)), float(np.sum(ref_counts))
    cells = [(float(r), float(w)) for r, w in zip(ref_counts, win_counts, strict=True) if r + w > 0]
    expect = [(r + w) * n / (n + m) for r, w in cells]
    big = [c for c, e in zip(cells, expect, strict=True) if e >= 5]
    small = [c for c, e in zip(cells, expect, strict=True) if e < 5]
    if small:
        pool = (sum(r for r, _ in small), sum(w for _, w in small))
        if (pool[0] + pool[1]) * n / (n + m) < 5 and big:
            j = min(range(len(big)), key=lambda k: big[k][0] + big[k][1])
            big[j] = (big[j][0] + pool[0], big[j][1] + pool[1])
        else:
            big.append(pool)
    if len(big) < 2:
        return 1.0
    return float(scipy_stats.chi2_contingency(np.array(big).T, correction=False).pvalue)


def drift_transitions(windows: list[tuple[int, dict[str, tuple[float, float]]]], *, psi_warn: float,
                      rate: float) -> list[tuple[str, str, int]]:
    """(subject, status, window_start) of drift alerts over closed windows in order; each window maps
    subject -> (PSI, p-value). Firing on PSI >= warn with p below the per-subject level; resolved
    after two closed windows in a row without drift."""
    out: list[tuple[str, str, int]] = []
    firing: dict[str, bool] = {}
    clean: dict[str, int] = {}
    for start, subjects in windows:
        level = 1 - (1 - rate) ** (1 / len(subjects)) if subjects else 0.0
        for subject, (value, p) in sorted(subjects.items()):
            active = value >= psi_warn and p < level
            clean[subject] = 0 if active else clean.get(subject, 0) + 1
            if active and not firing.get(subject):
                firing[subject] = True
                out.append((subject, "firing", start))
            elif not active and firing.get(subject) and clean[subject] >= 2:
                firing[subject] = False
                out.append((subject, "resolved", start))
    return out


def stream_accuracy_alerts(outcomes: list[tuple[int, str, int, bool]], *, watermark_ms: int, window_seconds: int,
                           grace_seconds: int, threshold: float, degradation: float, min_labeled: int,
                           confidence: float = 0.99, baseline: float | None = None) -> list[tuple[str, str, int]]:
    """(type, status, window_start) of accuracy alerts from one version's outcomes (join ms,
    request_id, window_start ms, correct) released in event time below ``watermark_ms``: a look
    when a window's labels reach min_labeled * 2**j (one-sided Wilson bounds at level
    (1 - confidence) / 2**(j+1): a proven breach fires, a proven margin resolves), the point
    estimate when the window is final (event time past end + grace); the first final window is
    the baseline when none is given, for looks after it. A decision about a window older than the
    one that last changed a condition changes nothing."""
    size, grace = window_seconds * 1000, grace_seconds * 1000
    decisions: list[tuple[int, int, int, int, int, int | None]] = []  # position, order, window, labeled, correct, look
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    released = sorted(o for o in outcomes if o[0] < watermark_ms)
    for join, _, w, correct in released:
        if w + size + grace < join:
            continue  # a late label of a final window
        counts[w][0] += 1
        counts[w][1] += correct
        k = counts[w][0]
        ratio = k // min_labeled
        if k % min_labeled == 0 and ratio & (ratio - 1) == 0:
            decisions.append((join, 0, w, k, counts[w][1], ratio.bit_length() - 1))
    for w, (labeled, correct) in counts.items():
        if w + size + grace < watermark_ms:
            decisions.append((w + size + grace, 1, w, labeled, correct, None))  # after a look there
    decisions.sort()
    alpha = 1 - confidence
    firing: dict[str, bool] = {}
    changed: dict[str, int] = {}
    out: list[tuple[str, str, int]] = []
    baseline_from = None if baseline is None else -1

    def observe(kind: str, active: bool | None, w: int) -> None:
        if active is None or active == firing.get(kind, False) or w < changed.get(kind, w):
            return
        firing[kind], changed[kind] = active, w
        out.append((kind, "firing" if active else "resolved", w))

    for position, _, w, labeled, correct, look in decisions:
        if labeled < min_labeled:
            continue
        acc = correct / labeled
        if look is None:
            below = acc < threshold
            drop = None if baseline is None else baseline - acc >= degradation - 1e-12
        else:
            ci = scipy_stats.binomtest(correct, labeled).proportion_ci(1 - 2 * alpha / 2 ** (look + 1), "wilson")
            below = True if ci.high < threshold else (False if ci.low >= threshold else None)
            drop = None
            if baseline is not None:
                limit = baseline - degradation
                drop = True if ci.high < limit else (False if ci.low > limit else None)
        observe("accuracy_below_threshold", below, w)
        if look is None and baseline is None:
            baseline, baseline_from = acc, position
            continue
        if baseline is not None and position > baseline_from:
            observe("accuracy_drop", drop, w)
    return out


SCENARIO_NOT_FEATURES = {"request_id", "timestamp", "model", "model_version", "prediction", "actual_label",
                         "actual_timestamp", "latency_ms", "score"}


def scenario_events(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """The prediction and label events the replay sends for each row of a built-in scenario."""
    predictions, labels = [], []
    for row in rows:
        features = {k: v for k, v in row.items()
                    if k not in SCENARIO_NOT_FEATURES and not k.startswith("prediction_prob")}
        predictions.append({"request_id": row["request_id"], "model": row["model"],
                            "model_version": row["model_version"], "timestamp": row["timestamp"],
                            "prediction": row["prediction"], "score": row["prediction_probability_1"],
                            "features": features})
        if row["actual_label"] is not None:
            labels.append({"request_id": row["request_id"], "label": row["actual_label"],
                           "timestamp": row["actual_timestamp"]})
    return predictions, labels
