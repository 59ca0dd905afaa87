"""The predictions row's features in the real engine: ``num_features`` as the engine derives it
from the ``features`` text equals Python's rule (:func:`streams.parsing.feature_columns`) value
for value and bit for bit, and the ``features`` text, sent as a JSON object, is stored byte for
byte as ``orjson.dumps`` of the features (predictions and outcomes alike).

The engine runs in a process of its own (tests/own_process.py): chDB opens one store per process.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import struct
import sys
from typing import Any

import orjson
import pytest

from tests.own_process import run_script

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000
NAMES = ["a", "b", 'q"uote', "back\\slash", "\u00e9t\u00e9", "\U0001f600", "nl\n", "tab\t", "nul\x00", "sep\u2028",
         "{}", "[", ":", ",", "true", "null", "1", "-", "num_features", "k" * 200]
TEXTS = ["", "x", '"', "\\", '\\"', "\\u0041", "{}", "[1]", "true", "null", "1", "-1", "1e5", "nan", "\u00e9",
         "\U0001f600", "\x00\x1f\x7f", "\u2028\u2029", "a b", "s" * 1000]
FLOATS = [0.0, -0.0, 1e-05, -1e-05, 1e-4, 9.99e-5, 1.5e-7, 0.1, 0.25, 1.0, 100.0, 1e16, 1e16 + 2, 2.0**53 + 2, 1e22,
          1e23, 1e300, -1e300, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 10.00001,
          123456.789, 9007199254740993.0, 1e19, 1.8446744073709552e19]
INTS = [0, 1, -1, 127, 128, 32767, 2**31, 2**53 - 1, 2**53, -(2**53), 2**53 + 1, -(2**53) - 1, 2**62, 2**63 - 1,
        -(2**63), 2**63, 2**64 - 1, 10**16, 10**19]


def _value(rng: random.Random) -> Any:
    """Any value a parsed prediction's features may hold (what orjson gives: no NaN, ints within u64/i64)."""
    kind = rng.randrange(9)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice(INTS) if rng.random() < 0.5 else rng.randint(-(2**63), 2**64 - 1)
    if kind == 3:
        return rng.randint(-(10**6), 10**6)
    if kind == 4:
        bits = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
        return bits if math.isfinite(bits) else rng.choice(FLOATS)
    if kind == 5:
        return rng.choice(FLOATS)
    if kind == 6:
        return round(rng.gauss(50, 20), rng.randrange(5)) * rng.choice([1, 1e-8, 1e8])
    if kind == 7:
        return rng.choice(TEXTS)
    return "".join(rng.choice(["a", "\u00e9", '"', "\\", "/", "\n", "\U0001f600", " ", "1", "."])
                   for _ in range(rng.randrange(8)))


def _features(rng: random.Random) -> dict[str, Any]:
    width = rng.choice([0, 1, 3, 15, 16, 40, 300])
    names = [rng.choice(NAMES) + str(i) if rng.random() < 0.3 else f"f{i}" for i in range(width)]
    return {name: _value(rng) for name in names}


def _bits(mapping: dict[str, float]) -> list[tuple[str, bytes]]:
    return [(k, struct.pack("<d", v)) for k, v in mapping.items()]


def _main() -> dict[str, Any]:
    from sinks.clickhouse import ClickHouseStore, Target
    from sinks.schema import TABLES
    from streams.facts import outcome_row, prediction_row
    from streams.join import Outcome
    from streams.parsing import feature_columns
    from streams.records import GroundTruth, Prediction

    rng = random.Random(20261205)
    wide = {f"num_{i:03d}": [round(rng.gauss(50, 10), 2), rng.randrange(9), rng.gauss(0, 1)][i % 3] for i in range(300)}
    samples = [_features(rng) for _ in range(3000)] + [{}, wide, {**wide, "plan": "pro", "vip": True, "id": 2**60}]
    predictions = [Prediction(f"r{i}", "m", "v", T0 + i, "1", 0.5, 0.5, None, f, None) for i, f in enumerate(samples)]
    outcomes = [Outcome(p, GroundTruth(p.request_id, "0", T0 + 10**6)) for p in predictions]

    async def write_and_read() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        store = ClickHouseStore(Target("chdb", "chdb://memory", "monitoring"))
        old = ClickHouseStore(Target("chdb", "chdb://memory", "older"))
        await store.start()
        try:
            await store.insert("predictions", [prediction_row(p, 0, i, 1.0, 3600) for i, p in enumerate(predictions)])
            await store.insert("outcomes", [outcome_row(o, 0, 1.0, False, False, 3600) for o in outcomes])
            stored = await store.query("SELECT request_id, features, num_features, cat_features "
                                       "FROM monitoring.predictions ORDER BY kafka_offset")
            texts = await store.query("SELECT request_id, features FROM monitoring.outcomes")
            # A store created before the engine derived num_features: its rows stay, new rows get the map.
            ddl = TABLES["predictions"].replace(TABLES["predictions"].split("num_features ")[1].split(",\n")[0],
                                                "Map(String, Float64)")
            for sql in ("CREATE DATABASE older",
                        f"CREATE TABLE older.predictions ({ddl.strip().rstrip(',')}) "
                        "ENGINE = ReplacingMergeTree ORDER BY request_id",
                        "INSERT INTO older.predictions (request_id, num_features, features) "
                        "VALUES ('before', map('x', 0.5), '{\"x\":0.5}')"):
                await old._call(lambda sql=sql: old._writer().command(sql))
            await old.start()
            await old.insert("predictions", [prediction_row(predictions[-1], 0, 1, 1.0, 3600)])
            upgraded = await old.query("SELECT request_id, num_features, cat_features FROM older.predictions "
                                       "ORDER BY request_id")
        finally:
            await store.close()
            await old.close()
        return stored, texts, upgraded

    stored, texts, upgraded = asyncio.run(write_and_read())
    by_id = {p.request_id: p for p in predictions}
    mismatches = []
    numbers = categories = 0
    for rid, text, num, cat in stored:
        features = by_id[rid].features
        want_num, want_cat = feature_columns(features)
        numbers += len(want_num)
        categories += len(want_cat)
        if text.encode() != orjson.dumps(features) or _bits(num) != _bits(want_num) \
                or list(cat.items()) != list(want_cat.items()):
            mismatches.append(repr((features, text, num, cat))[:500])
    outcome_texts = sorted(rid for rid, text in texts if text.encode() != orjson.dumps(by_id[rid].features))
    last_num, last_cat = feature_columns(predictions[-1].features)
    return {"rows": len(stored), "numbers": numbers, "categories": categories, "mismatches": mismatches[:5],
            "outcomes": len(texts), "outcome_mismatches": outcome_texts[:5],
            "upgraded": [[rid, _bits(num) == _bits(want), cat == want_cat] for (rid, num, cat), want, want_cat
                         in zip(upgraded, [{"x": 0.5}, last_num], [{}, last_cat], strict=True)]}


def test_num_features_from_the_engine_and_the_features_text_are_exact():
    result = json.loads(run_script(__file__, timeout=300))
    assert result["mismatches"] == []
    assert result["outcome_mismatches"] == []
    assert result["rows"] == result["outcomes"] == 3003
    assert result["numbers"] > 20_000 and result["categories"] > 10_000  # both maps well exercised
    assert result["upgraded"] == [["before", True, True], ["r3002", True, True]]


if __name__ == "__main__":
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    sys.stdout.write(json.dumps(_main()))
