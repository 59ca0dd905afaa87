from decimal import Decimal

from streams.figures import WindowCounts, window_counts


def test_window_counts_sum_late_labels_over_the_confusion_cells():
    counts = window_counts(
        [(1000, 10, 4, Decimal('7.5'), 9), (2000, 3, 0, Decimal(0), 0)],
        [(1000, "1", "1", 3, 1), (1000, "1", "0", 1, 0), (1000, "0", "0", 4, 2), (3000, "a", "b", 2, 2)],
    )
    assert counts[1000] == WindowCounts(10, 4, Decimal('7.5'), 9, {("1", "1"): 3, ("1", "0"): 1, ("0", "0"): 4}, 3)
    assert counts[2000] == WindowCounts(3, 0, Decimal(0), 0, {}, 0)
    assert counts[3000] == WindowCounts(0, 0, Decimal(0), 0, {("a", "b"): 2}, 2)  # labels of a window with no prediction row
