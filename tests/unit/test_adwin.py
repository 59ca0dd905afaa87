import numpy as np
from river import drift


def test_adwin_silent_on_200k_stable_outcomes():
    rng = np.random.default_rng(2026)
    errors = rng.random(200_000) < 0.08
    detector = drift.ADWIN(delta=0.002)
    detections = 0
    for wrong in errors:
        detector.update(1.0 if wrong else 0.0)
        detections += detector.drift_detected
    assert detections == 0


def test_adwin_detects_a_rise_of_the_error_rate():
    rng = np.random.default_rng(1)
    detector = drift.ADWIN(delta=0.002)
    stream = np.concatenate([rng.random(5_000) < 0.04, rng.random(5_000) < 0.12])
    first = None
    for i, wrong in enumerate(stream):
        detector.update(1.0 if wrong else 0.0)
        if detector.drift_detected and first is None:
            first = i
    assert first is not None and 5_000 <= first < 6_500
