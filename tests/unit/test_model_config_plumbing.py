"""Per-model settings reach the version state and the decisions: SLO, looks, bands, reference, ignored features."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from streams.alert_rules import DriftEvidence
from streams.decisions import AlertDecisions
from streams.model_config import parse_model_config
from streams.outcome_stream import AccuracyLook
from streams.reference import load_reference_files
from streams.settings import Settings
from streams.versions import VersionRegistry

CONFIG = """
[models.fraud]
accuracy_threshold = 0.70
min_labeled = 20
psi_warn = 0.3
psi_alert = 0.5
reference_path = "ref.csv"
ignore_features = ["session"]
[models.fraud.versions.v2]
accuracy_threshold = 0.95
"""


def _registry(tmp_path: Path) -> VersionRegistry:
    (tmp_path / "ref.csv").write_text("amount,session,label,prediction\n1,a,1,1\n2,b,0,1\n3,c,1,1\n4,d,0,0\n")
    base = Settings()
    config = parse_model_config(CONFIG, path="monitor.toml", base=base.model_defaults(), base_dir=tmp_path)
    settings = replace(base, model_config=config)
    files = load_reference_files([settings.reference_path, *(c.reference_path for c in config.all_settings())],
                                 bins=2)
    return VersionRegistry(settings, files, lambda: [])


def test_each_version_resolves_its_settings_once(tmp_path: Path) -> None:
    versions = _registry(tmp_path)
    fraud, v2, other = (versions.get_or_create(*key) for key in (("fraud", "v1"), ("fraud", "v2"), ("churn", "v1")))
    assert (fraud.config.accuracy_threshold, v2.config.accuracy_threshold, other.config.accuracy_threshold) == (
        0.70, 0.95, 0.85)
    assert (fraud.stream.min_labeled, v2.stream.min_labeled, other.stream.min_labeled) == (20, 20, 50)
    assert versions.new_stream(fraud.config).min_labeled == 20  # recovery rebuilds the stream with it
    # The model's reference file, without the ignored feature; the baseline from its labels (3 of 4 right).
    assert fraud.reference is not None and sorted(fraud.reference.drift_subjects) == ["__prediction__", "amount"]
    assert fraud.baseline_accuracy == 0.75
    assert other.reference is None  # no REFERENCE_PATH: its first full window will be


def test_accuracy_decisions_use_the_versions_own_slo(tmp_path: Path) -> None:
    versions = _registry(tmp_path)
    decisions = AlertDecisions(versions.s)
    look = AccuracyLook(window_ms=0, labeled=100, correct=80, look=None, at_ms=3_600_000)  # final: 0.80
    by_version = {}
    for key in (("fraud", "v1"), ("fraud", "v2"), ("churn", "v1")):
        alerts, _ = decisions.on_stream_event(versions.get_or_create(*key), look, 3_600_000)
        by_version[key] = [(a.type, a.status, a.threshold) for a in alerts]
    assert by_version == {
        ("fraud", "v1"): [],  # 0.80 meets its own 0.70 (and is above the 0.75 baseline)
        ("fraud", "v2"): [("accuracy_below_threshold", "firing", 0.95)],
        ("churn", "v1"): [("accuracy_below_threshold", "firing", 0.85)],  # the environment's SLO
    }


def test_drift_decisions_use_the_versions_own_bands(tmp_path: Path) -> None:
    versions = _registry(tmp_path)
    decisions = AlertDecisions(versions.s)
    evidence = DriftEvidence(0.25, 1000, 1000, 500.0, 9, 1e-12, 1e-4, 0.001)  # PSI 0.25, certain
    out = {}
    for key in (("fraud", "v1"), ("churn", "v1")):
        state = versions.get_or_create(*key)
        state.last_drift[0] = {"amount": evidence}
        out[key] = [(a.status, a.severity, a.threshold) for a in decisions.on_closed_windows(state, [0], 0)]
    assert out == {("fraud", "v1"): [], ("churn", "v1"): [("firing", "critical", 0.1)]}
