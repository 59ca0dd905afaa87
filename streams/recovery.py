"""Rebuild a monitor's memory from the facts in ClickHouse after a start, a crash or a rebalance.

Facts are written before their Kafka offsets are committed, so the store holds at least
everything that was acknowledged: the partitions' clocks and processed offsets, the
pending halves of the join, the model versions' windows, references, alert states and
event-time outcome streams all come back from it.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import orjson

from streams import figures
from streams.alert_rules import Alert, AlertBook, iso_ms
from streams.facts import label_row, prediction_row
from streams.outcome_stream import TimedOutcome
from streams.records import GroundTruth, Prediction
from streams.reference import build_reference, without_features
from streams.windows import is_closed, is_final

if TYPE_CHECKING:
    from streams.monitor import Monitor

log = logging.getLogger(__name__)


class Recovery:
    """Rebuild a monitor's memory from the facts in ClickHouse after a start or a crash.

    Facts are written before their Kafka offsets are committed, so the store holds
    at least everything that was acknowledged. ``run`` restores what is about the
    model versions (windows, references, ADWIN / rolling accuracy replayed in join
    order, alert states); ``partitions`` what is about the partitions this worker
    reads (their clocks, the offsets already processed - replayed messages up to them
    are skipped - and the pending halves of the join), at start and after a rebalance.
    """

    def __init__(self, monitor: Monitor) -> None:
        self.m = monitor
        self.db = monitor.db

    async def run(self) -> None:
        m, db = self.m, self.db
        [(facts,)] = await m.store.query(f"SELECT (SELECT count() FROM `{db}`.predictions) + "
                                         f"(SELECT count() FROM `{db}`.labels)")
        if not facts:
            return
        await self._versions()
        await self.evaluations()
        log.info("Recovered state: %d model versions, %d alerts", len(m.versions), len(m.book.firing))

    async def partitions(self, sources: set[tuple[str, int]]) -> None:
        """Clocks, processed offsets and pending halves of these partitions."""
        m, db = self.m, self.db
        if not sources:
            return
        seeded: list[int] = []
        # Only rows written in input order count (kafka_offset >= 0): the halves written from
        # stored outcomes after a crash (offset -1) can be ahead of unjoined halves of their
        # batch that were never stored, which must be read again before windows close.
        for table, column, topic in (("predictions", "predicted_at", m.s.topic_predictions),
                                     ("labels", "labeled_at", m.s.topic_ground_truth)):
            mine = self._mine(sources, topic)
            rows = await m.store.query(f"SELECT kafka_partition, max(toUnixTimestamp64Milli({column})), "
                                       f"max(kafka_offset) FROM `{db}`.{table} WHERE {mine} AND kafka_offset >= 0 "
                                       "GROUP BY kafka_partition")
            for partition, ts, offset in rows:
                m.event_time.seed((topic, int(partition)), int(ts))
                m.resume_after[(topic, int(partition))] = int(offset)
                seeded.append(int(ts))
        for table, column, topic, written in (("predictions", "predicted_at", m.s.topic_predictions, "kafka_offset >= 0"),
                                              ("outcomes", "labeled_at", m.s.topic_ground_truth, "1")):
            rows = await m.store.query(
                f"SELECT model, model_version, kafka_partition, max(toUnixTimestamp64Milli({column})) "
                f"FROM `{db}`.{table} WHERE {self._mine(sources, topic)} AND {written} "
                "GROUP BY model, model_version, kafka_partition")
            for model, version, partition, ts in rows:
                m.version(model, version).event_time.seed((topic, int(partition)), int(ts))
        await self._complete_halves(sources)
        if seeded:
            await self._pending(sources, horizon=min(seeded) - m.join.ttl_ms)
        if m.evaluates_alerts and m._evaluation_adopted:
            # Outcomes the previous reader of these partitions joined and this worker's streams have
            # not released yet (those of partitions read elsewhere come from the store at refreshes).
            for state in m.versions.values():
                where = (f"{figures._version_filter(state.model, state.version)} AND "
                         f"{self._mine(sources, m.s.topic_predictions)}")
                for outcome in await self._stream_outcomes(where):
                    state.stream.add(outcome)
        log.info("Recovered %d partitions: %d pending predictions, %d pending labels in all", len(sources),
                 len(m.join.pending_predictions), len(m.join.pending_labels))

    @staticmethod
    def _mine(sources: set[tuple[str, int]], topic: str) -> str:
        partitions = sorted(p for t, p in sources if t == topic)
        return f"kafka_partition IN ({', '.join(map(str, partitions))})" if partitions else "0"

    async def _complete_halves(self, sources: set[tuple[str, int]]) -> None:
        """Write the halves of stored outcomes that a crash kept from being written.

        A batch's outcomes are written before its halves (a half's row marks its offset as
        done). Killed in between, the halves are read again, and each is taken for a
        duplicate of a request already joined: write them now from the outcome."""
        m, db = self.m, self.db
        now = time.time()
        rows = await m.store.query(
            "SELECT request_id, model, model_version, toUnixTimestamp64Milli(predicted_at), prediction, score, "
            f"confidence, latency_ms, features, kafka_partition FROM `{db}`.outcomes FINAL "
            f"WHERE {self._mine(sources, m.s.topic_predictions)} "
            f"AND request_id NOT IN (SELECT request_id FROM `{db}`.predictions)")
        predictions = [prediction_row(
            Prediction(rid, model, version, int(ts), pred, score, conf, None, orjson.loads(feats), latency),
            int(partition), -1, now, m.s.window_seconds)
            for rid, model, version, ts, pred, score, conf, latency, feats, partition in rows]
        rows = await m.store.query(
            "SELECT request_id, label, toUnixTimestamp64Milli(labeled_at), model, model_version, kafka_partition "
            f"FROM `{db}`.outcomes FINAL WHERE {self._mine(sources, m.s.topic_ground_truth)} "
            f"AND request_id NOT IN (SELECT request_id FROM `{db}`.labels)")
        labels = [label_row(GroundTruth(rid, label, int(ts), model, version), int(partition), -1, now)
                  for rid, label, ts, model, version, partition in rows]
        await m.store.insert("predictions", predictions)
        await m.store.insert("labels", labels)
        if predictions or labels:
            log.info("Wrote %d predictions and %d labels of outcomes stored before a crash", len(predictions),
                     len(labels))

    async def _pending(self, sources: set[tuple[str, int]], horizon: int) -> None:
        m, db = self.m, self.db
        rows = await m.store.query(
            "SELECT request_id, model, model_version, toUnixTimestamp64Milli(predicted_at), prediction, score, "
            f"confidence, latency_ms, features FROM `{db}`.predictions FINAL "
            f"WHERE {self._mine(sources, m.s.topic_predictions)} "
            f"AND predicted_at >= fromUnixTimestamp64Milli(toInt64({horizon}), 'UTC') "
            f"AND request_id NOT IN (SELECT request_id FROM `{db}`.outcomes)")
        for rid, model, version, ts, pred, score, conf, latency, feats in rows:
            m.join.restore_prediction(Prediction(rid, model, version, int(ts), pred, score, conf, None,
                                                 orjson.loads(feats), latency))
        rows = await m.store.query(
            "SELECT request_id, label, toUnixTimestamp64Milli(labeled_at), model, model_version "
            f"FROM `{db}`.labels FINAL WHERE {self._mine(sources, m.s.topic_ground_truth)} "
            f"AND labeled_at >= fromUnixTimestamp64Milli(toInt64({horizon}), 'UTC') "
            f"AND request_id NOT IN (SELECT request_id FROM `{db}`.outcomes)")
        for rid, label, ts, model, version in rows:
            m.join.restore_label(GroundTruth(rid, label, int(ts), model, version))

    async def _versions(self) -> None:
        m, db = self.m, self.db
        rows = await m.store.query(
            f"SELECT model, model_version, groupUniqArray(toUnixTimestamp64Milli(window_start)), "
            f"groupUniqArray(prediction) FROM `{db}`.predictions GROUP BY model, model_version")
        for model, version, windows, classes in rows:
            state = m.version(model, version)
            state.windows.update(int(w) for w in windows)
            state.classes.update(classes)
        rows = await m.store.query(
            f"SELECT model, model_version, groupUniqArray(label) FROM `{db}`.outcomes GROUP BY model, model_version")
        for model, version, labels in rows:
            m.version(model, version).classes.update(labels)
        await self._references()
        await self._learners()

    async def evaluations(self) -> None:
        """How far the app's alert evaluation got (checkpoints) and the alert states it left:
        windows evaluated before keep their decisions, later ones are evaluated anew."""
        m, db = self.m, self.db
        rows = await m.store.query(
            "SELECT model, model_version, max(evaluated_watermark) FROM "
            f"`{db}`.checkpoints FINAL WHERE app_id = {figures.quote(m.s.app_id)} GROUP BY model, model_version")
        evaluated = {(model, version): int(w) for model, version, w in rows}
        for state in m.versions.values():
            done = max(evaluated.get((state.model, state.version), -1), 0)
            state.watermark_ms = state.evaluated_watermark = done
            state.closed = {w for w in state.windows if is_closed(w, done, m.s.window_seconds)}
            state.final = {w for w in state.windows if is_final(w, done, m.s.window_seconds, m.s.label_grace_seconds)}
            # Final windows' rows too, where a crash between a batch's facts and the next refresh can
            # have left them behind a late label (its message is not read again): a label joins only a
            # prediction within JOIN_TTL_SECONDS of the join watermark, which had passed ``done``. Older
            # final windows are left alone, so a restart does not recompute the whole history.
            recent_from = done - (m.s.join_ttl_seconds + m.s.window_seconds) * 1000
            state.dirty.update(w for w in state.windows if w not in state.final or w >= recent_from)
            state.drift_clean = {}
        m.book = AlertBook()
        await self._alerts()
        await self._drift_streaks(evaluated)
        if m.evaluates_alerts:
            await self.streams()

    async def _drift_streaks(self, evaluated: dict[tuple[str, str], int]) -> None:
        """Closed windows without drift in a row, per subject, as of the last evaluation."""
        m, db = self.m, self.db
        ends = {(state.model, state.version): evaluated.get((state.model, state.version), -1)
                for state in m.versions.values()}
        rows = await m.store.query(
            "SELECT model, model_version, feature, toUnixTimestamp64Milli(window_end), drifted "
            f"FROM `{db}`.feature_drift FINAL WHERE psi IS NOT NULL ORDER BY window_start")
        for model, version, subject, end, drifted in rows:
            state = m.versions.get((model, version))
            if state is None or int(end) > ends.get((model, version), -1):
                continue  # not closed when the evaluation stopped: decided again
            state.drift_clean[subject] = 0 if drifted else state.drift_clean.get(subject, 0) + 1

    async def _references(self) -> None:
        m, db = self.m, self.db
        rows = await m.store.query(
            "SELECT model, model_version, source, toUnixTimestamp64Milli(window_start), baseline_accuracy, "
            f"toUnixTimestamp64Milli(baseline_window_start) FROM `{db}`.references FINAL")
        for model, version, source, window, baseline, baseline_window in rows:
            state = m.version(model, version)
            if source == "window" and window is not None and state.reference is None:
                raw = await m.store.query(figures.window_rows_sql(db, model, version, int(window)))
                state.reference = without_features(build_reference(
                    ({**orjson.loads(f), "score": s, "prediction": p} for f, s, p in raw),
                    bins=m.s.psi_bins, source="window", window_start_ms=int(window)), state.config.ignore_features)
            if baseline is not None and state.baseline_accuracy is None:
                state.baseline_accuracy = float(baseline)
                state.baseline_window_ms = int(baseline_window) if baseline_window is not None else None

    async def _learners(self) -> None:
        """The rolling accuracy (join order) and the requests already joined."""
        m, db = self.m, self.db
        for state in m.versions.values():
            rows = await m.store.query(
                f"SELECT request_id, prediction, label FROM `{db}`.outcomes "
                f"WHERE {figures._version_filter(state.model, state.version)} ORDER BY joined_at, request_id")
            seen: set[str] = set()
            for rid, pred, label in rows:
                if rid in seen:
                    continue
                seen.add(rid)
                state.rolling.update(label, pred)
                m.join._remember_joined(rid)

    async def streams(self) -> None:
        """Each version's event-time outcome stream as the alert-deciding worker left it: ADWIN and
        the open windows' counts fed again, in order, with the outcomes released before its checkpoint
        (their alerts were sent); the later ones wait again for the watermark."""
        m, db = self.m, self.db
        rows = await m.store.query(
            "SELECT model, model_version, max(released_ms) FROM "
            f"`{db}`.stream_checkpoints FINAL WHERE app_id = {figures.quote(m.s.app_id)} GROUP BY model, model_version")
        released = {(model, version): int(ms) for model, version, ms in rows}
        for state in m.versions.values():
            state.stream = m.versions.new_stream(state.config)
            done = released.get((state.model, state.version), 0)
            before: list[TimedOutcome] = []
            for outcome in await self._stream_outcomes(f"{figures._version_filter(state.model, state.version)}"):
                if outcome.join_ms < done:
                    before.append(outcome)
                else:
                    state.stream.add(outcome)
            state.stream.restore(before, done)

    async def _stream_outcomes(self, where: str) -> list[TimedOutcome]:
        """Stored outcomes that the event-time stream takes (not those joined behind its watermark)."""
        rows = await self.m.store.query(
            "SELECT greatest(toUnixTimestamp64Milli(predicted_at), toUnixTimestamp64Milli(labeled_at)), request_id, "
            f"toUnixTimestamp64Milli(window_start), correct FROM `{self.db}`.outcomes FINAL "
            f"WHERE {where} AND behind_watermark = 0")
        return [TimedOutcome(int(j), rid, int(w), bool(correct)) for j, rid, w, correct in rows]

    async def _alerts(self) -> None:
        """The alert book as it was: which conditions fire, and the window of each one's last
        change (a decision about an older window must not change it after a restart either)."""
        m = self.m
        rows = await m.store.query(
            "SELECT alert_id, status, type, severity, model, model_version, subject, "
            "toUnixTimestamp64Milli(window_start) FROM "
            f"`{self.db}`.alerts FINAL ORDER BY detected_at, window_start, status = 'firing'")
        for alert_id_, status, type_, severity, model, version, subject, window_ms in rows:
            window = None if window_ms is None else iso_ms(int(window_ms))
            m.book.restore(Alert(alert_id_, status, type_, severity, model, version, subject, window, None, None,
                                 None, None, "", "", "", {}))
