"""README's SQL cookbook: every recipe runs on the demo's results, and some are checked against
figures recomputed here in Python from the raw rows."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streams.settings import load_settings

README = Path(__file__).resolve().parents[2] / "README.md"
REPLACING_TABLES = {"window_metrics", "feature_drift", "alerts", "predictions", "outcomes", "labels",
                    "references", "checkpoints", "model_settings"}


def cookbook(readme: str) -> dict[str, str]:
    """Heading -> SQL of each recipe (a ``###`` heading with exactly one ```sql block) of the
    README's ``## SQL cookbook`` section, so that the documented queries are the tested ones.

    >>> cookbook("## A\\n## SQL cookbook\\nintro\\n### One\\ntext\\n```sql\\nSELECT 1\\n```\\n## Next\\n")
    {'One': 'SELECT 1\\n'}
    """
    start = re.search(r"^## SQL cookbook\n", readme, re.M)
    if start is None:
        raise ValueError("README.md has no '## SQL cookbook' section")
    section = re.split(r"^## ", readme[start.end():], maxsplit=1, flags=re.M)[0]
    recipes: dict[str, str] = {}
    for part in re.split(r"^### ", section, flags=re.M)[1:]:
        heading, body = part.split("\n", 1)
        blocks = re.findall(r"```sql\n(.*?)```", body, re.S)
        if len(blocks) != 1:
            raise ValueError(f"recipe {heading!r} has {len(blocks)} sql blocks, not one")
        if heading.strip() in recipes:
            raise ValueError(f"recipe {heading!r} twice")
        recipes[heading.strip()] = blocks[0]
    return recipes


RECIPES = cookbook(README.read_text())


def records(run: Any, sql: str) -> list[dict[str, Any]]:
    """Rows as dicts, column names from ClickHouse's DESCRIBE of the query."""
    names = [row[0] for row in run.query(f"DESCRIBE ({sql})")]
    return [dict(zip(names, row, strict=True)) for row in run.query(sql)]


def test_cookbook_parser_refuses_a_recipe_without_one_block() -> None:
    with pytest.raises(ValueError, match="2 sql blocks"):
        cookbook("## SQL cookbook\n### Two\n```sql\nSELECT 1\n```\n```sql\nSELECT 2\n```\n")
    with pytest.raises(ValueError, match="no '## SQL cookbook'"):
        cookbook("## Other\n")


def test_cookbook_size_and_table_names() -> None:
    assert len(RECIPES) >= 12
    for heading, sql in RECIPES.items():
        # Every table fully qualified: FROM/JOIN name either `monitoring.x` or a subquery.
        for target in re.findall(r"\b(?:FROM|JOIN)\s+([\w.]+|\()", sql):
            assert target == "(" or target.startswith("monitoring."), f"{heading}: FROM {target}"
        tables = re.findall(r"\bmonitoring\.(\w+)", sql)
        assert tables, heading
        final = re.findall(r"\bmonitoring\.(\w+)(?:\s+AS\s+\w+)?\s+FINAL\b", sql)
        assert sorted(final) == sorted(t for t in tables if t in REPLACING_TABLES), f"{heading}: FINAL"


@pytest.mark.parametrize("heading", list(RECIPES))
def test_recipe_returns_rows(demo_results: Any, heading: str) -> None:
    assert demo_results.query(RECIPES[heading]), heading


def test_accuracy_by_model_version(demo_results: Any) -> None:
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for model, version, labeled, correct in demo_results.query(
            "SELECT model, model_version, labeled, correct FROM monitoring.window_metrics FINAL"):
        totals[(model, version)][0] += labeled
        totals[(model, version)][1] += correct
    outcome_accuracy = {(m, v): a for m, v, a in demo_results.query(
        "SELECT model, model_version, avg(correct) FROM monitoring.outcomes FINAL GROUP BY 1, 2")}
    rows = records(demo_results, RECIPES["Accuracy by model version"])
    assert {(r["model"], r["model_version"]) for r in rows} == set(totals)
    for r in rows:
        labeled, correct = totals[(r["model"], r["model_version"])]
        assert (r["labeled_total"], r["correct_total"]) == (labeled, correct)
        assert math.isclose(r["version_accuracy"], correct / labeled, rel_tol=1e-12)
        assert math.isclose(r["version_accuracy"], outcome_accuracy[(r["model"], r["model_version"])], rel_tol=1e-12)


def test_windows_below_the_slo(demo_results: Any) -> None:
    settings = load_settings({})
    assert "accuracy < 0.85" in RECIPES["Windows below the SLO (ACCURACY_THRESHOLD 0.85)"]
    assert settings.accuracy_threshold == 0.85
    expected = {(m, v, ws) for m, v, ws, labeled, correct in demo_results.query(
        "SELECT model, model_version, window_start, labeled, correct FROM monitoring.window_metrics FINAL")
        if labeled >= settings.min_labeled and correct / labeled < settings.accuracy_threshold}
    rows = records(demo_results, RECIPES["Windows below the SLO (ACCURACY_THRESHOLD 0.85)"])
    assert {(r["model"], r["model_version"], r["window_start"]) for r in rows} == expected
    assert expected, "the degradation scenario falls below 85% from period 5"


def test_unmatched_predictions(demo_results: Any) -> None:
    missing = {(m, v): p - lab for m, v, p, lab in demo_results.query(
        "SELECT model, model_version, sum(predictions), sum(labeled) FROM monitoring.window_metrics FINAL "
        "GROUP BY 1, 2")}
    rows = records(demo_results, RECIPES["Unmatched predictions (no outcome yet)"])
    assert {(r["model"], r["model_version"]): r["unmatched"] for r in rows} == missing


def test_latency_percentiles(demo_results: Any) -> None:
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for model, version, latency in demo_results.query(
            "SELECT model, model_version, latency_ms FROM monitoring.predictions FINAL WHERE latency_ms IS NOT NULL"):
        values[(model, version)].append(latency)
    rows = records(demo_results, RECIPES["Latency percentiles (latency_ms reported with the predictions)"])
    assert {(r["model"], r["model_version"]) for r in rows} == set(values)
    for r in rows:
        sample = values[(r["model"], r["model_version"])]
        assert r["predictions"] == len(sample)
        expected = np.percentile(sample, [50, 95, 99])  # numpy's linear = ClickHouse's exact inclusive
        assert np.allclose(r["p50_p95_p99_ms"], expected, rtol=0, atol=0.0051), (r, expected)


def test_label_delay_percentiles(demo_results: Any) -> None:
    delays: dict[tuple[str, str], list[float]] = defaultdict(list)
    for model, version, predicted_at, labeled_at in demo_results.query(
            "SELECT model, model_version, predicted_at, labeled_at FROM monitoring.outcomes FINAL"):
        delays[(model, version)].append((labeled_at - predicted_at).total_seconds())
    rows = records(demo_results, RECIPES["Label delay percentiles (labeled_at - predicted_at, seconds)"])
    assert {(r["model"], r["model_version"]) for r in rows} == set(delays)
    for r in rows:
        sample = delays[(r["model"], r["model_version"])]
        assert r["outcomes"] == len(sample)
        assert r["labeled_before_prediction"] == sum(d < 0 for d in sample)
        assert np.allclose(r["p50_p90_p99_s"], np.percentile(sample, [50, 90, 99]), rtol=0, atol=0.051)


def test_confusion_matrix_and_error_rates(demo_results: Any) -> None:
    ((labeled, correct),) = demo_results.query(
        "SELECT sum(labeled), sum(correct) FROM monitoring.window_metrics FINAL "
        "WHERE model = 'banking-campaign' AND model_version = 'v1'")
    cells = records(demo_results, RECIPES["Confusion matrix of a version"])
    assert sum(c["requests"] for c in cells) == labeled
    assert sum(c["requests"] for c in cells if c["actual"] == c["predicted"]) == correct
    for actual in {c["actual"] for c in cells}:
        assert math.isclose(sum(c["share_of_actual"] for c in cells if c["actual"] == actual), 1.0)

    by_class: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for model, version, prediction, ok in demo_results.query(
            "SELECT model, model_version, prediction, correct FROM monitoring.outcomes FINAL"):
        by_class[(model, version, prediction)].append(ok)
    rows = records(demo_results, RECIPES["Error rate by predicted class"])
    assert {(r["model"], r["model_version"], r["prediction"]) for r in rows} == set(by_class)
    for r in rows:
        sample = by_class[(r["model"], r["model_version"], r["prediction"])]
        assert r["labeled"] == len(sample)
        assert math.isclose(r["error_rate"], 1 - sum(sample) / len(sample), abs_tol=5.1e-5)


def test_alert_history_pairs_firing_with_the_next_resolved(demo_results: Any) -> None:
    events: dict[tuple[str, ...], list[tuple[Any, ...]]] = defaultdict(list)
    for model, version, type_, subject, ws, detected, status in demo_results.query(
            "SELECT model, model_version, type, subject, window_start, detected_at, status "
            "FROM monitoring.alerts FINAL"):
        events[(model, version, type_, subject)].append((ws, detected, status))
    expected = []
    for key, history in events.items():
        history.sort()
        for i, (ws, _, status) in enumerate(history):
            if status == "firing":
                resolved = next((h[0] for h in history[i + 1:] if h[2] == "resolved"), None)
                expected.append((*key, ws, resolved))
    rows = records(demo_results, RECIPES["Alert history with durations (firing -> resolved)"])
    got = [(r["model"], r["model_version"], r["type"], r["subject"], r["fired_window"], r["resolved_window"])
           for r in rows]
    assert sorted(got, key=str) == sorted(expected, key=str)
    closed = [r for r in rows if r["resolved_window"] is not None]
    assert closed, "the feature-drift scenario's drift alerts resolve"
    for r in closed:
        assert math.isclose(r["open_hours"], (r["resolved_window"] - r["fired_window"]).total_seconds() / 3600)


def test_most_drifted_features_in_the_last_windows(demo_results: Any) -> None:
    rows = demo_results.query(
        "SELECT model, model_version, window_start, feature, psi FROM monitoring.feature_drift FINAL")
    windows: dict[tuple[str, str], set[Any]] = defaultdict(set)
    for model, version, ws, _, _ in rows:
        windows[(model, version)].add(ws)
    last = {key: set(sorted(ws)[-6:]) for key, ws in windows.items()}
    peak: dict[tuple[str, str, str], float] = {}
    for model, version, ws, feature, psi in rows:
        if ws in last[(model, version)] and not feature.startswith("__") and psi is not None:
            key = (model, version, feature)
            peak[key] = max(peak.get(key, 0.0), psi)
    top = records(demo_results, RECIPES["Most drifted features in the last N windows (N = 6)"])
    assert len(top) == min(10, len(peak))
    for r in top:
        assert math.isclose(r["max_psi"], peak[(r["model"], r["model_version"], r["feature"])], abs_tol=5.1e-5)
    assert math.isclose(top[0]["max_psi"], max(peak.values()), abs_tol=5.1e-5)


def test_counts_agree_with_window_metrics(demo_results: Any) -> None:
    rows = records(demo_results, RECIPES["Duplicate-free counts checked against window_metrics"])
    ((windows,),) = demo_results.query("SELECT count() FROM monitoring.window_metrics FINAL")
    assert len(rows) == windows
    assert all(r["ok"] == 1 for r in rows), [r for r in rows if r["ok"] != 1][:3]
