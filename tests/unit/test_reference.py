import pytest

from streams.reference import (
    PREDICTION_SUBJECT,
    SCORE_SUBJECT,
    build_reference,
    load_reference_file,
)


def test_kinds_follow_the_values_and_bools_are_categories():
    ref = build_reference([{"age": 30, "premium": True, "plan": None, "n": 1.5},
                           {"age": 40, "premium": False, "plan": None, "n": 2}], bins=4)
    assert ref.features["age"].kind == "numeric"
    assert ref.features["premium"].kind == "categorical"
    assert ref.features["premium"].categories == ("0", "1")
    assert ref.features["n"].kind == "numeric"
    assert "plan" not in ref.features  # all null: nothing to compare with
    assert ref.score is None and ref.prediction is None and ref.baseline_accuracy is None


def test_score_prediction_and_baseline_accuracy():
    rows = [{"x": i, "score": i / 10, "prediction": i % 2, "label": 1} for i in range(10)]
    ref = build_reference(rows, bins=5)
    assert set(ref.drift_subjects) == {"x", SCORE_SUBJECT, PREDICTION_SUBJECT}
    assert ref.baseline_accuracy == 0.5
    assert ref.prediction.categories == ("0", "1")


def test_reference_file_per_version_and_shared(tmp_path):
    path = tmp_path / "ref.csv"
    path.write_text("model,model_version,age,label,prediction\n"
                    "m,v1,30,1,1\nm,v1,32,0,1\n"
                    ",,50,1,1\n,,52,1,1\n,,54,1,0\n")
    refs = load_reference_file(path, bins=2)
    assert refs.for_version("m", "v1").rows == 2
    assert refs.for_version("m", "v1").baseline_accuracy == 0.5
    shared = refs.for_version("other", "v9")
    assert shared.rows == 3 and shared.baseline_accuracy == pytest.approx(2 / 3)
    assert "model" not in shared.features and "label" not in shared.features


def test_empty_reference_file_is_an_error(tmp_path):
    path = tmp_path / "ref.csv"
    path.write_text("age,label\n")
    with pytest.raises(ValueError, match="has no rows"):
        load_reference_file(path, bins=2)


@pytest.mark.parametrize(("suffix", "text"), [
    (".csv", "model,model_version,age\nm,2026.10,30\nm,2026.10,32\nm,2026.1,90\nm,3,50\n"),
    (".jsonl", '{"model": "m", "model_version": "2026.10", "age": 30}\n{"model": "m", "model_version": "2026.10", "age": 32}\n'
               '{"model": "m", "model_version": 2026.10, "age": 90}\n{"model": "m", "model_version": 3, "age": 50}\n'),
], ids=["csv", "jsonl"])
def test_reference_versions_are_matched_by_their_exact_text(tmp_path, suffix, text):
    path = tmp_path / f"ref{suffix}"
    path.write_text(text)
    refs = load_reference_file(path, bins=2)
    assert sorted(refs.by_version) == [("m", "2026.1"), ("m", "2026.10"), ("m", "3")]
    assert refs.for_version("m", "2026.10").rows == 2
    assert refs.for_version("m", "2026.1").rows == 1 and refs.for_version("m", "3").rows == 1
