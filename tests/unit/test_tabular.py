"""CSV/Parquet/JSONL rows: the contract's CSV typing rule, line numbers, shards, round trips."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.tabular import (
    Shard,
    TabularError,
    file_format,
    format_cell,
    read_rows,
    type_cell,
    write_rows,
)

# The rule written out as a specification, independent of the fast implementation.
_INT_SPEC = re.compile(r"[+-]?[0-9]+")
_FLOAT_SPEC = re.compile(r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+(?=[eE]))(?:[eE][+-]?[0-9]+)?")


def _spec(text: str):
    if text == "":
        return None
    if _INT_SPEC.fullmatch(text):
        return int(text)
    if _FLOAT_SPEC.fullmatch(text) and math.isfinite(float(text)):
        return float(text)
    if text.lower() in {"true", "false"}:
        return text.lower() == "true"
    return text


@pytest.mark.parametrize(("text", "value"), [
    ("", None),
    ("0", 0), ("42", 42), ("-7", -7), ("+3", 3), ("007", 7), ("123456789012345678901234567890", 123456789012345678901234567890),
    ("2.5", 2.5), ("-0.25", -0.25), (".5", 0.5), ("5.", 5.0), ("1e3", 1000.0), ("1E-2", 0.01), ("65000.0", 65000.0),
    ("true", True), ("TRUE", True), ("False", False), ("fAlSe", False),
    ("nan", "nan"), ("NaN", "NaN"), ("inf", "inf"), ("-inf", "-inf"), ("+Infinity", "+Infinity"), ("1e999", "1e999"),
    ("1_000", "1_000"), (" 1", " 1"), ("1 ", "1 "), ("\u0661", "\u0661"), ("1\u0663", "1\u0663"),
    ("-", "-"), (".", "."), ("1e", "1e"), ("--1", "--1"), ("1.2.3", "1.2.3"), ("0x10", "0x10"),
    ("yes", "yes"), ("north", "north"), ("2026-01-05T00:00:00Z", "2026-01-05T00:00:00Z"),
])
def test_type_cell_follows_the_contract_rule(text, value):
    typed = type_cell(text)
    assert typed == value and type(typed) is type(value)


@given(st.text(alphabet="0123456789+-.eEaInf_ \u0661", max_size=8))
def test_type_cell_equals_the_written_specification(text):
    typed, expected = type_cell(text), _spec(text)
    assert type(typed) is type(expected) and typed == expected


_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet="abcxyz -", min_size=1, max_size=10).filter(lambda t: t.lower() not in {"true", "false"}),
)


@given(_VALUES)
def test_format_cell_reads_back_as_the_same_value(value):
    back = type_cell(format_cell(value))
    assert back == value and type(back) is type(value)


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rows.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_line_numbers_count_physical_lines(tmp_path):
    path = _csv(tmp_path, 'id,note,x\nr1,"two\nlines",1\n\nr2,plain,2.5\nr3\n')
    assert list(read_rows(path)) == [
        (2, {"id": "r1", "note": "two\nlines", "x": 1}),
        (5, {"id": "r2", "note": "plain", "x": 2.5}),
        (6, {"id": "r3", "note": None, "x": None}),  # missing trailing cells are empty
    ]


def test_csv_row_with_too_many_cells_raises_or_is_reported(tmp_path):
    path = _csv(tmp_path, "id,x\nr1,1\nr2,2,extra\nr3,3\n")
    with pytest.raises(TabularError, match=r"rows.csv:3: 3 cells, the header has 2"):
        list(read_rows(path))
    errors = []
    rows = list(read_rows(path, on_error=lambda line, reason: errors.append((line, reason))))
    assert [line for line, _ in rows] == [2, 4]
    assert errors == [(3, "3 cells, the header has 2")]


def test_csv_byte_order_mark_and_empty_file(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffid,x\nr1,1\n".encode())
    assert list(read_rows(path)) == [(2, {"id": "r1", "x": 1})]
    assert list(read_rows(_csv(tmp_path, ""))) == []


def test_jsonl_keeps_types_and_reports_bad_lines(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": "r1", "x": 1.0, "y": "2", "z": null}\n\n[1, 2]\n{"id": \n{"id": "r2", "x": 3}\n')
    errors = []
    rows = list(read_rows(path, on_error=lambda line, reason: errors.append((line, reason))))
    assert rows == [(1, {"id": "r1", "x": 1.0, "y": "2", "z": None}), (5, {"id": "r2", "x": 3})]
    assert type(rows[0][1]["x"]) is float
    assert [line for line, _ in errors] == [3, 4]
    assert errors[0][1] == "not a JSON object" and errors[1][1].startswith("not valid JSON")


def test_parquet_nan_becomes_null_and_types_are_kept(tmp_path):
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c"], "x": [1.5, float("nan"), None],
                             "n": pa.array([1, None, 3], pa.int64()), "flag": [True, False, None]}), path)
    assert list(read_rows(path)) == [
        (1, {"id": "a", "x": 1.5, "n": 1, "flag": True}),
        (2, {"id": "b", "x": None, "n": None, "flag": False}),
        (3, {"id": "c", "x": None, "n": 3, "flag": None}),
    ]


def test_unknown_extension_is_a_clear_value_error():
    with pytest.raises(ValueError, match=r"unknown file type '\.txt': expected one of \.csv, \.json, \.jsonl, \.ndjson, \.parquet"):
        read_rows("rows.txt")
    assert [file_format(p) for p in ("a.CSV", "a.parquet", "a.json", "a.ndjson")] == ["csv", "parquet", "jsonl", "jsonl"]


_ROWS = [
    {"id": f"r{i}", "x": i * 0.25, "n": i, "flag": i % 3 == 0, "cat": "north" if i % 2 else None}
    for i in range(23)
]


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_write_then_read_gives_the_same_rows(tmp_path, suffix):
    path = write_rows(tmp_path / f"rows{suffix}", _ROWS)
    back = [row for _, row in read_rows(path)]
    assert back == _ROWS
    assert [type(v) for row in back for v in row.values()] == [type(v) for row in _ROWS for v in row.values()]


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
@pytest.mark.parametrize("limit", [None, 17])
def test_shards_partition_the_rows_exactly(tmp_path, suffix, limit):
    path = write_rows(tmp_path / f"rows{suffix}", _ROWS)
    everything = list(read_rows(path, shard=Shard(limit=limit)))
    assert len(everything) == (limit or len(_ROWS))
    parts = [list(read_rows(path, shard=Shard(k, 3, limit))) for k in range(3)]
    assert [len(p) for p in parts] == ([8, 8, 7] if limit is None else [6, 6, 5])
    assert sorted(pair for part in parts for pair in part) == everything


def test_shard_index_must_be_within_count():
    with pytest.raises(ValueError, match="shard index 3 is not in 0..2"):
        Shard(3, 3)


# --- identifiers (request_id, model, model_version) stay text in every format ---

IDENTIFIER_CSV = """\
request_id,model,model_version,score,flag,region,count
00123,churn,2026.10,0.25,TRUE,007,3
3,7,3,1e5,false,north,
1e5,m,1E5,.5,x,,00
,churn,v1,0.5,true,south,2
"""


def test_csv_identifiers_keep_the_cell_text_and_other_columns_are_typed(tmp_path):
    rows = [row for _, row in read_rows(_csv(tmp_path, IDENTIFIER_CSV))]
    assert rows == [
        {"request_id": "00123", "model": "churn", "model_version": "2026.10",
         "score": 0.25, "flag": True, "region": 7, "count": 3},
        {"request_id": "3", "model": "7", "model_version": "3",
         "score": 100000.0, "flag": False, "region": "north", "count": None},
        {"request_id": "1e5", "model": "m", "model_version": "1E5",
         "score": 0.5, "flag": "x", "region": None, "count": 0},
        {"request_id": None, "model": "churn", "model_version": "v1",  # empty is still no value
         "score": 0.5, "flag": True, "region": "south", "count": 2},
    ]
    assert all(type(row[name]) is str for row in rows[:3] for name in ("request_id", "model", "model_version"))


def test_csv_identifiers_in_short_rows_and_shards(tmp_path):
    path = _csv(tmp_path, "x,model_version,request_id\n1,2026.10,007\n2,1.50\n3,3,10\n4,04,2.0\n")
    assert [row for _, row in read_rows(path)] == [
        {"x": 1, "model_version": "2026.10", "request_id": "007"},
        {"x": 2, "model_version": "1.50", "request_id": None},
        {"x": 3, "model_version": "3", "request_id": "10"},
        {"x": 4, "model_version": "04", "request_id": "2.0"},
    ]
    parts = [[row["model_version"] for _, row in read_rows(path, shard=Shard(k, 2))] for k in range(2)]
    assert parts == [["2026.10", "3"], ["1.50", "04"]]


def test_jsonl_numbers_in_identifier_columns_become_their_text(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(
        '{"request_id": "00123", "model": "churn", "model_version": "2026.10", "x": 2026.10, "y": "3"}\n'
        '{"request_id": 123, "model": 7, "model_version": 3, "x": 3}\n'
        '{"request_id": 1e5, "model_version": 2026.10, "x": null}\n'
        '{"request_id": null, "model_version": true}\n'
    )
    assert [row for _, row in read_rows(path)] == [
        {"request_id": "00123", "model": "churn", "model_version": "2026.10", "x": 2026.1, "y": "3"},
        {"request_id": "123", "model": "7", "model_version": "3", "x": 3},
        # a JSON number loses how it was written: its shortest form (a string keeps "2026.10")
        {"request_id": "100000.0", "model_version": "2026.1", "x": None},
        # null stays missing and a bool is left for the event parser to reject
        {"request_id": None, "model_version": True},
    ]


def test_parquet_identifier_columns_are_text_whatever_their_type(tmp_path):
    import decimal

    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({
        "request_id": pa.array([123, 7, None], pa.int64()),
        "model": ["churn", "churn", "churn"],
        "model_version": pa.array([2026.1, 3.0, float("nan")], pa.float64()),
        "x": pa.array([1, 2, 3], pa.int64()),
    }), path)
    assert [row for _, row in read_rows(path)] == [
        {"request_id": "123", "model": "churn", "model_version": "2026.1", "x": 1},
        {"request_id": "7", "model": "churn", "model_version": "3.0", "x": 2},
        {"request_id": None, "model": "churn", "model_version": None, "x": 3},
    ]
    exact = tmp_path / "exact.parquet"
    pq.write_table(pa.table({
        "request_id": ["00123", "1e5"],
        "model_version": pa.array([decimal.Decimal("2026.10"), decimal.Decimal("3.00")], pa.decimal128(6, 2)),
        "model": pa.array([7, 8], pa.int32()),
    }), exact)
    assert [row for _, row in read_rows(exact)] == [
        {"request_id": "00123", "model_version": "2026.10", "model": "7"},
        {"request_id": "1e5", "model_version": "3.00", "model": "8"},
    ]
    sharded = [row["request_id"] for k in range(2) for _, row in read_rows(path, shard=Shard(k, 2))]
    assert sharded == ["123", None, "7"]


_IDENTIFIED = [
    {"request_id": request_id, "model": model, "model_version": version, "x": x}
    for request_id, model, version, x in [("00123", "7", "2026.10", 1.5), ("1e5", "m", "3", 2), ("3", "true", "v1", None)]
]


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_written_identifiers_read_back_exactly(tmp_path, suffix):
    path = write_rows(tmp_path / f"rows{suffix}", _IDENTIFIED)
    assert [row for _, row in read_rows(path)] == _IDENTIFIED
