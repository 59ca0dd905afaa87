"""MONITOR_CONFIG: precedence of the levels and one clear line for every bad file."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.model_config import (
    ModelConfigError,
    ModelSettings,
    load_model_config,
    parse_model_config,
)
from streams.settings import SettingsError, load_settings

ENV = ModelSettings(accuracy_threshold=0.8, degradation_threshold=0.04, min_labeled=30, psi_warn=0.12,
                    psi_alert=0.3, positive_label="1", reference_path="", ignore_features=frozenset())

FULL = """
[defaults]
accuracy_threshold = 0.85
[models.fraud-detector]
accuracy_threshold = 0.90
degradation_threshold = 0.03
min_labeled = 100
psi_warn = 0.1
psi_alert = 0.25
positive_label = "fraud"
reference_path = "refs/fraud.csv"
ignore_features = ["session_id"]
[models.fraud-detector.versions."v2"]
accuracy_threshold = 0.92
[models.churn]
positive_label = true
"""


def _parse(text: str, tmp_path: Path) -> object:
    return parse_model_config(text, path="monitor.toml", base=ENV, base_dir=tmp_path)


def _error(text: str, tmp_path: Path) -> str:
    with pytest.raises(ModelConfigError) as err:
        _parse(text, tmp_path)
    return str(err.value)


@pytest.fixture
def refs(tmp_path: Path) -> Path:
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "fraud.csv").write_text("age,label,prediction\n1,0,0\n")
    return tmp_path


def test_precedence_version_over_model_over_defaults_over_environment(refs: Path) -> None:
    cfg = _parse(FULL, refs)
    ref = str(refs / "refs" / "fraud.csv")
    model = ModelSettings(0.90, 0.03, 100, 0.1, 0.25, "fraud", ref, frozenset({"session_id"}))
    assert cfg.settings_for("fraud-detector", "v1") == model
    assert cfg.settings_for("fraud-detector", "v2") == ModelSettings(0.92, 0.03, 100, 0.1, 0.25, "fraud", ref,
                                                                     frozenset({"session_id"}))
    # Unknown models get [defaults] over the environment.
    assert cfg.settings_for("other", "v1") == ModelSettings(0.85, 0.04, 30, 0.12, 0.3, "1", "", frozenset())
    assert cfg.settings_for("churn", "v9").positive_label == "1"  # true in canonical form


def test_empty_file_keeps_the_environment(tmp_path: Path) -> None:
    assert _parse("", tmp_path).settings_for("any", "v") == ENV


def test_settings_without_a_file_use_the_environment() -> None:
    s = load_settings({"ACCURACY_THRESHOLD": "0.7", "MIN_LABELED": "20"})
    assert s.model_config is None
    assert s.for_model("m", "v") == ModelSettings(0.7, 0.05, 20, 0.1, 0.2, "1", "", frozenset())


def test_load_settings_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "monitor.toml"
    path.write_text("[models.a]\naccuracy_threshold = 0.6\n")
    s = load_settings({"MONITOR_CONFIG": str(path), "ACCURACY_THRESHOLD": "0.9"})
    assert s.for_model("a", "v1").accuracy_threshold == 0.6
    assert s.for_model("b", "v1").accuracy_threshold == 0.9


@pytest.mark.parametrize(("text", "line"), [
    ("[models.a]\nslo = 0.9",
     "MONITOR_CONFIG=monitor.toml: models.a.slo=0.9 is not valid: unknown key, expected one of accuracy_threshold, "
     "degradation_threshold, min_labeled, psi_warn, psi_alert, positive_label, reference_path, ignore_features, "
     "versions"),
    ("[defaults]\naccuracy_threshold = 1.5",
     "MONITOR_CONFIG=monitor.toml: defaults.accuracy_threshold=1.5 is not valid: expected a number in [0, 1]"),
    ("[models.a]\naccuracy_threshold = \"high\"",
     "MONITOR_CONFIG=monitor.toml: models.a.accuracy_threshold='high' is not valid: expected a number in [0, 1]"),
    ("[models.a]\nmin_labeled = 2.5",
     "MONITOR_CONFIG=monitor.toml: models.a.min_labeled=2.5 is not valid: expected an integer between 1 and "
     "1000000000"),
    ("[models.a]\nmin_labeled = true",
     "MONITOR_CONFIG=monitor.toml: models.a.min_labeled=true is not valid: expected an integer between 1 and "
     "1000000000"),
    ("[models.a]\ndegradation_threshold = 0",
     "MONITOR_CONFIG=monitor.toml: models.a.degradation_threshold=0 is not valid: expected a number in (0, 1]"),
    ("[models.fraud-detector]\npsi_alert = 0.05",
     "MONITOR_CONFIG=monitor.toml: models.fraud-detector.psi_alert=0.05 is not valid: expected a number >= "
     "psi_warn (0.12)"),
    ("[models.a]\npsi_warn = 0.5\npsi_alert = 0.4",
     "MONITOR_CONFIG=monitor.toml: models.a.psi_warn=0.5 is not valid: expected a number <= psi_alert (0.4)"),
    ("[models.a.versions.v2]\npsi_warn = 0.31",
     "MONITOR_CONFIG=monitor.toml: models.a.versions.v2.psi_warn=0.31 is not valid: expected a number <= "
     "psi_alert (0.3)"),
    ('[models."x.y".versions."1.0"]\nmin_labeled = 0',
     'MONITOR_CONFIG=monitor.toml: models."x.y".versions."1.0".min_labeled=0 is not valid: expected an integer '
     "between 1 and 1000000000"),
    ("[models.a]\nignore_features = \"session_id\"",
     "MONITOR_CONFIG=monitor.toml: models.a.ignore_features='session_id' is not valid: expected a list of feature "
     "names (strings)"),
    ("[models.a]\npositive_label = \"\"",
     "MONITOR_CONFIG=monitor.toml: models.a.positive_label='' is not valid: expected a class label: a non-empty "
     "string, an integer or a boolean"),
    ("[models.a]\nreference_path = \"ref.txt\"",
     "MONITOR_CONFIG=monitor.toml: models.a.reference_path='ref.txt' is not valid: expected a .csv, .parquet or "
     ".jsonl file"),
    ("[model.a]\nmin_labeled = 5",
     "MONITOR_CONFIG=monitor.toml: model={...} is not valid: unknown key, expected [defaults] or [models.<model>]"),
    ("models = 3",
     "MONITOR_CONFIG=monitor.toml: models=3 is not valid: expected a table"),
    ("[models.a]\nversions = [1]",
     "MONITOR_CONFIG=monitor.toml: models.a.versions=[1] is not valid: expected a table"),
    ("[models.a\nmin_labeled = 5",
     "MONITOR_CONFIG=monitor.toml is not valid TOML: Expected ']' at the end of a table declaration "
     "(at line 1, column 10)"),
])
def test_bad_file_is_one_line(tmp_path: Path, text: str, line: str) -> None:
    assert _error(text, tmp_path) == line


def test_missing_reference_file_names_where_it_was_looked_for(tmp_path: Path) -> None:
    line = _error("[models.a]\nreference_path = \"refs/none.csv\"", tmp_path)
    assert line == ("MONITOR_CONFIG=monitor.toml: models.a.reference_path='refs/none.csv' is not valid: expected an "
                    f"existing file (relative paths are read beside the config file: {tmp_path / 'refs/none.csv'})")


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError) as err:
        load_model_config(str(tmp_path), ENV)  # a directory
    assert str(err.value) == f"MONITOR_CONFIG={tmp_path} is not valid: expected a readable TOML file (Is a directory)"
    bad = tmp_path / "latin.toml"
    bad.write_bytes(b"[models.caf\xe9]\n")
    with pytest.raises(ModelConfigError) as err:
        load_model_config(str(bad), ENV)
    assert str(err.value) == f"MONITOR_CONFIG={bad} is not valid TOML: expected UTF-8 text"
    with pytest.raises(SettingsError) as err:
        load_settings({"MONITOR_CONFIG": str(tmp_path / "absent.toml")})
    assert str(err.value) == f"MONITOR_CONFIG='{tmp_path / 'absent.toml'}' is not valid: expected an existing file"
    with pytest.raises(SettingsError) as err:
        load_settings({"MONITOR_CONFIG": "monitor.yaml"})
    assert str(err.value) == "MONITOR_CONFIG='monitor.yaml' is not valid: expected a .toml file"


def test_relative_reference_is_read_beside_the_file(refs: Path) -> None:
    path = refs / "monitor.toml"
    path.write_text('[models.a]\nreference_path = "refs/fraud.csv"\n')
    assert load_model_config(str(path), ENV).settings_for("a", "v").reference_path == str(refs / "refs" / "fraud.csv")
