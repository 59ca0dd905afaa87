"""Population Stability Index exactly as the contract defines it.

Numeric features: edges are the reference's quantiles at 1/B .. (B-1)/B (numpy's
default linear interpolation) with duplicates removed, and a value falls in bin
``searchsorted(edges, x, side="left")`` so the outer bins are open-ended.
Categorical features: one bin per reference category plus one for all unseen ones.
Shares below 0.0001 are raised to 0.0001 (no renormalising);
``PSI = sum((q - p) * ln(q / p))``.

>>> ref = numeric_reference([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], bins=4)
>>> ref.edges.tolist(), ref.shares.tolist()
([3.25, 5.5, 7.75], [0.3, 0.2, 0.2, 0.3])
>>> round(psi(ref.shares, numeric_counts([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], ref.edges)), 12)
0.0
>>> cat = categorical_reference(["a", "a", "b", "c"])
>>> cat.categories, cat.shares.tolist()
(('a', 'b', 'c'), [0.5, 0.25, 0.25, 0.0])
>>> round(psi(cat.shares, categorical_counts(["a", "d"], cat.categories)), 6)
8.168203
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

SHARE_FLOOR = 0.0001


@dataclass(frozen=True)
class NumericReference:
    edges: np.ndarray
    shares: np.ndarray
    n: int
    kind: str = "numeric"


@dataclass(frozen=True)
class CategoricalReference:
    categories: tuple[str, ...]
    shares: np.ndarray
    n: int
    kind: str = "categorical"

    def bin_of(self, value: str) -> int:
        """Index of the category, or the last (unseen) bin."""
        return self._index().get(value, len(self.categories))

    def _index(self) -> dict[str, int]:
        cached = self.__dict__.get("_index_cache")
        if cached is None:
            cached = {c: i for i, c in enumerate(self.categories)}
            object.__setattr__(self, "_index_cache", cached)
        return cached


FeatureReference = NumericReference | CategoricalReference


def numeric_edges(values: Sequence[float] | np.ndarray, bins: int) -> np.ndarray:
    """Quantile edges of the reference, duplicates removed (sorted)."""
    data = np.asarray(values, dtype=np.float64)
    quantiles = np.quantile(data, np.arange(1, bins) / bins)
    return np.unique(quantiles)


def numeric_counts(values: Iterable[float] | np.ndarray, edges: np.ndarray) -> np.ndarray:
    data = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64)
    return np.bincount(np.searchsorted(edges, data, side="left"), minlength=len(edges) + 1)


def categorical_counts(values: Iterable[str], categories: Sequence[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(categories)}
    counts = np.zeros(len(categories) + 1, dtype=np.int64)
    for value in values:
        counts[index.get(value, len(categories))] += 1
    return counts


def numeric_reference(values: Sequence[float] | np.ndarray, bins: int) -> NumericReference | None:
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return None
    edges = numeric_edges(data, bins)
    counts = numeric_counts(data, edges)
    return NumericReference(edges=edges, shares=counts / data.size, n=int(data.size))


def categorical_reference(values: Sequence[str]) -> CategoricalReference | None:
    if not values:
        return None
    categories = tuple(sorted(set(values)))
    counts = categorical_counts(values, categories)
    return CategoricalReference(categories=categories, shares=counts / len(values), n=len(values))


def psi(reference_shares: np.ndarray, window_counts: np.ndarray) -> float | None:
    """PSI of a window's bin counts against reference shares; None when the window has no values."""
    total = int(np.sum(window_counts))
    if total == 0:
        return None
    p = np.maximum(np.asarray(reference_shares, dtype=np.float64), SHARE_FLOOR)
    q = np.maximum(np.asarray(window_counts, dtype=np.float64) / total, SHARE_FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def psi_band(value: float | None, warn: float, alert: float) -> str:
    """'none' below PSI_WARN, 'small' from WARN to ALERT, 'drift' from PSI_ALERT on."""
    if value is None or value < warn:
        return "none"
    return "drift" if value >= alert else "small"
