"""examples/retrain_trigger.py: which alerts trigger retraining, dedupe by alert_id, the command's input."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "examples" / "retrain_trigger.py"
_spec = importlib.util.spec_from_file_location("retrain_trigger", _PATH)
trigger = importlib.util.module_from_spec(_spec)
sys.modules["retrain_trigger"] = trigger
_spec.loader.exec_module(trigger)

FIRING = {"alert_id": "3f1c", "status": "firing", "type": "accuracy_below_threshold", "severity": "critical",
          "model": "churn", "model_version": "v3", "recommended_action": "retrain"}


def test_a_new_firing_retrain_alert_triggers():
    assert trigger.decide(FIRING, set()) == trigger.Decision(True, "firing retrain alert 3f1c")


@pytest.mark.parametrize(("alert", "seen", "reason"), [
    (FIRING, {"3f1c"}, "duplicate of 3f1c"),
    ({**FIRING, "alert_id": "9e0a", "status": "resolved"}, set(), "resolved alert 9e0a"),
    ({**FIRING, "recommended_action": "investigate"}, set(), "investigate alert 3f1c"),
    ({**FIRING, "recommended_action": None}, set(), "None alert 3f1c"),
    ({k: v for k, v in FIRING.items() if k != "alert_id"}, set(), "not an alert event"),
    ({**FIRING, "alert_id": ""}, set(), "not an alert event"),
    ({**FIRING, "alert_id": 7}, set(), "not an alert event"),
    (None, set(), "not an alert event"),
    ([FIRING], set(), "not an alert event"),
])
def test_everything_else_is_skipped_with_a_reason(alert, seen, reason):
    assert trigger.decide(alert, seen) == trigger.Decision(False, reason)


def test_parse_alert():
    assert trigger.parse_alert(json.dumps(FIRING).encode()) == FIRING
    assert trigger.parse_alert(b"\xff not json") is None
    assert trigger.parse_alert(None) is None


def test_redelivered_alert_runs_once():
    """At-least-once delivery: the same alert twice (monitor crash, or consumer crash before commit)."""
    seen = trigger.SeenIds()
    ran = []
    for alert in (FIRING, {**FIRING, "status": "resolved", "alert_id": "9e0a"}, FIRING, FIRING):
        if trigger.decide(alert, seen).retrain:
            ran.append(alert["alert_id"])
            seen.add(alert["alert_id"])
    assert ran == ["3f1c"]


def test_seen_ids_survive_a_restart_through_the_file(tmp_path):
    path = tmp_path / "state" / "seen.txt"
    first = trigger.SeenIds(str(path))
    first.add("3f1c")
    first.add("77aa")
    again = trigger.SeenIds(str(path))
    assert "3f1c" in again and "77aa" in again and "other" not in again
    assert not trigger.decide(FIRING, again).retrain


def test_seen_ids_in_memory_are_bounded():
    seen = trigger.SeenIds(limit=3)
    for alert_id in "abcd":
        seen.add(alert_id)
    assert [x in seen for x in "abcd"] == [False, True, True, True]


def test_the_command_gets_the_alert_on_stdin_and_in_its_environment(tmp_path):
    out = tmp_path / "out.json"
    script = ("import json, os, sys; json.dump({'stdin': json.load(sys.stdin), 'env': [os.environ[k] for k in "
              "('ALERT_ID', 'ALERT_MODEL', 'ALERT_MODEL_VERSION', 'ALERT_TYPE')]}, open(sys.argv[1], 'w'))")
    raw = json.dumps(FIRING).encode()
    command = f"{sys.executable} -c \"{script}\" {out}"
    assert trigger.run_command(command, FIRING, raw) == 0
    assert json.loads(out.read_text()) == {"stdin": FIRING,
                                           "env": ["3f1c", "churn", "v3", "accuracy_below_threshold"]}
    assert trigger.run_command(f"{sys.executable} -c 'raise SystemExit(3)'", FIRING, raw) == 3
