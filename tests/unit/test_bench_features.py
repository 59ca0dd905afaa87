"""The features axis of `make bench`: the wide events it produces."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:  # benchmarks/ is not an installed package
    sys.path.insert(0, ROOT)

from benchmarks.bench_features import feature_names, wide_rows, write_pending  # noqa: E402
from producers.replay import layout_of, row_events  # noqa: E402
from producers.scenarios import FEATURES, generate  # noqa: E402
from streams.parsing import parse_prediction  # noqa: E402
from streams.records import Prediction  # noqa: E402


def test_wide_rows_replace_the_scenario_features_and_keep_everything_else():
    rows = generate("stable", rows=300, periods=3).rows
    wide = wide_rows(rows, 30, 3)
    assert len(wide) == len(rows)
    names = feature_names(30, 3)
    for row, out in zip(rows, wide, strict=True):
        assert {k: v for k, v in out.items() if k not in names} == {k: v for k, v in row.items() if k not in FEATURES}
        assert [type(out[n]) for n in names[:3]] == [float, int, float] and isinstance(out["cat_0"], str)
    by_id: dict[str, dict] = {}
    for out in wide:  # a duplicate row repeats its original's features
        assert by_id.setdefault(out["request_id"], out) == out
    event, _ = row_events(wide[0], layout_of(wide[0]))
    parsed = parse_prediction(orjson.dumps(event))
    assert isinstance(parsed, Prediction) and list(parsed.features) == names


def test_pending_file_holds_distinct_predictions_of_the_width(tmp_path):
    path = tmp_path / "pending.jsonl"
    write_pending(path, 500, 16, 2)
    events = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert len(events) == 500 == len({e["request_id"] for e in events})
    assert all(list(e["features"]) == feature_names(16, 2) for e in events)


def test_profile_helpers_split_cpu_by_thread_name_and_frames_by_share():
    from benchmarks.profile_features import cpu_by_name, frame_shares
    spent = cpu_by_name({("1", "faust"): 1.0, ("2", "faust"): 0.5},
                        {("1", "faust"): 3.0, ("2", "faust"): 1.0, ("3", "ThreadPool"): 0.25})
    assert spent == {"faust": 2.5, "ThreadPool": 0.25}
    total, inclusive, own = frame_shares(["main;parse;loads 6", "main;write 2", "", "main;parse 2"])
    assert total == 10
    assert (inclusive["main"], inclusive["parse"], inclusive["loads"]) == (10, 8, 6)
    assert (own["loads"], own["write"], own["parse"]) == (6, 2, 2)
