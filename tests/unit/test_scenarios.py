"""Built-in scenarios: exact per-period accuracy, realistic labels, drift where (and only where) promised."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from datetime import datetime

import numpy as np
import pytest

from producers import scenarios
from producers.scenarios import COLUMNS, REFERENCE_COLUMNS, generate, reference_path, write
from streams.tabular import read_rows

START_MS = 1_767_571_200_000  # 2026-01-05T00:00:00Z
ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def _ms(text: str) -> int:
    return round(datetime.fromisoformat(text).timestamp() * 1000)


def _distinct(rows: list[dict]) -> list[dict]:
    seen: dict[str, dict] = {}
    for row in rows:
        seen.setdefault(row["request_id"], row)
    return list(seen.values())


def _by_period(rows: list[dict], period_seconds: int = 3600) -> dict[int, list[dict]]:
    periods = defaultdict(list)
    for row in _distinct(rows):
        periods[(_ms(row["timestamp"]) - START_MS) // (period_seconds * 1000)].append(row)
    return periods


def _accuracy(rows: list[dict]) -> tuple[int, int]:
    labeled = [r for r in rows if r["actual_label"] is not None]
    return sum(r["actual_label"] == r["prediction"] for r in labeled), len(labeled)


@pytest.fixture(scope="module")
def degradation():
    return generate("degradation", rows=10_000)


@pytest.mark.parametrize("name", [n for n in scenarios.PLANS if n not in scenarios.CALIBRATED_PLANS])
def test_accuracy_per_period_is_exact_among_distinct_labeled_requests(name):
    s = generate(name, rows=4000, periods=20)
    periods = _by_period(s.rows)
    assert sorted(periods) == list(range(20))
    for p, summary in enumerate(s.period_summaries):
        correct, labeled = _accuracy(periods[p])
        assert (correct, labeled, len(periods[p])) == (summary.correct, summary.labeled, summary.predictions)
        assert correct == math.floor(s.expected_accuracy[p] * labeled + 0.5)
        assert abs(correct / labeled - s.expected_accuracy[p]) <= 0.5 / labeled


def test_expected_accuracy_of_each_scenario():
    assert generate("degradation", rows=2000).expected_accuracy == [
        0.95, 0.925, 0.9, 0.875, 0.85, 0.825, 0.8, 0.775, 0.75, 0.725,
        0.7, 0.675, 0.65, 0.625, 0.6, 0.575, 0.55, 0.525, 0.5, 0.475,
    ]
    assert generate("stable", rows=2000).expected_accuracy == [0.92] * 20
    assert generate("feature-drift", rows=2000).expected_accuracy == [0.92] * 20
    assert generate("sudden-drift", rows=2000).expected_accuracy == [0.96] * 12 + [0.88] * 8


def test_degradation_default_figures(degradation):
    assert len(_distinct(degradation.rows)) == 10_000
    assert [p.predictions for p in degradation.period_summaries] == [500] * 20
    assert degradation.model == "banking-campaign" and degradation.change_period is None


def test_about_five_percent_are_never_labeled(degradation):
    rows = _distinct(degradation.rows)
    unlabeled = [r for r in rows if r["actual_label"] is None]
    assert 0.04 < len(unlabeled) / len(rows) < 0.06
    assert all(r["actual_timestamp"] is None for r in unlabeled)


def test_label_delays_some_labels_precede_their_prediction(degradation):
    delays = [(_ms(r["actual_timestamp"]) - _ms(r["timestamp"])) / 1000
              for r in _distinct(degradation.rows) if r["actual_label"] is not None]
    early = [d for d in delays if d < 0]
    late = sorted(d for d in delays if d >= 0)
    assert 0.005 < len(early) / len(delays) < 0.015
    assert all(-300 <= d <= -1 for d in early)
    assert late[0] >= 60 and late[-1] <= 12 * 3600
    assert 1200 < late[len(late) // 2] < 2700  # median around 30 minutes


def test_duplicates_are_exact_adjacent_copies(degradation):
    rows = degradation.rows
    duplicates = [i for i in range(1, len(rows)) if rows[i]["request_id"] == rows[i - 1]["request_id"]]
    assert len(rows) - 10_000 == len(duplicates)
    assert 0.002 < len(duplicates) / 10_000 < 0.008
    assert all(rows[i] == rows[i - 1] and rows[i] is not rows[i - 1] for i in duplicates)
    assert len({r["request_id"] for r in rows}) == 10_000


def test_rows_have_the_replay_shape(degradation):
    for row in degradation.rows:
        assert tuple(row) == COLUMNS
        assert ISO_MS.fullmatch(row["timestamp"])
        assert row["prediction"] in (0, 1) and row["actual_label"] in (0, 1, None)
        p0, p1 = row["prediction_probability_0"], row["prediction_probability_1"]
        assert abs(p0 + p1 - 1) < 1e-9 and (p1 if row["prediction"] else p0) >= 0.5
        assert row["region"] in scenarios.REGIONS and 1 <= row["category_preference"] <= 9
    stamps = [_ms(r["timestamp"]) for r in degradation.rows]
    assert stamps == sorted(stamps) and START_MS <= stamps[0] and stamps[-1] < START_MS + 20 * 3600_000
    assert degradation.rows[0]["request_id"] == "degradation-0-0000000"


def _means(rows: list[dict]) -> dict[str, float]:
    return {f: float(np.mean([r[f] for r in rows])) for f in ("age", "income", "is_premium", "credit_score")}


def test_feature_drift_shifts_means_after_the_midpoint_only():
    s = generate("feature-drift", rows=20_000, periods=20)
    assert s.change_period == 10 and s.change_start == "2026-01-05T10:00:00.000Z"
    periods = _by_period(s.rows)
    first = _means([r for p in range(0, 5) for r in periods[p]])
    second = _means([r for p in range(5, 10) for r in periods[p]])
    drifted = _means([r for p in range(10, 20) for r in periods[p]])
    for before in (first, second):
        assert abs(before["age"] - 35) < 0.5 and abs(before["income"] - 65000) < 1000
        assert abs(before["is_premium"] - 0.3) < 0.03
    assert abs(drifted["age"] - 38) < 0.5 and abs(drifted["income"] - 70000) < 1000
    assert abs(drifted["is_premium"] - 0.35) < 0.03
    assert abs(drifted["credit_score"] - first["credit_score"]) < 3


def test_sudden_drift_is_out_of_distribution_from_the_change_period():
    s = generate("sudden-drift", rows=10_000, periods=20)
    assert s.change_period == 12 and s.drifted_features == ("avg_transaction", "credit_score", "region")
    periods = _by_period(s.rows)
    before = [r for p in range(12) for r in periods[p]]
    after = [r for p in range(12, 20) for r in periods[p]]
    assert not any(r["region"] == "offshore" for r in before)
    assert 0.27 < np.mean([r["region"] == "offshore" for r in after]) < 0.33
    assert 100 < np.mean([r["credit_score"] for r in before]) - np.mean([r["credit_score"] for r in after]) < 140
    ratio = np.median([r["avg_transaction"] for r in after]) / np.median([r["avg_transaction"] for r in before])
    assert 2.6 < ratio < 3.4


def test_reference_is_baseline_with_period_zero_accuracy_exactly():
    s = generate("sudden-drift", rows=10_000)
    assert len(s.reference) == 5000 and all(tuple(r) == REFERENCE_COLUMNS for r in s.reference)
    assert sum(r["label"] == r["prediction"] for r in s.reference) == 4800  # 0.96 * 5000
    assert all(r["region"] != "offshore" for r in s.reference)
    assert abs(np.mean([r["credit_score"] for r in s.reference]) - 700) < 3
    assert [len(generate("stable", rows=n, periods=4).reference) for n in (400, 3000, 9000)] == [1000, 3000, 5000]


def test_same_seed_same_rows_other_seed_other_rows():
    a, b = generate("stable", rows=1000, seed=7), generate("stable", rows=1000, seed=7)
    assert a.rows == b.rows and a.reference == b.reference
    c = generate("stable", rows=1000, seed=8)
    assert c.rows[0]["request_id"] == "stable-8-0000000" and c.rows[0]["age"] != a.rows[0]["age"]


def test_period_options_and_model_names():
    s = generate("stable", rows=100, periods=4, period_seconds=600, start="2026-02-01T12:00:00Z",
                 model="m", model_version="v9")
    assert [p.start for p in s.period_summaries] == [
        "2026-02-01T12:00:00.000Z", "2026-02-01T12:10:00.000Z",
        "2026-02-01T12:20:00.000Z", "2026-02-01T12:30:00.000Z",
    ]
    assert [p.predictions for p in s.period_summaries] == [25] * 4
    assert {(r["model"], r["model_version"]) for r in s.rows} == {("m", "v9")}
    assert generate("stable", rows=10, periods=3).period_summaries[0].predictions == 4


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "nope"}, "unknown scenario 'nope': expected one of stable, degradation, feature-drift, sudden-drift"),
    ({"name": "stable", "rows": 3, "periods": 4}, "rows=3 is fewer than periods=4"),
    ({"name": "stable", "period_seconds": 0}, "period_seconds=0 is not valid: expected a positive integer"),
])
def test_bad_arguments_are_clear_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        generate(**kwargs)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_files_read_back_identical_through_tabular(tmp_path, suffix):
    s = generate("sudden-drift", rows=1500, periods=5)
    rows_path, ref_path = write(s, tmp_path / f"log{suffix}")
    assert ref_path == tmp_path / f"log.reference{suffix}" == reference_path(rows_path)
    for path, expected in ((rows_path, s.rows), (ref_path, s.reference)):
        back = [row for _, row in read_rows(path)]
        assert back == expected
        assert [type(v) for r in back for v in r.values()] == [type(v) for r in expected for v in r.values()]


def test_command_line_writes_both_files_and_prints_the_summary(tmp_path, capsys):
    out = tmp_path / "deg.csv"
    code = scenarios.main(["degradation", "--out", str(out), "--rows", "400", "--periods", "4", "--seed", "3"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and out.is_file() and (tmp_path / "deg.reference.csv").is_file()
    s = generate("degradation", rows=400, periods=4, seed=3)
    assert lines[0] == f"wrote {out} ({len(s.rows)} rows)"
    assert lines[1] == f"wrote {tmp_path / 'deg.reference.csv'} (1000 reference rows)"
    first = s.period_summaries[0]
    assert lines[5].split() == ["0", first.start, str(first.rows), "100", str(first.labeled),
                                str(first.correct), f"{first.accuracy:.4f}", "0.950"]
    assert len(lines) == 9


def test_command_line_rejects_a_bad_extension(tmp_path, capsys):
    assert scenarios.main(["stable", "--out", str(tmp_path / "x.xlsx")]) == 2
    assert "unknown file type '.xlsx'" in capsys.readouterr().err


# --- label-outage and canary (issue 16) ---

def test_label_outage_takes_every_label_of_its_periods_and_only_those():
    s = generate("label-outage", rows=2000, periods=10)
    assert s.label_outage == (4, 6)
    periods = _by_period(s.rows)
    for p, summary in enumerate(s.period_summaries):
        correct, labeled = _accuracy(periods[p])
        assert (correct, labeled) == (summary.correct, summary.labeled)
        assert (labeled == 0) == (4 <= p < 6)
    assert all(r["actual_timestamp"] is None for p in (4, 5) for r in periods[p])


def test_label_outage_flag_on_any_scenario_keeps_the_other_rows():
    plain, cut = generate("stable", rows=1000, periods=5), generate("stable", rows=1000, periods=5, label_outage=(1, 2))
    assert [r["request_id"] for r in plain.rows] == [r["request_id"] for r in cut.rows]
    assert [p.labeled for p in cut.period_summaries] == [plain.period_summaries[0].labeled, 0,
                                                         *[p.labeled for p in plain.period_summaries[2:]]]
    with pytest.raises(ValueError, match="label_outage=3:3"):
        generate("stable", rows=100, periods=5, label_outage=(3, 3))
    assert scenarios.outage_periods("2:4") == (2, 4)


def test_canary_version_takes_a_fifth_from_the_middle_at_exact_accuracies():
    s = generate("canary", rows=4000, periods=8)
    assert s.canary_version == "v2" and s.change_period == 4
    periods = _by_period(s.rows)
    for p in range(8):
        v2 = [r for r in periods[p] if r["model_version"] == "v2"]
        v1 = [r for r in periods[p] if r["model_version"] == "v1"]
        if p < 4:
            assert v2 == []
            continue
        assert len({r["request_id"] for r in v2}) == 100
        for rows, acc in ((v1, 0.95), (v2, 0.87)):
            correct, labeled = _accuracy(rows)
            assert correct == math.floor(acc * labeled + 0.5)
    stamps = [r["timestamp"] for r in s.rows]
    assert stamps == sorted(stamps)
