"""The one canonical form of classes: the contract's examples, exactly."""

from __future__ import annotations

import pytest

from streams.canonical import canonical_class


@pytest.mark.parametrize(("value", "canonical"), [
    (True, "1"),
    (False, "0"),
    (1.0, "1"),
    (0.0, "0"),
    (-0.0, "0"),
    (-3.0, "-3"),
    (1e20, "100000000000000000000"),
    (1, "1"),
    (0, "0"),
    (-7, "-7"),
    (2.5, "2.5"),
    (0.1, "0.1"),
    ("1", "1"),
    ("1.0", "1.0"),
    ("true", "true"),
    ("cat", "cat"),
    ("", ""),
])
def test_canonical_form(value, canonical):
    assert canonical_class(value) == canonical


def test_json_true_one_and_one_point_zero_are_one_class():
    assert {canonical_class(v) for v in (True, 1, 1.0, "1")} == {"1"}
    assert {canonical_class(v) for v in (False, 0, 0.0, "0")} == {"0"}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_not_classes(value):
    with pytest.raises(ValueError, match="not finite"):
        canonical_class(value)


@pytest.mark.parametrize("value", [None, [1], {"a": 1}, b"1"])
def test_other_types_are_not_classes(value):
    with pytest.raises(TypeError, match="must be a bool, number or string"):
        canonical_class(value)
