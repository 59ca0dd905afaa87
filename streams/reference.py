"""The reference a model version's windows are compared with.

Built from rows of raw values: the REFERENCE_PATH file (optional ``score``,
``scores`` (class -> probability), ``prediction``, ``label``, ``model``/``model_version``;
every other column is a feature; labeled rows with a score calibrate the estimated
accuracy, :mod:`streams.estimate`) or the version's first window with at least MIN_LABELED predictions.
A feature is numeric when every non-null reference value is a number (bools are
categorical); categorical values are compared in canonical form.

>>> ref = build_reference([{"age": 30, "region": "n", "score": 0.2, "prediction": 0, "label": 0},
...                        {"age": 40, "region": "s", "score": 0.9, "prediction": 1, "label": 0}], bins=2)
>>> sorted(ref.features), ref.features["age"].kind, ref.features["region"].kind, ref.baseline_accuracy
(['age', 'region'], 'numeric', 'categorical', 0.5)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from streams.canonical import canonical_class
from streams.estimate import Calibration, confidence_of, fit_calibration
from streams.psi import (
    CategoricalReference,
    FeatureReference,
    NumericReference,
    categorical_reference,
    numeric_reference,
)

SCORE_SUBJECT = "__score__"
PREDICTION_SUBJECT = "__prediction__"
RESERVED_COLUMNS = frozenset({"score", "scores", "prediction", "label", "model", "model_version"})


@dataclass(frozen=True)
class Reference:
    """Binned reference distributions of one model version."""

    features: dict[str, FeatureReference]
    score: NumericReference | None = None
    prediction: CategoricalReference | None = None
    baseline_accuracy: float | None = None
    source: str = "window"
    window_start_ms: int | None = None
    rows: int = 0
    drift_subjects: dict[str, FeatureReference] = field(default_factory=dict)
    # Confidence -> P(correct) from the labeled rows with a score (streams/estimate.py); None
    # without them (a reference chosen from a window has no labels): no estimated accuracy.
    calibration: Calibration | None = None

    def __post_init__(self) -> None:
        subjects: dict[str, FeatureReference] = dict(self.features)
        if self.score is not None:
            subjects[SCORE_SUBJECT] = self.score
        if self.prediction is not None:
            subjects[PREDICTION_SUBJECT] = self.prediction
        object.__setattr__(self, "drift_subjects", subjects)


def without_features(ref: Reference, ignore: Iterable[str]) -> Reference:
    """The reference with these features left out (MONITOR_CONFIG's ignore_features): no PSI,
    no feature_drift row and no drift alert for them.

    >>> ref = build_reference([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}], bins=2)
    >>> sorted(without_features(ref, ["b"]).drift_subjects)
    ['a']
    """
    drop = set(ignore) & set(ref.features)
    if not drop:
        return ref
    return replace(ref, features={k: v for k, v in ref.features.items() if k not in drop})


def load_reference_files(paths: Iterable[str], *, bins: int) -> dict[str, ReferenceFile]:
    """Every reference file named (REFERENCE_PATH and MONITOR_CONFIG's), each read once, by path."""
    return {path: load_reference_file(path, bins=bins) for path in dict.fromkeys(paths) if path}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def feature_reference(values: list[Any], bins: int) -> FeatureReference | None:
    """Numeric when every non-null value is a number, else categorical; None when all null."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and v != v)]
    if not present:
        return None
    if all(_is_number(v) for v in present):
        return numeric_reference([float(v) for v in present], bins)
    return categorical_reference([canonical_class(v) for v in present])


def build_reference(
    rows: Iterable[Mapping[str, Any]],
    *,
    bins: int,
    source: str = "file",
    window_start_ms: int | None = None,
) -> Reference:
    """Bin every feature column, the score and the predicted class of the rows."""
    columns: dict[str, list[Any]] = {}
    scores: list[float] = []
    predictions: list[str] = []
    matches = 0
    confidences: list[float] = []
    corrects: list[bool] = []
    labeled = 0
    count = 0
    for row in rows:
        count += 1
        for name, value in row.items():
            if name not in RESERVED_COLUMNS:
                columns.setdefault(name, []).append(value)
        score, prediction, label = row.get("score"), row.get("prediction"), row.get("label")
        if _is_number(score):
            scores.append(float(score))
        if prediction is not None:
            predictions.append(canonical_class(prediction))
            if label is not None:
                labeled += 1
                matches += canonical_class(prediction) == canonical_class(label)
                confidence = confidence_of(score, row.get("scores"))
                if confidence is not None:
                    confidences.append(confidence)
                    corrects.append(canonical_class(prediction) == canonical_class(label))
    features = {}
    for name, values in columns.items():
        ref = feature_reference(values, bins)
        if ref is not None:
            features[name] = ref
    return Reference(
        features=features,
        score=numeric_reference(scores, bins) if scores else None,
        prediction=categorical_reference(predictions) if predictions else None,
        baseline_accuracy=matches / labeled if labeled else None,
        source=source,
        window_start_ms=window_start_ms,
        rows=count,
        calibration=fit_calibration(confidences, corrects),
    )


@dataclass(frozen=True)
class ReferenceFile:
    """References read from REFERENCE_PATH: one per (model, version), plus rows for every version."""

    by_version: dict[tuple[str, str], Reference]
    shared: Reference | None

    def for_version(self, model: str, model_version: str) -> Reference | None:
        return self.by_version.get((model, model_version), self.shared)


def load_reference_file(path: str | Path, *, bins: int) -> ReferenceFile:
    """Read a CSV/Parquet/JSONL reference (CSV cells typed by the contract's rule).

    ``model`` and ``model_version`` are text as written (``2026.10`` stays "2026.10",
    see :data:`streams.tabular.IDENTIFIER_COLUMNS`), so they match the replayed events'.
    """
    from streams.tabular import read_rows

    grouped: dict[tuple[str, str] | None, list[dict[str, Any]]] = {}
    for _, row in read_rows(Path(path)):
        model, version = row.get("model"), row.get("model_version")
        key = (str(model), str(version)) if model is not None and version is not None else None
        grouped.setdefault(key, []).append(row)
    if not grouped:
        raise ValueError(f"reference file {path} has no rows")
    shared_rows = grouped.pop(None, None)
    return ReferenceFile(
        by_version={k: build_reference(v, bins=bins) for k, v in grouped.items()},
        shared=build_reference(shared_rows, bins=bins) if shared_rows else None,
    )
