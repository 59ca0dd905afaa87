import pytest

from streams.metrics import classification_figures


def test_binary_figures_for_positive_label():
    confusion = {("1", "1"): 30, ("1", "0"): 10, ("0", "1"): 20, ("0", "0"): 40}
    f = classification_figures(confusion, "1", binary=True)
    assert (f.labeled, f.correct) == (100, 70)
    assert f.accuracy == 0.7
    assert f.precision == 0.75
    assert f.recall == 0.6
    assert f.f1 == pytest.approx(2 * 0.75 * 0.6 / 1.35, abs=1e-15)


def test_binary_with_a_string_positive_label():
    confusion = {("fraud", "fraud"): 3, ("ok", "fraud"): 1, ("ok", "ok"): 6}
    f = classification_figures(confusion, "fraud", binary=True)
    assert (f.precision, f.recall) == (1.0, 0.75)


def test_undefined_binary_ratios_are_null():
    f = classification_figures({("0", "0"): 5}, "1", binary=True)
    assert f.accuracy == 1.0
    assert f.precision is None and f.recall is None and f.f1 is None


def test_no_labels_gives_null_accuracy():
    f = classification_figures({}, "1", binary=True)
    assert f.labeled == 0 and f.accuracy is None


def test_macro_average_matches_hand_computation():
    # classes a, b, c; per class: a P=2/3 R=1, b P=1 R=1/2, c P=0 R=0 (zero_division=0)
    f = classification_figures({("a", "a"): 2, ("a", "b"): 1, ("b", "b"): 1, ("b", "c"): 1}, "1", binary=False)
    p = (2 / 3 + 1 / 2 + 0) / 3
    r = (1 + 1 / 2 + 0) / 3
    f1 = (2 * (2 / 3) * 1 / (2 / 3 + 1) + 2 * 0.5 * 0.5 / 1 + 0) / 3
    assert f.accuracy == 0.6
    assert f.precision == pytest.approx(p, abs=1e-15)
    assert f.recall == pytest.approx(r, abs=1e-15)
    assert f.f1 == pytest.approx(f1, abs=1e-15)
