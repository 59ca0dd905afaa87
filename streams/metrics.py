"""Classification figures of one window, from counts that add up across batches.

Binary models (at most two classes seen for the model version) report precision,
recall and F1 of POSITIVE_LABEL, NULL where a ratio has no denominator. Models with
more classes report macro averages over the classes present in the window's labeled
requests (predicted or true), a class without a denominator counting as 0, as
scikit-learn's ``zero_division=0`` does.

>>> m = classification_figures({("1", "1"): 40, ("1", "0"): 10, ("0", "1"): 5, ("0", "0"): 45}, "1", binary=True)
>>> m.accuracy, m.precision, m.recall, round(m.f1, 6)
(0.85, 0.8, 0.8888888888888888, 0.842105)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

Confusion = Mapping[tuple[str, str], int]
"""Counts keyed by (canonical prediction, canonical label)."""


@dataclass(frozen=True, slots=True)
class Figures:
    labeled: int
    correct: int
    accuracy: float | None
    precision: float | None
    recall: float | None
    f1: float | None


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _f1(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None:
        return None
    total = precision + recall
    return 2 * precision * recall / total if total else 0.0


def _class_prf(confusion: Confusion, cls: str) -> tuple[float | None, float | None]:
    tp = confusion.get((cls, cls), 0)
    predicted = sum(n for (pred, _), n in confusion.items() if pred == cls)
    actual = sum(n for (_, label), n in confusion.items() if label == cls)
    return _ratio(tp, predicted), _ratio(tp, actual)


def classification_figures(confusion: Confusion, positive_label: str, *, binary: bool) -> Figures:
    """Accuracy, precision, recall and F1 of one window's labeled requests."""
    labeled = sum(confusion.values())
    correct = sum(n for (pred, label), n in confusion.items() if pred == label)
    accuracy = _ratio(correct, labeled)
    if labeled == 0:
        return Figures(0, 0, None, None, None, None)
    if binary:
        precision, recall = _class_prf(confusion, positive_label)
        return Figures(labeled, correct, accuracy, precision, recall, _f1(precision, recall))
    classes = sorted({c for pair in confusion for c in pair})
    precisions, recalls, f1s = [], [], []
    for cls in classes:
        p, r = _class_prf(confusion, cls)
        p, r = p or 0.0, r or 0.0
        precisions.append(p)
        recalls.append(r)
        f1s.append(_f1(p, r) or 0.0)
    n = len(classes)
    return Figures(labeled, correct, accuracy, sum(precisions) / n, sum(recalls) / n, sum(f1s) / n)
