"""The figures stage: window_metrics and feature_drift rows of touched windows, from the store.

Every figure is recomputed from the deduplicated facts (``... FINAL``), every touched
window of every model version in a handful of queries (see :mod:`streams.figures` for the
SQL), so a message read twice counts once. Drift rows carry PSI and the chi-square test of
the window's size (:mod:`streams.stats`) that the drift rules read.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import orjson

from sinks.clickhouse import ClickHouseStore
from streams import alert_rules as rules
from streams import figures
from streams.alert_rules import DriftEvidence
from streams.metrics import classification_figures
from streams.psi import psi, psi_band
from streams.reference import Reference, build_reference, without_features
from streams.settings import Settings
from streams.stats import homogeneity_test, per_test_level
from streams.versions import VersionRefresh, VersionState, seconds
from streams.window_estimates import estimate_columns, window_estimates
from streams.windows import window_end_ms

log = logging.getLogger(__name__)


class WindowFigures:
    def __init__(self, settings: Settings, store: ClickHouseStore) -> None:
        self.s = settings
        self.store = store
        self.db = store.database

    async def ensure_reference(self, state: VersionState) -> bool:
        """Without a reference file: the first closed window with >= MIN_LABELED predictions.
        True when it was chosen now."""
        if state.reference is not None or not state.closed:
            return False
        rows = await self.store.query(figures.predictions_per_window_sql(self.db, state.model, state.version))
        chosen = next((int(w) for w, n in rows if int(n) >= state.config.min_labeled and int(w) in state.closed), None)
        if chosen is None:
            return False
        raw = await self.store.query(figures.window_rows_sql(self.db, state.model, state.version, chosen))
        reference_rows = ({**orjson.loads(f), "score": s, "prediction": p} for f, s, p in raw)
        state.reference = without_features(build_reference(reference_rows, bins=self.s.psi_bins, source="window",
                                                           window_start_ms=chosen), state.config.ignore_features)
        await self.save_reference(state)
        log.info("Reference of %s %s: window %s (%d predictions)", state.model, state.version,
                 rules.iso_ms(chosen), state.reference.rows)
        return True

    async def save_reference(self, state: VersionState) -> None:
        await self.store.insert("references", [self.reference_row(state)])

    @staticmethod
    def reference_row(state: VersionState) -> list[Any]:
        ref = state.reference
        return [state.model, state.version, ref.source if ref else "none",
                seconds(ref.window_start_ms) if ref else None, state.baseline_accuracy,
                seconds(state.baseline_window_ms), time.time()]

    async def counts(self, groups: figures.Groups,
                     labels: dict[figures.Version, str]) -> dict[figures.Version, dict[int, figures.WindowCounts]]:
        """Counts per window; ``labels``: each version's positive label (MONITOR_CONFIG)."""
        if not groups:
            return {}
        pred = await self.store.query(figures.prediction_counts_sql(self.db, groups, self.s.positive_label, labels))
        conf = await self.store.query(figures.confusion_sql(self.db, groups))
        return figures.window_counts(pred, conf)

    async def compute(self, targets: list[tuple[VersionRefresh, list[int]]]) -> tuple[list[list[Any]], list[list[Any]]]:
        """window_metrics and feature_drift rows of these windows, every version in the same few
        queries (a query costs the engine about the same for one version as for all)."""
        # Stamped before reading: of two workers' rows for a window, the newer one read the
        # facts later, so the row that wins in window_metrics FINAL is never the staler one.
        now = time.time()
        groups = {(v.state.model, v.state.version): windows for v, windows in targets}
        counts = await self.counts(groups, {(v.state.model, v.state.version): v.state.config.positive_label
                                            for v, _ in targets})
        estimates = await window_estimates(self.store, [(v.state, windows) for v, windows in targets],
                                           self.s.window_seconds)
        delays = figures.label_delays(await self.store.query(figures.label_delay_sql(self.db, groups))
                                      if groups else [])
        metrics_rows = []
        for v, windows in targets:
            state = v.state
            per_window = counts.get((state.model, state.version), {})
            delay = delays.get((state.model, state.version), {})
            for w in windows:
                c = per_window.get(w, figures.WindowCounts())
                fig = classification_figures(c.confusion, state.config.positive_label, binary=v.binary)
                state.last_figures[w] = (fig.labeled, fig.correct, fig.accuracy)
                estimated = estimates.get((state.model, state.version), {}).get(w)
                if estimated is not None:
                    state.last_estimate[w] = estimated
                state.last_labels[w] = (fig.labeled / c.predictions if c.predictions else None,
                                        delay.get(w, (None, None))[1])
                metrics_rows.append([
                    state.model, state.version, seconds(w), seconds(window_end_ms(w, self.s.window_seconds)),
                    c.predictions, fig.labeled, fig.correct, fig.accuracy, fig.precision, fig.recall, fig.f1,
                    c.positives / c.predictions if c.predictions else None,
                    float(c.confidence_sum / c.confidence_n) if c.confidence_n else None,
                    v.rolling_accuracy, fig.labeled / c.predictions if c.predictions else None,
                    int(w in state.final), now, c.late_labels,
                    *estimate_columns(estimated, fig.accuracy), *delay.get(w, (None, None)),
                ])
        drift_rows = await self.drift_rows([(v.state, windows) for v, windows in targets], now)
        return metrics_rows, drift_rows

    async def drift_rows(self, targets: list[tuple[VersionState, list[int]]], now: float) -> list[list[Any]]:
        """PSI rows of these windows against each version's reference (versions without one have none)."""
        refs: dict[figures.Version, Reference] = {(s.model, s.version): s.reference for s, _ in targets
                                                   if s.reference is not None}
        if not refs:
            return []
        groups = {(s.model, s.version): windows for s, windows in targets if (s.model, s.version) in refs}
        subjects = {version: ref.drift_subjects for version, ref in refs.items()}
        scores = {version: ref.score.edges for version, ref in refs.items() if ref.score is not None}
        predicted = {version: groups[version] for version, ref in refs.items() if ref.prediction is not None}
        numeric_rows: list[tuple] = []
        categorical_rows: list[tuple] = []
        numbers_rows: list[tuple] = []
        for sql, out in ((figures.numeric_bins_sql(self.db, groups, subjects), numeric_rows),
                         (figures.score_bins_sql(self.db, groups, scores), numeric_rows),
                         (figures.categorical_values_sql(self.db, groups, subjects), categorical_rows),
                         (figures.categorical_numbers_sql(self.db, groups, subjects), numbers_rows),
                         (figures.predicted_class_sql(self.db, predicted), categorical_rows)):
            if sql:
                out += await self.store.query(sql)
        categorical_rows += figures.categorical_number_rows(numbers_rows)
        numeric, categorical = figures.by_version(numeric_rows), figures.by_version(categorical_rows)
        rows = []
        for state, windows in targets:
            version = (state.model, state.version)
            ref = refs.get(version)
            if ref is None:
                continue
            counts = figures.bin_counts(ref.drift_subjects, numeric.get(version, []), categorical.get(version, []))
            for w in windows:
                per_subject = counts.get(w, {})
                tested = [subject for subject in ref.drift_subjects if per_subject.get(subject) is not None
                          and per_subject[subject].sum() > 0]
                level = per_test_level(self.s.drift_false_alarm_rate, len(tested))
                state.last_psi[w], state.last_drift[w] = {}, {}
                for subject, sref in ref.drift_subjects.items():
                    bins = per_subject.get(subject)
                    n = int(bins.sum()) if bins is not None else 0
                    value = psi(sref.shares, bins) if bins is not None else None
                    band = psi_band(value, state.config.psi_warn, state.config.psi_alert)
                    evidence = None
                    if value is not None:
                        state.last_psi[w][subject] = value
                        test = homogeneity_test(np.rint(sref.shares * sref.n), bins)
                        evidence = DriftEvidence(value, n, sref.n, test.statistic, test.dof, test.p_value, level,
                                                 self.s.drift_false_alarm_rate)
                        state.last_drift[w][subject] = evidence
                    drifted = evidence is not None and value >= state.config.psi_warn and evidence.significant()
                    rows.append([
                        state.model, state.version, seconds(w), seconds(window_end_ms(w, self.s.window_seconds)),
                        subject, sref.kind, value, n, int(drifted), band, ref.source, now,
                        evidence.test if evidence else "", evidence.statistic if evidence else None,
                        evidence.dof if evidence else 0, evidence.p_value if evidence else None,
                    ])
        return rows
