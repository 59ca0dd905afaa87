import math

import numpy as np
import pytest

from streams.psi import (
    SHARE_FLOOR,
    categorical_counts,
    categorical_reference,
    numeric_counts,
    numeric_edges,
    numeric_reference,
    psi,
    psi_band,
)


def _psi_by_hand(p, q):
    p = [max(x, SHARE_FLOOR) for x in p]
    q = [max(x, SHARE_FLOOR) for x in q]
    return sum((b - a) * math.log(b / a) for a, b in zip(p, q, strict=True))


def test_edges_are_numpy_linear_quantiles_deduplicated():
    values = np.arange(1, 101, dtype=float)
    edges = numeric_edges(values, 10)
    assert edges.tolist() == np.quantile(values, np.arange(1, 10) / 10).tolist()
    assert numeric_edges([1, 1, 1, 2], 4).tolist() == [1.0, 1.25]


def test_bin_is_number_of_edges_strictly_below():
    edges = np.array([1.0, 2.0, 3.0])
    assert numeric_counts([0.5, 1.0, 1.5, 2.0, 3.0, 3.5], edges).tolist() == [2, 2, 1, 1]


def test_identical_distribution_has_zero_psi():
    ref = numeric_reference(list(range(1000)), 10)
    assert psi(ref.shares, numeric_counts(list(range(1000)), ref.edges)) == pytest.approx(0.0, abs=1e-15)


def test_numeric_psi_matches_definition():
    rng = np.random.default_rng(7)
    reference = rng.normal(35, 10, 5000)
    window = rng.normal(38, 12, 500)
    ref = numeric_reference(reference, 10)
    counts = numeric_counts(window, ref.edges)
    edges = np.unique(np.quantile(reference, np.arange(1, 10) / 10))
    p = np.bincount(np.searchsorted(edges, reference, side="left"), minlength=len(edges) + 1) / 5000
    q = np.bincount(np.searchsorted(edges, window, side="left"), minlength=len(edges) + 1) / 500
    assert psi(ref.shares, counts) == pytest.approx(_psi_by_hand(p, q), abs=1e-12)


def test_constant_reference_gives_two_bins():
    ref = numeric_reference([5.0] * 100, 10)
    assert ref.edges.tolist() == [5.0]
    assert ref.shares.tolist() == [1.0, 0.0]
    value = psi(ref.shares, numeric_counts([5.0, 6.0], ref.edges))
    assert value == pytest.approx(_psi_by_hand([1.0, 0.0], [0.5, 0.5]), abs=1e-12)


def test_all_null_window_has_no_psi():
    ref = numeric_reference([1.0, 2.0, 3.0], 2)
    assert psi(ref.shares, numeric_counts([], ref.edges)) is None
    assert numeric_reference([], 10) is None


def test_unseen_category_goes_to_the_extra_bin():
    ref = categorical_reference(["a", "a", "b", "b"])
    counts = categorical_counts(["a", "c", "d", "b"], ref.categories)
    assert counts.tolist() == [1, 1, 2]
    assert psi(ref.shares, counts) == pytest.approx(_psi_by_hand([0.5, 0.5, 0.0], [0.25, 0.25, 0.5]), abs=1e-12)


def test_single_category_reference():
    ref = categorical_reference(["x"] * 10)
    assert ref.categories == ("x",)
    assert psi(ref.shares, categorical_counts(["x"] * 3, ref.categories)) == pytest.approx(0.0, abs=1e-15)
    assert psi(ref.shares, categorical_counts(["y"], ref.categories)) == pytest.approx(
        _psi_by_hand([1.0, 0.0], [0.0, 1.0]), abs=1e-12)


def test_bands():
    assert psi_band(None, 0.1, 0.2) == "none"
    assert psi_band(0.0999, 0.1, 0.2) == "none"
    assert psi_band(0.1, 0.1, 0.2) == "small"
    assert psi_band(0.2, 0.1, 0.2) == "drift"
