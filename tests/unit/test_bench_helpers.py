"""The benchmarks' pure parts: percentiles, report sections, the latency plan and its matching rules."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:  # benchmarks/ is not an installed package; `python -m pytest` adds the root itself
    sys.path.insert(0, ROOT)

from benchmarks.latency_plan import (  # noqa: E402
    Plan,
    build_schedule,
    expected_alerts,
    phase_order,
    prediction_index,
    refreshes,
    request_id,
    row_latencies,
)
from benchmarks.markdown import markdown_table, replace_section  # noqa: E402
from benchmarks.stats import percentile, spread  # noqa: E402


def test_percentile_is_nearest_rank() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 9.0, 8.0, 7.0, 6.0]
    assert percentile(values, 50) == 5.0
    assert percentile(values, 95) == 10.0
    assert percentile(values, 90) == 9.0
    assert percentile(values, 10) == 1.0
    assert percentile(values, 100) == 10.0
    assert percentile([7.0], 99) == 7.0
    assert percentile(list(range(1, 201)), 99) == 198


@pytest.mark.parametrize("bad", [0, -1, 101])
def test_percentile_rejects_out_of_range(bad: float) -> None:
    with pytest.raises(ValueError):
        percentile([1.0], bad)
    with pytest.raises(ValueError):
        percentile([], 50)


def test_spread_gives_min_median_max() -> None:
    assert spread([3.0, 1.0, 2.0]) == ["1", "2", "3"]
    assert spread([4.0, 1.0, 2.0, 3.0], "{:.1f}") == ["1.0", "2.5", "4.0"]
    assert spread([1234.0, 5678.0, 91011.0]) == ["1,234", "5,678", "91,011"]


def test_replace_section_rewrites_only_its_block() -> None:
    text = "# Benchmarks\n\nprose\n\n<!-- a:start -->\nold a\n<!-- a:end -->\n\nmore prose\n"
    out = replace_section(text, "a", "new a\n")
    assert out == "# Benchmarks\n\nprose\n\n<!-- a:start -->\nnew a\n<!-- a:end -->\n\nmore prose\n"
    appended = replace_section(out, "b", "b body")
    assert appended == out.rstrip("\n") + "\n\n<!-- b:start -->\nb body\n<!-- b:end -->\n"
    assert replace_section(appended, "a", "x\\1 $0").count("x\\1 $0") == 1  # the body is taken literally


def test_markdown_table_aligns_figures_right() -> None:
    assert markdown_table(["", "n"], [["a", "1"]]) == "|  | n |\n| --- | ---: |\n| a | 1 |"


def test_phase_alternates_with_gaps_and_staggered_versions() -> None:
    plan = Plan(rate=300, seconds=10, versions=2, period_s=3, gap_s=2.5)
    index, gap = plan.phase(0, [0, 2.4, 2.5, 2.99, 3.0, 5.6, 6.0])
    assert index.tolist() == [0, 0, 0, 0, 1, 1, 2]
    assert gap.tolist() == [True, True, False, False, True, False, True]
    index, gap = plan.phase(1, [0, 2.5, 3.0])  # one period out of step
    assert index.tolist() == [1, 1, 2]
    assert gap.tolist() == [True, False, True]


def test_plan_gap_must_cover_the_label_delay() -> None:
    with pytest.raises(ValueError):
        Plan(rate=1, seconds=1, period_s=10, gap_s=2.0)
    with pytest.raises(ValueError):
        Plan(rate=1, seconds=1, period_s=2.5, gap_s=2.5)


def test_schedule_rates_order_and_labels() -> None:
    plan = Plan(rate=300, seconds=20, versions=2, period_s=5, gap_s=2.5)
    s = build_schedule(plan)
    assert len(s.pred_at) == 4000  # 300 / (1 + 2.5/5) predictions per second
    assert s.version[:4].tolist() == [0, 1, 0, 1]
    assert np.all(np.diff(s.label_at) >= 0)  # labels in produce order
    predicted_at = s.pred_at[s.label_pred]
    delays = s.label_at - predicted_at
    assert delays.min() >= 0.5 and delays.max() <= 2.5
    for v in (0, 1):
        mine = s.version[s.label_pred] == v
        index, gap = plan.phase(v, s.label_at[mine])
        assert not gap.any()  # no label inside a pause
        assert (index == s.label_phase[mine]).all()
        assert (s.label_wrong[mine] == (index % 2 == 1)).all()
        # each label's prediction was made in the label's own period
        assert (np.floor(predicted_at[mine] / 5) == np.floor(s.label_at[mine] / 5)).all()
    assert 1850 < len(s.label_at) < 2150  # about half the predictions get a label
    due, order = s.order()
    assert len(due) == s.events and np.all(np.diff(due) >= 0)


def test_request_ids_carry_version_phase_and_index() -> None:
    rid = request_id("lat", 1234, 2, 7)
    assert rid == "lat-v3-7-00001234"
    assert rid.split("-")[2] == "7" and prediction_index(rid) == 1234
    assert request_id("lat", 5, 0, None) == "lat-v1-n-00000005"


def _outcomes(*parts: tuple[bool, int, int]) -> list[tuple[bool, int, str]]:
    """(wrong, count, base join ms) parts -> (wrong, join ms, request_id), one ms apart."""
    out: list[tuple[bool, int, str]] = []
    for wrong, count, base in parts:
        out += [(wrong, base + len(out) + k, f"r{len(out) + k:05d}") for k in range(count)]
    return out


def test_expected_alerts_follow_adwin_in_event_time_and_the_alert_book() -> None:
    right, wrong = False, True
    out = expected_alerts("v1", _outcomes((right, 300, 0), (wrong, 300, 0), (right, 300, 0)), 60, 0.002)
    assert [(i, a.status, a.value, a.evidence["adwin_width"]) for i, a in out] == [
        (319, "firing", 0.3125, 64), (639, "resolved", 0.2857142857142857, 56)]
    # a second rise in the same window repeats an alert id: the worker does not send it
    same = expected_alerts("v1", _outcomes((right, 300, 0), (wrong, 300, 0), (right, 300, 0), (wrong, 300, 0)),
                           60, 0.002)
    assert [(i, a.status) for i, a in same] == [(319, "firing"), (639, "resolved")]
    later = _outcomes((right, 300, 0), (wrong, 300, 0), (right, 300, 60_000), (wrong, 300, 60_000))
    assert [(i, a.status, a.window_start) for i, a in expected_alerts("v1", later, 60, 0.002)] == [
        (319, "firing", "1970-01-01T00:00:00.000Z"), (639, "resolved", "1970-01-01T00:01:00.000Z"),
        (927, "firing", "1970-01-01T00:01:00.000Z")]
    # the order given does not matter: event time decides
    assert expected_alerts("v1", list(reversed(later)), 60, 0.002)[0][1] == expected_alerts("v1", later, 60, 0.002)[0][1]


def test_row_latencies_take_the_first_version_counting_the_label() -> None:
    labels = {("v1", 0): [10.0, 11.0, 12.0], ("v1", 60_000): [20.0]}
    versions = {("v1", 0): [(13.0, 13.5, 2), (12.5, 12.6, 1), (14.0, 14.2, 3)]}  # (computed, seen, labeled)
    seen, computed, missing = row_latencies(labels, versions, since=0.0)
    assert computed == [2.5, 2.0, 2.0]
    assert seen == pytest.approx([2.6, 2.5, 2.2])
    assert missing == 1  # the window at 60 s never showed its label
    seen, computed, missing = row_latencies(labels, versions, since=11.0)
    assert computed == [2.0, 2.0] and missing == 1


def test_phase_order_counts_reversed_and_shared_boundaries() -> None:
    spans = [("v1", 0, 1, 5), ("v1", 1, 6, 9), ("v1", 2, 9, 12), ("v2", 3, 1, 8), ("v2", 4, 7, 9)]
    assert phase_order(spans) == (1, 1)
    assert phase_order([("v1", 0, 1, 2), ("v1", 1, 3, 4)]) == (0, 0)


def test_refreshes_split_row_stamps_into_refreshes() -> None:
    intervals, spans = refreshes([10.0, 10.1, 10.25, 10.1, 13.0, 13.2, 20.0])
    assert intervals == [3.0, 7.0]
    assert spans == pytest.approx([0.25, 0.2, 0.0])
    assert refreshes([]) == ([], [])
