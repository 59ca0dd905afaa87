"""Estimated accuracy of windows, from the store: the refresh's part of :mod:`streams.estimate`.

Every touched window of a version whose reference has a calibration gets its estimate
from the stored predictions' confidences (one query for every version), and the number of
its labels that came before the window ended in event time: what the estimate alert may
look at when the window closes, the same in every run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from sinks.clickhouse import ClickHouseStore
from streams import figures
from streams.estimate import Calibration, SegmentSums, WindowEstimate, estimate_from_sums
from streams.versions import VersionState


def estimates_from_rows(calibrations: Mapping[figures.Version, Calibration], segment_rows: Iterable[Sequence[Any]],
                        labeled_rows: Iterable[Sequence[Any]]) -> dict[figures.Version, dict[int, WindowEstimate]]:
    """Estimates per version and window from the rows of the two queries of :mod:`streams.figures`.

    >>> import numpy as np
    >>> cal = Calibration(np.array([0.6, 0.8]), np.array([0.6, 0.9]), np.array([100, 100]))
    >>> out = estimates_from_rows({("m", "v"): cal}, [("m", "v", 0, 1, 2, Decimal("1.4"), Decimal("0.98"))],
    ...                           [("m", "v", 0, 1)])
    >>> round(out[("m", "v")][0].estimate.accuracy, 6), out[("m", "v")][0].labeled_by_end
    (0.75, 1)
    """
    sums: dict[figures.Version, dict[int, dict[int, SegmentSums]]] = {}
    for model, version, w, segment, n, total, total_sq in segment_rows:
        sums.setdefault((model, version), {}).setdefault(int(w), {})[int(segment)] = SegmentSums(
            int(n), float(Decimal(total)), float(Decimal(total_sq)))
    labeled = {(model, version, int(w)): int(n) for model, version, w, n in labeled_rows}
    out: dict[figures.Version, dict[int, WindowEstimate]] = {}
    for key, per_window in sums.items():
        calibration = calibrations.get(key)
        if calibration is None:
            continue
        for w, segments in per_window.items():
            e = estimate_from_sums(calibration, segments)
            if e is not None:
                out.setdefault(key, {})[w] = WindowEstimate(e, labeled.get((*key, w), 0))
    return out


async def window_estimates(store: ClickHouseStore, targets: list[tuple[VersionState, list[int]]],
                           window_seconds: int) -> dict[figures.Version, dict[int, WindowEstimate]]:
    """The estimates of these windows (versions without a calibration have none)."""
    calibrations = {(s.model, s.version): s.reference.calibration for s, _ in targets
                    if s.reference is not None and s.reference.calibration is not None}
    if not calibrations:
        return {}
    groups = {(s.model, s.version): windows for s, windows in targets if (s.model, s.version) in calibrations}
    segment_sql = figures.confidence_segments_sql(store.database, groups,
                                                  {k: c.knots for k, c in calibrations.items()})
    labeled_sql = figures.labeled_by_window_end_sql(store.database, groups, window_seconds)
    segment_rows = await store.query(segment_sql) if segment_sql else []
    labeled_rows = await store.query(labeled_sql) if labeled_sql else []
    return estimates_from_rows(calibrations, segment_rows, labeled_rows)


def estimate_columns(estimated: WindowEstimate | None, accuracy: float | None) -> list[float | None]:
    """window_metrics' estimated_accuracy, its 95% interval and the estimation error (realized
    minus estimated, once labels give the realized accuracy); NULLs without an estimate."""
    if estimated is None:
        return [None, None, None, None]
    e = estimated.estimate
    return [e.accuracy, e.low, e.high, e.error(accuracy)]
