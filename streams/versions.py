"""What the worker keeps per model version, and what a refresh computes for one.

One :class:`VersionState` per (model, model_version): its clocks, windows, reference and
baseline, the event-time outcome stream (ADWIN, accuracy looks) and the last figures the
alert rules read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from river import metrics, utils

from streams.alert_rules import DriftEvidence
from streams.estimate import WindowEstimate
from streams.model_config import ModelSettings
from streams.outcome_stream import OutcomeStream
from streams.progress import Source
from streams.reference import Reference, ReferenceFile, without_features
from streams.settings import Settings
from streams.watermark import Watermark


def seconds(ms: int | None) -> float | None:
    """Epoch milliseconds as epoch seconds, the form the store writes into DateTime64 columns."""
    return None if ms is None else ms / 1000


@dataclass
class VersionState:
    """Everything the monitor keeps per (model, model_version)."""

    model: str
    version: str
    stream: OutcomeStream  # outcomes in event time: ADWIN and the accuracy looks (alert-deciding worker)
    rolling: utils.Rolling
    event_time: Watermark
    watermark_ms: int = 0
    evaluated_watermark: int = -1
    classes: set[str] = field(default_factory=set)
    reference: Reference | None = None
    baseline_accuracy: float | None = None
    baseline_window_ms: int | None = None
    windows: set[int] = field(default_factory=set)
    closed: set[int] = field(default_factory=set)
    final: set[int] = field(default_factory=set)
    dirty: set[int] = field(default_factory=set)
    last_psi: dict[int, dict[str, float]] = field(default_factory=dict)
    last_drift: dict[int, dict[str, DriftEvidence]] = field(default_factory=dict)
    drift_clean: dict[str, int] = field(default_factory=dict)  # subject -> closed windows without drift in a row
    last_figures: dict[int, tuple[int, int, float | None]] = field(default_factory=dict)
    refreshed_watermark_ms: int = 0  # the watermark of the last rows written
    last_estimate: dict[int, WindowEstimate] = field(default_factory=dict)  # estimated accuracy per window
    config: ModelSettings = field(default_factory=ModelSettings)  # MONITOR_CONFIG, resolved when first seen
    config_stored: bool = False  # its model_settings row written by this worker
    last_labels: dict[int, tuple[float | None, float | None]] = field(default_factory=dict)  # w -> coverage, p90 s

    @property
    def binary(self) -> bool:
        return len(self.classes) <= 2

    def rolling_accuracy(self) -> float | None:
        return self.rolling.get() if self.rolling.window else None  # type: ignore[attr-defined]


@dataclass(frozen=True)
class VersionRefresh:
    """What a refresh computes for one model version, decided at one point of the input."""

    state: VersionState
    windows: frozenset[int]  # touched since the last refresh
    newly_closed: list[int]
    watermark_ms: int
    binary: bool
    rolling_accuracy: float | None


class VersionRegistry(dict[tuple[str, str], VersionState]):
    """The worker's model versions by (model, model_version), each created on first sight with
    its outcome stream, rolling accuracy, clocks (one per input partition it may hear from) and,
    when its reference file (REFERENCE_PATH, or its own in MONITOR_CONFIG) has one, its reference
    and baseline. Its per-model settings are resolved once, here, and kept in ``state.config``."""

    def __init__(self, settings: Settings, reference_files: Mapping[str, ReferenceFile],
                 sources: Callable[[], Iterable[Source]]) -> None:
        super().__init__()
        self.s = settings
        self.reference_files = reference_files  # by path: REFERENCE_PATH and MONITOR_CONFIG's
        self.sources = sources  # the partitions this worker reads now

    def new_stream(self, config: ModelSettings | None = None) -> OutcomeStream:
        min_labeled = config.min_labeled if config is not None else self.s.min_labeled
        return OutcomeStream(self.s.adwin_delta, self.s.window_seconds, self.s.label_grace_seconds, min_labeled)

    def get_or_create(self, model: str, version: str) -> VersionState:
        key = (model, version)
        state = self.get(key)
        if state is None:
            config = self.s.for_model(model, version)
            state = VersionState(
                model, version,
                stream=self.new_stream(config),
                rolling=utils.Rolling(metrics.Accuracy, window_size=self.s.rolling_size),
                event_time=Watermark(),
                config=config,
            )
            now = time.monotonic()
            for source in self.sources():
                state.event_time.register(source, now)
            reference_file = self.reference_files.get(config.reference_path)
            if reference_file is not None:
                ref = reference_file.for_version(model, version)
                if ref is not None:
                    state.reference = without_features(ref, config.ignore_features)
                    state.baseline_accuracy = ref.baseline_accuracy
            self[key] = state
        return state
