from streams.windows import is_closed, is_final, window_end_ms, window_start_ms

HOUR = 3600


def test_window_start_is_floor_of_epoch_aligned_window():
    assert window_start_ms(0, HOUR) == 0
    assert window_start_ms(3_599_999, HOUR) == 0
    assert window_start_ms(3_600_000, HOUR) == 3_600_000
    assert window_start_ms(1_767_229_199_999, 600) == 1_767_228_600_000


def test_window_boundaries_for_odd_sizes():
    # 7-second windows aligned to the epoch, not to the first event.
    assert window_start_ms(13_999, 7) == 7_000
    assert window_start_ms(14_000, 7) == 14_000
    assert window_end_ms(14_000, 7) == 21_000


def test_closed_at_end_and_final_strictly_after_grace():
    assert not is_closed(0, 3_599_999, HOUR)
    assert is_closed(0, 3_600_000, HOUR)
    assert not is_final(0, 3_600_000 + 86_400_000, HOUR, 86_400)
    assert is_final(0, 3_600_000 + 86_400_001, HOUR, 86_400)
    assert is_final(0, 3_600_001, HOUR, 0)
