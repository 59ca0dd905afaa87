"""One self-contained HTML report of the monitor's figures: `python -m sinks.report --out report.html`.

Per model version: accuracy per window against ACCURACY_THRESHOLD with the alerts
marked, a PSI heatmap (features x windows), PSI per feature over time inside the
PSI_WARN / PSI_ALERT bands, the label-delay distribution and the table of alerts.
The data comes through the same path as `python -m sinks.query` (a server directly,
else the running worker's /query endpoint, else the embedded store read-only).
Figures are matplotlib SVG inlined into one jinja2 template: no JavaScript and no
external asset, so the file can be mailed or archived as it is.

Everything between the queries and the file is a pure function of plain rows,
so each figure and the alerts table can be checked without a store.
"""

from __future__ import annotations

import argparse
import io
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from sinks.clickhouse import parse_target
from sinks.query import QueryError, run_query
from streams.settings import Settings, SettingsError, load_settings

PREDICTION_DRIFT = ("__score__", "__prediction__")
ACCURACY_SUBJECTS = ("accuracy", "error_rate", "estimated_accuracy")
COLORS = {"accuracy": "#2563eb", "threshold": "#dc2626", "critical": "#dc2626",
          "warning": "#f59e0b", "resolved": "#16a34a", "none": "#dcfce7", "small": "#fef3c7", "drift": "#fee2e2",
          "estimate": "#9333ea"}
PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#db2777", "#65a30d",
           "#4f46e5", "#b45309")
NICE_WIDTHS_MS = tuple(s * 1000 for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
                                           10800, 21600, 43200, 86400, 172800, 604800))
MARKER_ORDER = ("alert critical firing", "alert warning firing", "alert resolved")
UNITS_MS = (("s", 1000), ("min", 60_000), ("h", 3_600_000), ("d", 86_400_000))


class ReportError(Exception):
    """The report could not be built; the message is one line for the user."""


# --- the data, as plain values -----------------------------------------------------------------

@dataclass(frozen=True)
class Window:
    start_ms: int
    predictions: int
    labeled: int
    correct: int
    accuracy: float | None
    final: bool
    # Accuracy foretold by the scores before labels, and its 95% interval (streams/estimate.py).
    estimated: float | None = None
    estimated_low: float | None = None
    estimated_high: float | None = None


@dataclass(frozen=True)
class Drift:
    start_ms: int
    feature: str
    psi: float | None
    band: str


@dataclass(frozen=True)
class Alert:
    window_start_ms: int | None
    detected_ms: int
    status: str
    severity: str
    type: str
    subject: str
    value: float | None
    message: str


@dataclass(frozen=True)
class Delays:
    """Label delay (labeled_at - predicted_at) of one version: summary and histogram buckets.

    ``buckets`` maps bucket b to the count of delays in [b * width_ms, (b + 1) * width_ms);
    the bucket ``overflow`` (when not None) holds every delay from ``overflow * width_ms`` on."""

    count: int
    median_ms: float
    p90_ms: float
    width_ms: int
    buckets: dict[int, int]
    overflow: int | None = None


@dataclass(frozen=True)
class VersionComparison:
    """One window of this version (the candidate) against an older one (version_comparison)."""

    start_ms: int
    baseline: str
    baseline_n: int
    baseline_accuracy: float
    candidate_n: int
    candidate_accuracy: float
    diff: float
    diff_low: float
    diff_high: float
    p_value: float
    worse: bool


@dataclass
class VersionData:
    model: str
    version: str
    windows: list[Window] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    delays: Delays | None = None
    comparisons: list[VersionComparison] = field(default_factory=list)


@dataclass(frozen=True)
class Limits:
    accuracy_threshold: float
    psi_warn: float
    psi_alert: float


def version_limits(settings: Settings, model: str, version: str) -> Limits:
    """A version's own SLO and PSI bands: MONITOR_CONFIG's, else the environment's.

    >>> version_limits(Settings(accuracy_threshold=0.9), "m", "v1")
    Limits(accuracy_threshold=0.9, psi_warn=0.1, psi_alert=0.2)
    """
    own = settings.for_model(model, version)
    return Limits(own.accuracy_threshold, own.psi_warn, own.psi_alert)


# --- small pure helpers ------------------------------------------------------------------------

def sql_string(value: str) -> str:
    """A ClickHouse string literal: the /query endpoint takes plain SQL, so no bound parameters.

    >>> sql_string("it's \\\\ x")
    "'it\\\\'s \\\\\\\\ x'"
    """
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def where_clause(model: str | None, version: str | None) -> str:
    """The filter of every query: optional model and model version.

    >>> where_clause("churn", None)
    "WHERE model = 'churn'"
    >>> where_clause(None, None)
    ''
    """
    parts = [f"{name} = {sql_string(value)}" for name, value in (("model", model), ("model_version", version))
             if value is not None]
    return "WHERE " + " AND ".join(parts) if parts else ""


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def format_time(ms: int | None) -> str:
    """Minutes are the finest unit of a window start; UTC, as stored.

    >>> format_time(1767589200000)
    '2026-01-05 05:00'
    >>> format_time(None)
    '-'
    """
    return "-" if ms is None else utc(ms).strftime("%Y-%m-%d %H:%M")


def format_value(value: float | None) -> str:
    """Accuracy, error rate and PSI alike: three decimals.

    >>> format_value(0.0955931), format_value(None)
    ('0.096', '-')
    """
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def nice_width(span_ms: float, target_bins: int = 60) -> int:
    """The smallest round bin width (1 s, 2 s, 5 s, ... 1 d, 7 d) giving at most `target_bins` bins,
    so that bars start on round durations a person can read off the axis.

    >>> nice_width(725 * 60_000) // 60_000
    15
    >>> nice_width(0)
    1000
    """
    for width in NICE_WIDTHS_MS:
        if span_ms / width <= target_bins:
            return width
    return NICE_WIDTHS_MS[-1] * math.ceil(span_ms / NICE_WIDTHS_MS[-1] / target_bins)


def histogram_plan(lo_ms: float, hi_ms: float, p99_ms: float, target_bins: int = 60) -> tuple[int, int | None]:
    """(bin width, overflow bucket or None). A tail far beyond the 99th percentile (a few labels
    that took days) would squash the histogram into one bar: then bins cover up to p99 and one
    last bar holds the rest.

    >>> histogram_plan(-300_000, 43_200_000, 18_000_000)
    (900000, None)
    >>> histogram_plan(0, 604_800_000, 3_600_000)
    (60000, 61)
    """
    top = hi_ms
    overflow = None
    if hi_ms - lo_ms > 4 * max(p99_ms - lo_ms, 1):
        top = p99_ms
    width = nice_width(max(top - min(lo_ms, 0), 0), target_bins)
    if top < hi_ms:
        overflow = math.floor(top / width) + 1
    return width, overflow


def duration_unit(span_ms: float) -> tuple[str, int]:
    """The unit to read a delay axis in: seconds under 3 min, minutes under 3 h, hours under 3 d.

    >>> duration_unit(12 * 3_600_000)
    ('h', 3600000)
    """
    for (name, ms), (_, next_ms) in zip(UNITS_MS, UNITS_MS[1:], strict=False):
        if span_ms < 3 * next_ms:
            return name, ms
    return UNITS_MS[-1]


def feature_order(features: Sequence[str]) -> list[str]:
    """Input features alphabetically, then prediction drift (`__score__`, `__prediction__`).

    >>> feature_order(["__prediction__", "income", "__score__", "age"])
    ['age', 'income', '__score__', '__prediction__']
    """
    plain = sorted(f for f in set(features) if f not in PREDICTION_DRIFT)
    return plain + [f for f in PREDICTION_DRIFT if f in set(features)]


def condition_changes(alerts: Sequence[Alert]) -> list[Alert]:
    """The alerts that really started or ended their condition, in the order they were decided:
    a `resolved` only after a `firing` of the same (type, subject), no second `firing` without a
    `resolved` between. The worker sends nothing else; a store written by an older version may
    hold orphan resolves, and a marker must not claim a change that never happened.

    >>> up = Alert(0, 1, "firing", "warning", "error_rate_drift", "error_rate", 0.2, "")
    >>> down = Alert(3_600_000, 2, "resolved", "warning", "error_rate_drift", "error_rate", 0.1, "")
    >>> orphan = Alert(0, 0, "resolved", "warning", "error_rate_drift", "error_rate", 0.1, "")
    >>> [a.detected_ms for a in condition_changes([down, orphan, up])]
    [1, 2]
    """
    firing: set[tuple[str, str]] = set()
    out = []
    for alert in sorted(alerts, key=lambda a: a.detected_ms):
        key = (alert.type, alert.subject)
        if (alert.status == "firing") != (key in firing):
            firing.symmetric_difference_update({key})
            out.append(alert)
    return out


def accuracy_markers(alerts: Sequence[Alert], windows: Sequence[Window]) -> list[tuple[Alert, float]]:
    """Accuracy and ADWIN error-rate alerts placed on the accuracy line: at their window's accuracy,
    else at the accuracy they report (1 - error rate for ADWIN); estimated-accuracy alerts at the
    estimate they report. Alerts without a window are left out.

    >>> a = Alert(3_600_000, 0, "firing", "warning", "error_rate_drift", "error_rate", 0.25, "")
    >>> [y for _, y in accuracy_markers([a], [])], [y for _, y in accuracy_markers([a], [Window(3_600_000, 10, 10, 9, 0.9, True)])]
    ([0.75], [0.9])
    """
    by_window = {w.start_ms: w.accuracy for w in windows if w.accuracy is not None}
    placed = []
    for alert in alerts:
        if alert.subject not in ACCURACY_SUBJECTS or alert.window_start_ms is None:
            continue
        # an estimate alert sits on the estimate it reports: the labels came later
        y = alert.value if alert.subject == "estimated_accuracy" else by_window.get(alert.window_start_ms)
        if y is None and alert.value is not None:
            y = 1.0 - alert.value if alert.subject == "error_rate" else alert.value
        if y is not None:
            placed.append((alert, y))
    return placed


def drift_markers(alerts: Sequence[Alert]) -> list[tuple[Alert, float]]:
    """Feature and prediction drift alerts at their window and PSI (the value they report)."""
    return [(a, a.value) for a in alerts
            if a.subject not in ACCURACY_SUBJECTS and a.window_start_ms is not None and a.value is not None]


# --- figures: data -> SVG text -----------------------------------------------------------------

def _rc() -> dict[str, Any]:
    return {"svg.fonttype": "none", "svg.hashsalt": "model-monitor-report", "text.parse_math": False,
            "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"], "font.size": 9,
            "axes.spines.top": False, "axes.spines.right": False, "axes.edgecolor": "#94a3b8",
            "axes.grid": True, "grid.color": "#e2e8f0", "grid.linewidth": 0.6, "axes.axisbelow": True,
            "xtick.color": "#475569", "ytick.color": "#475569", "axes.labelcolor": "#334155",
            "axes.titlesize": 10, "axes.titleweight": "bold", "axes.titlelocation": "left",
            "legend.frameon": False, "legend.fontsize": 8}


def _svg(fig: Any) -> str:
    """The figure as an inline <svg> element: no XML prolog, DOCTYPE or metadata block."""
    out = io.StringIO()
    fig.savefig(out, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = out.getvalue()
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text[text.index("<svg"):], flags=re.S)
    return text.strip()


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _date_axis(ax: Any) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=4, maxticks=12, tz=UTC)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))


def _marker_style(alert: Alert) -> tuple[str, str, str]:
    """(marker, color, legend label): ▼ firing, ● resolved; red critical, amber warning, green resolved."""
    if alert.status == "resolved":
        return "o", COLORS["resolved"], "alert resolved"
    tone = "critical" if alert.severity == "critical" else "warning"
    return "v", COLORS[tone], f"alert {tone} firing"


def _alert_markers(ax: Any, placed: Sequence[tuple[Alert, float]]) -> list[Any]:
    """One marker per alert, SVG id `alert-marker-<n>`; returns one legend handle per style used.
    Several alerts of one window stand side by side, 9 points apart, instead of hiding each other."""
    from matplotlib.lines import Line2D
    from matplotlib.transforms import offset_copy

    styles: dict[str, tuple[str, str]] = {}
    seen: dict[int, int] = {}
    for n, (alert, y) in enumerate(placed):
        marker, color, label = _marker_style(alert)
        styles[label] = (marker, color)
        assert alert.window_start_ms is not None
        k = seen[alert.window_start_ms] = seen.get(alert.window_start_ms, -1) + 1
        shift = offset_copy(ax.transData, fig=ax.figure, x=9 * k, units="points")
        (point,) = ax.plot([utc(alert.window_start_ms)], [y], linestyle="none", marker=marker, markersize=10,
                           markerfacecolor=color, markeredgecolor="white", markeredgewidth=1.2, zorder=5,
                           transform=shift)
        point.set_gid(f"alert-marker-{n}")
    return [Line2D([], [], linestyle="none", marker=m, markersize=8, markerfacecolor=c, markeredgecolor="white",
                   label=label) for label, (m, c) in sorted(styles.items(), key=lambda s: MARKER_ORDER.index(s[0]))]


def accuracy_figure(windows: Sequence[Window], alerts: Sequence[Alert], threshold: float) -> str:
    """Accuracy per window (hollow dots: not final yet), the ACCURACY_THRESHOLD line and a marker per
    accuracy or error-rate alert. SVG ids: `series-accuracy`, `series-open-windows` (when any window is
    not final), `threshold`, `alert-marker-<n>`."""
    import matplotlib

    with matplotlib.rc_context(_rc()):
        fig = _figure(10.5, 3.4)
        ax = fig.add_subplot()
        xs = [utc(w.start_ms) for w in windows]
        acc = [math.nan if w.accuracy is None else w.accuracy for w in windows]
        (line,) = ax.plot(xs, acc, color=COLORS["accuracy"], linewidth=1.8, marker="o", markersize=4,
                          label="accuracy per window")
        line.set_gid("series-accuracy")
        unsettled = [(x, w.accuracy) for x, w in zip(xs, windows, strict=True) if not w.final and w.accuracy is not None]
        if unsettled:
            (hollow,) = ax.plot([x for x, _ in unsettled], [y for _, y in unsettled], linestyle="none", marker="o",
                                markersize=6, markerfacecolor="white", markeredgecolor=COLORS["accuracy"],
                                label="not final yet (labels may still arrive)")
            hollow.set_gid("series-open-windows")
        ax.axhline(threshold, color=COLORS["threshold"], linewidth=1.2, linestyle=(0, (4, 3)),
                   label=f"ACCURACY_THRESHOLD {threshold:g}").set_gid("threshold")
        estimated = _estimate_series(ax, xs, windows)
        placed = accuracy_markers(condition_changes(alerts), windows)
        marker_handles = _alert_markers(ax, placed)
        values = [v for v in acc + estimated if not math.isnan(v)] + [threshold] + [y for _, y in placed]
        low, high = min(values), max(values)
        pad = max((high - low) * 0.12, 0.01)
        ax.set_ylim(max(0.0, low - pad), min(1.0, high + pad) if high <= 1 else high + pad)
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
        ax.set_ylabel("accuracy")
        ax.set_title("Accuracy per window (UTC)")
        _date_axis(ax)
        handles, _ = ax.get_legend_handles_labels()
        ax.legend(handles=handles + marker_handles, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        return _svg(fig)


def _estimate_series(ax: Any, xs: Sequence[datetime], windows: Sequence[Window]) -> list[float]:
    """The estimated accuracy beside the realized one, its 95% interval as a band (SVG ids
    `series-estimated-accuracy`, `estimate-interval`); nothing without estimates. Returns the
    values drawn, for the axis limits."""
    if all(w.estimated is None for w in windows):
        return []
    est = [math.nan if w.estimated is None else w.estimated for w in windows]
    low = [math.nan if w.estimated_low is None else w.estimated_low for w in windows]
    high = [math.nan if w.estimated_high is None else w.estimated_high for w in windows]
    band = ax.fill_between(xs, low, high, color=COLORS["estimate"], alpha=0.15, linewidth=0,
                           label="estimate: 95% interval")
    band.set_gid("estimate-interval")
    (line,) = ax.plot(xs, est, color=COLORS["estimate"], linewidth=1.4, linestyle=(0, (2, 2)), marker="s",
                      markersize=3, label="estimated from scores (before labels)")
    line.set_gid("series-estimated-accuracy")
    return est + low + high


def psi_matrix(drift: Sequence[Drift]) -> tuple[list[str], list[int], list[list[float]]]:
    """(features, window starts, PSI[feature][window]) with NaN where a window has no value.

    >>> psi_matrix([Drift(0, "b", 0.5, "drift"), Drift(1, "a", None, "none")])
    (['a', 'b'], [0, 1], [[nan, nan], [0.5, nan]])
    """
    features = feature_order([d.feature for d in drift])
    starts = sorted({d.start_ms for d in drift})
    row = {f: i for i, f in enumerate(features)}
    col = {s: j for j, s in enumerate(starts)}
    matrix = [[math.nan] * len(starts) for _ in features]
    for d in drift:
        if d.psi is not None:
            matrix[row[d.feature]][col[d.start_ms]] = d.psi
    return features, starts, matrix


def psi_heatmap(drift: Sequence[Drift], warn: float, alert: float) -> str:
    """Features (rows) x windows (columns), colored by PSI with PSI_WARN and PSI_ALERT marked on the
    color bar; values written in the cells while they stay legible. Ids `psi-heatmap`, `psi-cell-<n>`."""
    import matplotlib
    import numpy as np
    from matplotlib.colors import LinearSegmentedColormap, Normalize

    features, starts, matrix = psi_matrix(drift)
    data = np.ma.masked_invalid(np.array(matrix, dtype=float))
    top = max(alert * 2, float(data.max()) if data.count() else 0.0, 0.01)
    with matplotlib.rc_context(_rc() | {"axes.grid": False}):
        fig = _figure(10.5, 1.2 + 0.28 * len(features))
        ax = fig.add_subplot()
        cmap = LinearSegmentedColormap.from_list(
            "psi", [(0, "#f8fafc"), (warn / top, "#fde68a"), (alert / top, "#f97316"), (1, "#991b1b")]
        ).with_extremes(bad="#e2e8f0")
        image = ax.imshow(data, cmap=cmap, norm=Normalize(0, top), aspect="auto", interpolation="nearest")
        image.set_gid("psi-heatmap")
        ax.set_yticks(range(len(features)), labels=features)
        step = max(1, math.ceil(len(starts) / 24))
        ax.set_xticks(range(0, len(starts), step), labels=window_labels(starts[::step]), rotation=60, ha="right",
                      rotation_mode="anchor")
        ax.tick_params(length=0)
        if len(starts) <= 36:
            cell = 0
            for i, values in enumerate(matrix):
                for j, v in enumerate(values):
                    if math.isnan(v):
                        continue
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6.5,
                            color="white" if v >= alert * 1.3 else "#1e293b",
                            fontweight="bold" if v >= alert else "normal").set_gid(f"psi-cell-{cell}")
                    cell += 1
        bar = fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01)
        bar.set_ticks([0, warn, alert, top], labels=["0", f"PSI_WARN {warn:g}", f"PSI_ALERT {alert:g}", f"{top:.2g}"])
        bar.ax.tick_params(labelsize=7)
        for level in (warn, alert):
            bar.ax.axhline(level, color="#0f172a", linewidth=1)
        ax.set_title("PSI per feature and window (UTC) against the reference")
        return _svg(fig)


def psi_lines_figure(drift: Sequence[Drift], alerts: Sequence[Alert], warn: float, alert: float) -> str:
    """PSI of every feature over time inside the bands (none < PSI_WARN <= small < PSI_ALERT <= drift).
    Features that ever reach PSI_WARN get a color and a legend entry, the others thin grey lines.
    Ids: `series-psi-<n>` per feature, `band-none|small|drift`, `alert-marker-<n>` per drift alert."""
    import matplotlib
    from matplotlib.lines import Line2D

    features, starts, matrix = psi_matrix(drift)
    xs = [utc(s) for s in starts]
    peak = max((v for row in matrix for v in row if not math.isnan(v)), default=0.0)
    top = max(alert * 1.5, peak * 1.1, 0.01)
    with matplotlib.rc_context(_rc()):
        fig = _figure(10.5, 3.6)
        ax = fig.add_subplot()
        for name, low, high in (("none", 0, warn), ("small", warn, alert), ("drift", alert, top)):
            ax.axhspan(low, high, color=COLORS[name], linewidth=0, zorder=0).set_gid(f"band-{name}")
        handles = []
        colored = 0
        quiet = False
        for n, (feature, values) in enumerate(zip(features, matrix, strict=True)):
            loud = any(v >= warn for v in values if not math.isnan(v))
            if loud:
                color = PALETTE[colored % len(PALETTE)]
                colored += 1
                style = "--" if feature in PREDICTION_DRIFT else "-"
                (line,) = ax.plot(xs, values, color=color, linewidth=1.8, linestyle=style, marker="o",
                                  markersize=3, label=feature, zorder=3)
                handles.append(line)
            else:
                (line,) = ax.plot(xs, values, color="#94a3b8", linewidth=0.9, alpha=0.8, zorder=2)
                quiet = True
            line.set_gid(f"series-psi-{n}")
        if quiet:
            handles.append(Line2D([], [], color="#94a3b8", linewidth=0.9, label="other features (< PSI_WARN)"))
        marker_handles = _alert_markers(ax, drift_markers(condition_changes(alerts)))
        ax.set_ylim(0, top)
        if len(xs) > 1:
            ax.set_xlim(xs[0], xs[-1])
        ax.text(1.0, warn, f" PSI_WARN {warn:g}", transform=ax.get_yaxis_transform(), va="center", fontsize=7,
                color="#92400e")
        ax.text(1.0, alert, f" PSI_ALERT {alert:g}", transform=ax.get_yaxis_transform(), va="center",
                fontsize=7, color="#991b1b")
        ax.set_ylabel("PSI")
        ax.set_title("Drift per feature over time (UTC)")
        _date_axis(ax)
        ax.legend(handles=handles + marker_handles, loc="upper left", bbox_to_anchor=(1.08, 1.0))
        return _svg(fig)


def delay_figure(delays: Delays) -> str:
    """Histogram of labeled_at - predicted_at (negative: the label came first) with the median and
    90th percentile marked; the overflow bar, when there is one, is hatched. Ids `delay-bar-<n>`."""
    import matplotlib

    buckets = sorted(delays.buckets.items())
    span = max(abs(b) + 1 for b, _ in buckets) * delays.width_ms if buckets else delays.width_ms
    unit, unit_ms = duration_unit(span)
    width = delays.width_ms / unit_ms
    with matplotlib.rc_context(_rc()):
        fig = _figure(10.5, 3.0)
        ax = fig.add_subplot()
        for n, (bucket, count) in enumerate(buckets):
            overflow = delays.overflow is not None and bucket >= delays.overflow
            bars = ax.bar(bucket * width, count, width=width, align="edge", color="#93c5fd" if overflow else "#3b82f6",
                          edgecolor="white", linewidth=0.4, hatch="//" if overflow else None)
            bars.patches[0].set_gid(f"delay-bar-{n}")
            if overflow:
                ax.annotate(f"≥ {human_duration(bucket * delays.width_ms)}", (bucket * width + width / 2, count), ha="center",
                            va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
        for q, value, style in (("median", delays.median_ms, "-"), ("90th percentile", delays.p90_ms, "--")):
            ax.axvline(value / unit_ms, color="#0f172a", linewidth=1, linestyle=style,
                       label=f"{q} {human_duration(value)}")
        ax.set_xlabel(f"label delay (labeled_at - predicted_at), {unit}")
        ax.set_ylabel("outcomes")
        ax.set_title(f"Label delay of {delays.count:,} joined outcomes ({format_duration(delays.width_ms)} bins)")
        ax.legend(loc="upper right")
        return _svg(fig)


def human_duration(ms: float) -> str:
    """A delay in the unit that reads best, three significant digits.

    >>> human_duration(1_794_000), human_duration(6_516_000), human_duration(-120_000)
    ('29.9 min', '1.81 h', '-2 min')
    """
    unit, unit_ms = next(((n, u) for n, u in reversed(UNITS_MS) if abs(ms) >= u), UNITS_MS[0])
    return f"{ms / unit_ms:.3g} {unit}"


def window_labels(starts: Sequence[int]) -> list[str]:
    """Heatmap column labels: the hour, with the date where the day changes (and on the first).

    >>> window_labels([82_800_000, 86_400_000, 90_000_000])
    ['Jan 01 23:00', 'Jan 02 00:00', '01:00']
    """
    labels, day = [], None
    for ms in starts:
        moment = utc(ms)
        labels.append(moment.strftime("%H:%M") if moment.date() == day else moment.strftime("%b %d %H:%M"))
        day = moment.date()
    return labels


def format_duration(ms: float) -> str:
    """A bin width in its natural unit.

    >>> format_duration(900_000), format_duration(7_200_000), format_duration(1000)
    ('15 min', '2 h', '1 s')
    """
    for name, unit_ms in reversed(UNITS_MS):
        if ms >= unit_ms and ms % unit_ms == 0:
            return f"{ms // unit_ms:g} {name}"
    return f"{ms:g} ms"


# --- the alerts table ---------------------------------------------------------------------------

ALERT_COLUMNS = ("time", "status", "severity", "type", "subject", "value", "message")


def alert_cells(alert: Alert) -> dict[str, str]:
    """One row of the alerts table as text: the window's start as its time (detected_at when the
    alert has no window), the value with three decimals. Escaping is the template's job."""
    time = format_time(alert.window_start_ms if alert.window_start_ms is not None else alert.detected_ms)
    return {"time": time, "status": alert.status, "severity": alert.severity, "type": alert.type,
            "subject": alert.subject, "value": format_value(alert.value), "message": alert.message}


def alert_tone(alert: Alert) -> str:
    """The row's color: green once resolved, else red for critical and amber for anything else.

    >>> alert_tone(Alert(None, 0, "firing", "critical", "accuracy_drop", "accuracy", 0.8, ""))
    'critical'
    """
    if alert.status == "resolved":
        return "resolved"
    return "critical" if alert.severity == "critical" else "warning"


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("sinks", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def alerts_table_html(alerts: Sequence[Alert]) -> str:
    """The alerts of one version as an HTML table, every database text escaped."""
    macro = _environment().get_template("alerts.html").module.alerts_table  # type: ignore[attr-defined]
    rows = [alert_cells(a) | {"detected": format_time(a.detected_ms), "tone": alert_tone(a)} for a in alerts]
    return str(macro(rows, ALERT_COLUMNS))


# --- the page ----------------------------------------------------------------------------------

def summary(data: VersionData) -> dict[str, str]:
    """The headline numbers of one version, already formatted."""
    predictions = sum(w.predictions for w in data.windows)
    labeled = sum(w.labeled for w in data.windows)
    correct = sum(w.correct for w in data.windows)
    judged = [w for w in data.windows if w.accuracy is not None]
    worst = min(judged, key=lambda w: w.accuracy or 0.0, default=None)
    return {
        "windows": f"{len(data.windows)} ({sum(w.final for w in data.windows)} final)",
        "predictions": f"{predictions:,}",
        "labeled": f"{labeled:,} ({labeled / predictions:.1%})" if predictions else "0",
        "accuracy": f"{correct / labeled:.1%}" if labeled else "-",
        "worst": (f"{worst.accuracy:.1%} at {format_time(worst.start_ms)}" if worst and worst.accuracy is not None
                  else "-"),
        "alerts": f"{sum(a.status != 'resolved' for a in data.alerts)} firing, "
                  f"{sum(a.status == 'resolved' for a in data.alerts)} resolved",
    }


def render_report(versions: Sequence[VersionData], limits: Limits, source: str, generated: datetime,
                  own_limits: Mapping[tuple[str, str], Limits] | None = None) -> str:
    """The whole HTML document; ``own_limits``: versions with their own SLO and PSI bands (MONITOR_CONFIG)."""
    sections = []
    for n, data in enumerate(versions):
        version_limits = (own_limits or {}).get((data.model, data.version), limits)
        sections.append({
            "limits": version_limits,
            "anchor": f"version-{n + 1}",
            "model": data.model,
            "version": data.version,
            "summary": summary(data),
            "accuracy": Markup(accuracy_figure(data.windows, data.alerts, version_limits.accuracy_threshold))
            if data.windows else None,
            "heatmap": Markup(psi_heatmap(data.drift, version_limits.psi_warn, version_limits.psi_alert))
            if data.drift else None,
            "psi_lines": Markup(psi_lines_figure(data.drift, data.alerts, version_limits.psi_warn,
                                                 version_limits.psi_alert)) if data.drift else None,
            "delays": Markup(delay_figure(data.delays)) if data.delays and data.delays.count else None,
            "delay_note": delay_note(data.delays),
            "alerts": Markup(alerts_table_html(data.alerts)) if data.alerts else None,
            "label_note": label_note(data.windows),
            "comparisons": [comparison_cells(c) for c in data.comparisons],
        })
    template = _environment().get_template("page.html")
    return template.render(sections=sections, limits=limits, source=source,
                           generated=generated.strftime("%Y-%m-%d %H:%M:%S UTC"))


def label_note(windows: Sequence[Window]) -> str:
    """Label-pipeline health in one sentence: coverage overall and the least covered window.

    >>> label_note([Window(0, 100, 90, 80, 0.9, True), Window(3_600_000, 200, 20, 18, 0.9, False)])
    'Label coverage 36.7% overall; lowest 10.0% (window 1970-01-01 01:00, still open to labels).'
    """
    counted = [w for w in windows if w.predictions]
    if not counted:
        return "No predictions yet."
    total = sum(w.labeled for w in counted) / sum(w.predictions for w in counted)
    low = min(counted, key=lambda w: (w.labeled / w.predictions, w.start_ms))
    state = "final" if low.final else "still open to labels"
    return (f"Label coverage {total:.1%} overall; lowest {low.labeled / low.predictions:.1%} "
            f"(window {format_time(low.start_ms)}, {state}).")


def comparison_cells(c: VersionComparison) -> dict[str, str]:
    """One row of the version comparison table, formatted."""
    return {"window": format_time(c.start_ms), "baseline": c.baseline,
            "baseline_accuracy": f"{c.baseline_accuracy:.1%} of {c.baseline_n:,}",
            "accuracy": f"{c.candidate_accuracy:.1%} of {c.candidate_n:,}",
            "diff": f"{c.diff * 100:+.1f} [{c.diff_low * 100:+.1f}, {c.diff_high * 100:+.1f}]",
            "p": f"{c.p_value:.2g}", "worse": "worse" if c.worse else ""}


def delay_note(delays: Delays | None) -> str:
    if delays is None or not delays.count:
        return "No joined outcomes yet."
    early = sum(c for b, c in delays.buckets.items() if b < 0)
    note = (f"Median {human_duration(delays.median_ms)}, 90% of labels within {human_duration(delays.p90_ms)} "
            "(approximate quantiles).")
    if early:
        note += f" {early:,} label(s) arrived before their prediction."
    return note


# --- I/O: queries and the file ------------------------------------------------------------------

def _ms(column: str) -> str:
    return f"toUnixTimestamp64Milli({column})"


def fetch(settings: Settings, model: str | None = None, version: str | None = None) -> list[VersionData]:
    """Read every figure the report shows, one query per table (plus one per version for the
    delay histogram, whose bins depend on that version's range)."""
    target = parse_target(settings.clickhouse_dsn())
    if target.embedded_path and not Path(target.embedded_path).is_dir():
        raise ReportError(f"no embedded store at {target.embedded_path}; set CLICKHOUSE_URL to the store")
    db = "`" + target.database.replace("`", "``") + "`"
    where = where_clause(model, version)
    versions: dict[tuple[str, str], VersionData] = {}

    def of(row: Sequence[Any]) -> VersionData:
        key = (str(row[0]), str(row[1]))
        return versions.setdefault(key, VersionData(*key))

    _, rows = run_query(settings, f"SELECT model, model_version, {_ms('window_start')}, predictions, labeled, "
                                  f"correct, accuracy, final, estimated_accuracy, estimated_accuracy_low, "
                                  f"estimated_accuracy_high FROM {db}.window_metrics FINAL {where} "
                                  "ORDER BY model, model_version, window_start")
    for r in rows:
        of(r).windows.append(Window(int(r[2]), int(r[3]), int(r[4]), int(r[5]), r[6], bool(r[7]), *r[8:11]))
    _, rows = run_query(settings, f"SELECT model, model_version, {_ms('window_start')}, feature, psi, band "
                                  f"FROM {db}.feature_drift FINAL {where} ORDER BY model, model_version, "
                                  "window_start, feature")
    for r in rows:
        of(r).drift.append(Drift(int(r[2]), str(r[3]), r[4], str(r[5])))
    _, rows = run_query(settings, f"SELECT model, model_version, {_ms('window_start')}, {_ms('detected_at')}, "
                                  f"status, severity, type, subject, value, message FROM {db}.alerts FINAL {where} "
                                  "ORDER BY model, model_version, window_start, detected_at, type, subject")
    for r in rows:
        of(r).alerts.append(Alert(None if r[2] is None else int(r[2]), int(r[3]), *map(str, r[4:8]), r[8],
                                  str(r[9])))
    delay = f"({_ms('labeled_at')} - {_ms('predicted_at')})"
    _, rows = run_query(settings, f"SELECT model, model_version, count(), min({delay}), max({delay}), "
                                  f"quantiles(0.5, 0.9, 0.99)({delay}) FROM {db}.outcomes FINAL {where} "
                                  "GROUP BY model, model_version ORDER BY model, model_version")
    for r in rows:
        data = of(r)
        count, lo, hi, (median, p90, p99) = int(r[2]), float(r[3]), float(r[4]), r[5]
        width, overflow = histogram_plan(lo, hi, float(p99))
        bucket = f"floor({delay} / {width})" if overflow is None else f"least(floor({delay} / {width}), {overflow})"
        _, hist = run_query(settings, f"SELECT {bucket} AS b, count() FROM {db}.outcomes FINAL "
                                      f"{where_clause(data.model, data.version)} GROUP BY b ORDER BY b")
        data.delays = Delays(count, float(median), float(p90), width, {int(b): int(n) for b, n in hist}, overflow)
    try:
        _, rows = run_query(settings, f"SELECT model, candidate_version, {_ms('window_start')}, baseline_version, "
                                      "baseline_n, baseline_accuracy, candidate_n, candidate_accuracy, diff, diff_low, "
                                      f"diff_high, p_value, worse FROM {db}.version_comparison FINAL "
                                      f"{where.replace('model_version', 'candidate_version')} "
                                      "ORDER BY model, candidate_version, window_start, baseline_version")
    except QueryError:
        rows = []  # a store no worker of this release has opened yet has no such table
    for r in rows:
        if (str(r[0]), str(r[1])) in versions:
            versions[(str(r[0]), str(r[1]))].comparisons.append(VersionComparison(
                int(r[2]), str(r[3]), int(r[4]), float(r[5]), int(r[6]), float(r[7]), float(r[8]), float(r[9]),
                float(r[10]), float(r[11]), bool(r[12])))
    return [versions[k] for k in sorted(versions)]


def write_report(settings: Settings, out: Path, model: str | None = None, version: str | None = None) -> int:
    """Query, render and write the report; returns the number of model versions in it."""
    versions = fetch(settings, model, version)
    if not versions:
        which = " and ".join(f"{k} {v!r}" for k, v in (("model", model), ("version", version)) if v is not None)
        raise ReportError(f"no figures in {parse_target(settings.clickhouse_dsn()).describe()}"
                          + (f" for {which}" if which else ""))
    limits = Limits(settings.accuracy_threshold, settings.psi_warn, settings.psi_alert)
    own = {(v.model, v.version): version_limits(settings, v.model, v.version) for v in versions}
    page = render_report(versions, limits, parse_target(settings.clickhouse_dsn()).describe(), datetime.now(UTC),
                         own)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return len(versions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sinks.report",
                                     description="Write a self-contained HTML report of the monitor's figures.")
    parser.add_argument("--out", default="report.html", help="the HTML file to write (default: report.html)")
    parser.add_argument("--model", help="only this model")
    parser.add_argument("--version", help="only this model version")
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        settings = load_settings()
        count = write_report(settings, out, args.model, args.version)
    except (SettingsError, QueryError, ReportError, OSError) as err:
        print(f"report: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
        return 2
    print(f"Wrote {out} ({count} model version(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
