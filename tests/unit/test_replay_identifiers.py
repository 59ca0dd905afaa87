"""Replay events carry request_id, model and model_version as text, exactly as the input file wrote them."""

from __future__ import annotations

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from producers.replay import GROUND_TRUTH, PREDICTIONS, layout_of, prepare, row_events
from streams.parsing import parse_ground_truth, parse_prediction
from streams.records import Rejection
from streams.settings import load_settings

CSV = """\
request_id,model,model_version,timestamp,prediction,score,actual_label,actual_timestamp,region,age
00123,churn,2026.10,2026-01-05T00:00:00Z,1,0.9,1,2026-01-05T00:10:00Z,007,41
3,7,3,2026-01-05T00:01:00Z,0,0.2,,,north,
1e5,churn,1E5,2026-01-05T00:02:00Z,true,0.7,false,2026-01-05T00:12:00Z,south,1e5
,churn,2026.10,2026-01-05T00:03:00Z,1,0.9,,,north,30
"""

EXPECTED_IDS = [("00123", "churn", "2026.10"), ("3", "7", "3"), ("1e5", "churn", "1E5")]


def _events(prepared):
    """(topic, key, decoded value) of every prepared event, in send order."""
    return [(topic, key, orjson.loads(value)) for _ts, _line, topic, key, value in prepared.events]


def _ids(event: dict) -> tuple[str, str, str]:
    return event["request_id"], event["model"], event["model_version"]


def test_csv_identifiers_reach_the_events_as_written(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(CSV)

    prepared = prepare(path, load_settings({}), workers=1)

    assert (prepared.rows, prepared.skipped) == (4, 1)
    assert prepared.rejected == [(5, "prediction missing_field: request_id is required")]
    events = _events(prepared)
    predictions = [value for topic, _, value in events if topic == PREDICTIONS]
    labels = [value for topic, _, value in events if topic == GROUND_TRUTH]
    assert [_ids(p) for p in predictions] == EXPECTED_IDS
    assert [_ids(t) for t in labels] == [EXPECTED_IDS[0], EXPECTED_IDS[2]]
    assert all(key == value["request_id"].encode() for _, key, value in events)
    # every other column keeps the CSV typing rule
    assert [p["features"] for p in predictions] == [{"region": 7, "age": 41}, {"region": "north", "age": None},
                                                   {"region": "south", "age": 100000.0}]
    assert [p["prediction"] for p in predictions] == [1, 0, True]
    for _, key, value in events:  # and the worker accepts them with the same identifiers
        parse = parse_prediction if "prediction" in value else parse_ground_truth
        parsed = parse(orjson.dumps(value), key=key)
        assert not isinstance(parsed, Rejection), parsed
        assert (parsed.request_id, parsed.model, parsed.model_version) == _ids(value)


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_numbers_stored_as_identifiers_become_their_text(tmp_path, suffix):
    rows = {
        "request_id": [123, 7],
        "model_version": [3, 4],
        "timestamp": ["2026-01-05T00:00:00Z", "2026-01-05T00:01:00Z"],
        "prediction": [1, 0],
    }
    path = tmp_path / f"log{suffix}"
    if suffix == ".parquet":
        pq.write_table(pa.table(rows), path)
    else:
        path.write_bytes(b"".join(orjson.dumps(dict(zip(rows, values, strict=True))) + b"\n"
                                  for values in zip(*rows.values(), strict=True)))

    prepared = prepare(path, load_settings({}), model="churn", workers=1)

    assert prepared.skipped == 0
    assert [(key, _ids(value)) for _, key, value in _events(prepared)] == [
        (b"123", ("123", "churn", "3")), (b"7", ("7", "churn", "4"))]


def test_jsonl_float_version_is_its_shortest_text_and_a_string_is_exact(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"request_id": "a", "model_version": 2026.10, "timestamp": 1767571200000, "prediction": 1}\n'
                    '{"request_id": "b", "model_version": "2026.10", "timestamp": 1767571200000, "prediction": 1}\n')
    prepared = prepare(path, load_settings({}), workers=1)
    assert [value["model_version"] for _, _, value in _events(prepared)] == ["2026.1", "2026.10"]


def test_row_events_turns_numbers_in_rows_given_directly_into_text():
    row = {"request_id": 42, "model": 7, "model_version": 2026.1, "timestamp": 1767571200000,
           "prediction": 1, "actual_label": 0, "actual_timestamp": 1767571300000}
    prediction, truth = row_events(row, layout_of(row), default_model="m")
    assert _ids(prediction) == _ids(truth) == ("42", "7", "2026.1")
    prediction, _ = row_events({"request_id": "r", "model_version": None}, layout_of(["request_id"]), "m")
    assert _ids(prediction) == ("r", "m", "v1")  # defaults as before
