"""The determinism benchmark's logs of other shapes: what they promise to hold, row by row."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:  # benchmarks/ is not an installed package; `python -m pytest` adds the root itself
    sys.path.insert(0, ROOT)

from benchmarks.foreign_logs import churn_daily, ticket_router  # noqa: E402
from producers.replay import prepare  # noqa: E402
from producers.scenarios import parse_start  # noqa: E402
from streams.settings import load_settings  # noqa: E402
from streams.tabular import read_rows  # noqa: E402


def _rows(path: Path) -> list[dict]:
    return [row for _line, row in read_rows(path)]


def test_ticket_router_is_three_string_classes_in_quarter_hours(tmp_path) -> None:
    log = ticket_router(tmp_path)
    rows = _rows(log.rows_path)
    assert log.rows_path.suffix == ".jsonl" and log.window_seconds == 900
    assert {r["prediction"] for r in rows} == {"billing", "tech", "sales"}
    assert {r["model_version"] for r in rows} == {"2026.03"}
    windows = Counter((parse_start(r["timestamp"]) - log.start_ms) // 900_000 for r in rows)
    assert sorted(windows) == list(range(48))
    for r in rows:  # the predicted class has the largest probability
        p = {c: r[f"prediction_probability_{c}"] for c in ("billing", "tech", "sales")}
        assert max(p, key=p.get) == r["prediction"]
    labeled = [r for r in rows if r["actual_label"] is not None]
    early = [r for r in labeled if r["actual_timestamp"] < r["timestamp"]]
    assert 0.88 < len(labeled) / len(rows) < 0.96 and early
    reference = _rows(log.ref_path)
    assert len(reference) == 3000
    assert sum(r["prediction"] == r["label"] for r in reference) == 2760  # exactly 0.92


def test_churn_daily_has_booleans_no_score_and_some_labels_after_the_grace(tmp_path) -> None:
    log = churn_daily(tmp_path)
    rows = _rows(log.rows_path)
    assert log.rows_path.suffix == ".parquet" and log.window_seconds == 86_400
    assert not any(k.startswith("prediction_probability") or k == "score" for k in rows[0])
    assert {type(r["prediction"]) for r in rows} == {bool}
    assert {r["region"] for r in rows} == {"01", "02", "07", "11"}  # strings that look like numbers
    delays = [parse_start(r["actual_timestamp"]) - parse_start(r["timestamp"])
              for r in rows if r["actual_label"] is not None]
    assert min(delays) >= 2 * 3_600_000 and max(delays) < 36 * 3_600_000
    after_grace = sum((parse_start(r["actual_timestamp"]) - log.start_ms) // 86_400_000
                      > (parse_start(r["timestamp"]) - log.start_ms) // 86_400_000 + 1
                      for r in rows if r["actual_label"] is not None)
    assert after_grace > 0  # some labels join after their window is final


def test_both_logs_replay_without_a_skipped_row(tmp_path) -> None:
    settings = load_settings({})
    for make in (ticket_router, churn_daily):
        prepared = prepare(make(tmp_path).rows_path, settings)
        assert prepared.skipped == 0 and len(prepared.events) > 15_000
