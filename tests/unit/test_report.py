"""The report's pure parts: the alerts table (exact cells, escaping), the SVG figure builders (one
SVG element per series and per alert marker), the histogram plan and the SQL filter."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest

from sinks import report
from sinks.report import Alert, Delays, Drift, Limits, VersionData, Window

HOUR = 3_600_000
T0 = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp() * 1000)


class TableCells(HTMLParser):
    """Rows of `<tr class="alert ...">` as lists of cell texts (entities decoded)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr" and "alert" in (dict(attrs).get("class") or "").split():
            self.rows.append([])
        elif tag == "td" and self.rows:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def cells(html: str) -> list[list[str]]:
    parser = TableCells()
    parser.feed(html)
    return parser.rows


def ids(svg: str, prefix: str) -> list[str]:
    return re.findall(rf'id="({re.escape(prefix)}[^"]*)"', svg)


def windows(accuracies: list[float | None], final: bool = True) -> list[Window]:
    return [Window(T0 + i * HOUR, 100, 0 if a is None else 80, 0 if a is None else round(a * 80), a, final)
            for i, a in enumerate(accuracies)]


ALERTS = [
    Alert(T0 + 2 * HOUR, T0 + 30 * HOUR, "firing", "critical", "accuracy_below_threshold", "accuracy", 0.825,
          "Accuracy of m v1 is 82.5%, below the 85.0% objective."),
    Alert(T0 + 3 * HOUR, T0 + 31 * HOUR, "firing", "warning", "error_rate_drift", "error_rate", 0.2, "ADWIN rose."),
    Alert(T0 + 4 * HOUR, T0 + 5 * HOUR, "firing", "warning", "feature_drift", "age", 0.2606, "Feature 'age' drifted."),
    Alert(T0 + 5 * HOUR, T0 + 6 * HOUR, "resolved", "warning", "feature_drift", "age", 0.0956, "Stable again."),
    Alert(None, T0 + 7 * HOUR, "firing", "warning", "accuracy_drop", "accuracy", None, "No window."),
]


def test_alerts_table_has_the_exact_cells_in_order() -> None:
    rows = cells(report.alerts_table_html(ALERTS))
    assert rows == [
        ["2026-01-05 02:00", "firing", "critical", "accuracy_below_threshold", "accuracy", "0.825",
         "Accuracy of m v1 is 82.5%, below the 85.0% objective."],
        ["2026-01-05 03:00", "firing", "warning", "error_rate_drift", "error_rate", "0.200", "ADWIN rose."],
        ["2026-01-05 04:00", "firing", "warning", "feature_drift", "age", "0.261", "Feature 'age' drifted."],
        ["2026-01-05 05:00", "resolved", "warning", "feature_drift", "age", "0.096", "Stable again."],
        # no window: the time is when it was detected; no value: a dash
        ["2026-01-05 07:00", "firing", "warning", "accuracy_drop", "accuracy", "-", "No window."],
    ]


def test_alerts_table_escapes_every_text_from_the_database() -> None:
    hostile = Alert(T0, T0, 'firing" onmouseover="x', "<b>critical</b>", "<script>alert(1)</script>",
                    "a&b", 1.0, '</td></tr></table><img src="https://example.com/x.png">')
    html = report.alerts_table_html([hostile])
    assert "<script" not in html and "<img" not in html and "<b>" not in html
    assert 'onmouseover="' not in html
    assert "&lt;script&gt;" in html and "a&amp;b" in html
    # the text reads back exactly as it was stored
    assert cells(html) == [["2026-01-05 00:00", 'firing" onmouseover="x', "<b>critical</b>",
                            "<script>alert(1)</script>", "a&b", "1.000",
                            '</td></tr></table><img src="https://example.com/x.png">']]


def test_alert_tone_only_knows_three_colors() -> None:
    tones = [report.alert_tone(a) for a in ALERTS] + [report.alert_tone(Alert(T0, T0, "firing", "weird", "t",
                                                                             "s", None, ""))]
    assert tones == ["critical", "warning", "warning", "resolved", "warning", "warning"]


def test_accuracy_figure_draws_one_element_per_series_and_per_alert() -> None:
    data = windows([0.95, 0.9, 0.82, 0.8, None, 0.7])
    svg = report.accuracy_figure(data, ALERTS, 0.85)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert ids(svg, "series-") == ["series-accuracy"]  # all windows final: no hollow series
    assert ids(svg, "threshold") == ["threshold"]
    assert "ACCURACY_THRESHOLD 0.85" in svg
    # the accuracy alert and the windowed ADWIN alert; not the drift alerts, not the one without a window
    assert ids(svg, "alert-marker-") == ["alert-marker-0", "alert-marker-1"]
    assert "alert critical firing" in svg and "alert warning firing" in svg and "alert resolved" not in svg


def test_accuracy_figure_marks_windows_that_are_not_final() -> None:
    svg = report.accuracy_figure(windows([0.9, 0.91]) + windows([0.5])[:0] + [
        Window(T0 + 2 * HOUR, 10, 5, 4, 0.8, False)], [], 0.85)
    assert ids(svg, "series-") == ["series-accuracy", "series-open-windows"]
    assert ids(svg, "alert-marker-") == []


def test_accuracy_markers_sit_on_the_window_accuracy() -> None:
    placed = report.accuracy_markers(ALERTS, windows([0.95, 0.9, 0.82, 0.8]))
    assert [(a.type, y) for a, y in placed] == [("accuracy_below_threshold", 0.82), ("error_rate_drift", 0.8)]
    # without the window row: the accuracy the alert reports (1 - error rate for ADWIN)
    assert [y for _, y in report.accuracy_markers(ALERTS, [])] == [0.825, pytest.approx(0.8)]


def drift_rows() -> list[Drift]:
    rows = []
    for j in range(4):
        rows.append(Drift(T0 + j * HOUR, "age", [0.0, 0.05, 0.2606, 0.0956][j], "none"))
        rows.append(Drift(T0 + j * HOUR, "__score__", 0.01 * j, "none"))
        rows.append(Drift(T0 + j * HOUR, "income", None if j == 1 else 0.02, "none"))
    return rows


def test_psi_matrix_orders_features_and_keeps_gaps() -> None:
    features, starts, matrix = report.psi_matrix(drift_rows())
    assert features == ["age", "income", "__score__"]
    assert starts == [T0 + j * HOUR for j in range(4)]
    assert matrix[0] == [0.0, 0.05, 0.2606, 0.0956]
    assert matrix[1][0] == 0.02 and math.isnan(matrix[1][1])


def test_psi_heatmap_writes_a_cell_per_known_value_and_every_feature() -> None:
    svg = report.psi_heatmap(drift_rows(), 0.1, 0.2)
    assert len(ids(svg, "psi-heatmap")) == 1
    assert len(ids(svg, "psi-cell-")) == 11  # 12 cells, one without a value
    for feature in ("age", "income", "__score__", "PSI_WARN 0.1", "PSI_ALERT 0.2"):
        assert f">{feature}<" in svg
    assert ">0.26<" in svg


def test_psi_lines_draw_every_feature_the_bands_and_the_drift_alerts() -> None:
    svg = report.psi_lines_figure(drift_rows(), ALERTS, 0.1, 0.2)
    assert len(ids(svg, "series-psi-")) == 3
    assert ids(svg, "band-") == ["band-none", "band-small", "band-drift"]
    assert ids(svg, "alert-marker-") == ["alert-marker-0", "alert-marker-1"]  # the two feature_drift alerts
    assert ">age<" in svg  # reached PSI_WARN: in the legend
    assert "other features (&lt; PSI_WARN)" in svg


def test_figures_escape_names_and_never_read_them_as_math() -> None:
    rows = [Drift(T0 + j * HOUR, name, 0.3, "drift") for j in range(2) for name in ("<b>&x</b>", "$price$")]
    svg = report.psi_lines_figure(rows, [], 0.1, 0.2)
    assert "<b>" not in svg and "&lt;b&gt;&amp;x&lt;/b&gt;" in svg
    assert ">$price$<" in svg


def test_delay_figure_draws_one_bar_per_bucket_and_hatches_the_overflow() -> None:
    delays = Delays(count=12, median_ms=20 * 60_000, p90_ms=50 * 60_000, width_ms=15 * 60_000,
                    buckets={-1: 1, 0: 5, 1: 3, 3: 2, 4: 1}, overflow=4)
    svg = report.delay_figure(delays)
    assert len(ids(svg, "delay-bar-")) == 5
    assert "≥ 1 h" in svg
    assert "median 20 min" in svg and "90th percentile 50 min" in svg
    assert "Label delay of 12 joined outcomes (15 min bins)" in svg


@pytest.mark.parametrize(("lo", "hi", "p99", "expected"), [
    (-5 * 60_000, 12 * HOUR, 5 * HOUR, (15 * 60_000, None)),   # the demo: 725 min in 15-min bins
    (0, 7 * 24 * HOUR, HOUR, (60_000, 61)),                    # one label took a week: bins to p99
    (1_000, 9_000, 8_000, (1_000, None)),                      # labels within seconds
    (0, 0, 0, (1_000, None)),
])
def test_histogram_plan(lo: int, hi: int, p99: int, expected: tuple[int, int | None]) -> None:
    width, overflow = report.histogram_plan(lo, hi, p99)
    assert (width, overflow) == expected
    top = hi if overflow is None else p99
    assert (top - min(lo, 0)) / width <= 60


def test_sql_filter_quotes_values() -> None:
    assert report.where_clause("churn", "v1") == "WHERE model = 'churn' AND model_version = 'v1'"
    assert report.where_clause(None, "v'1") == "WHERE model_version = 'v\\'1'"
    assert report.sql_string("a\\' OR 1=1 --") == "'a\\\\\\' OR 1=1 --'"


def test_report_is_one_page_without_script_or_external_asset() -> None:
    versions = [
        VersionData("<i>churn</i>", "v1", windows([0.95, 0.8]), drift_rows(), ALERTS[:2],
                    Delays(5, 60_000, 120_000, 60_000, {0: 2, 1: 3})),
        VersionData("fraud", "v2", windows([0.9]), [], [], None),
    ]
    page = report.render_report(versions, Limits(0.85, 0.1, 0.2), "embedded ClickHouse at /x",
                                datetime(2026, 1, 6, 8, 0, tzinfo=UTC))
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, flags=re.I)
    assert "&lt;i&gt;churn&lt;/i&gt;" in page and "<i>churn" not in page
    assert page.count('<section class="version"') == 2
    assert page.count("<svg") == 5  # 4 figures of the first version, accuracy only for the second
    assert "No alerts." in page and "No joined outcomes yet." in page
    assert "Generated 2026-01-06 08:00:00 UTC" in page
    assert len(cells(page)) == 2


def test_the_estimate_is_drawn_beside_the_accuracy_and_its_alert_on_it():
    from sinks.report import Alert, Window, accuracy_figure, accuracy_markers, drift_markers

    windows = [Window(0, 100, 80, 72, 0.9, True, 0.89, 0.86, 0.92),
               Window(3_600_000, 100, 0, 0, None, False, 0.8, 0.77, 0.83)]
    alert = Alert(3_600_000, 5, "firing", "warning", "estimated_accuracy_below_threshold", "estimated_accuracy",
                  0.8, "")
    assert [y for _, y in accuracy_markers([alert], windows)] == [0.8]
    assert drift_markers([alert]) == []
    svg = accuracy_figure(windows, [alert], 0.85)
    assert 'id="series-estimated-accuracy"' in svg and 'id="estimate-interval"' in svg
    assert 'id="series-estimated-accuracy"' not in accuracy_figure([Window(0, 1, 1, 1, 1.0, True)], [], 0.85)


def test_label_health_note_and_version_comparison_table():
    from sinks.report import VersionComparison, label_note, render_report

    assert label_note([]) == "No predictions yet."
    data = VersionData("m", "v2", windows=[Window(0, 100, 80, 70, 0.875, True)], comparisons=[
        VersionComparison(0, "v1", 400, 0.95, 100, 0.87, -0.08, -0.147, -0.013, 0.0004, True)])
    page = render_report([data], Limits(0.85, 0.1, 0.2), "chdb://memory", datetime(2026, 1, 5, tzinfo=UTC))
    assert "Label coverage 80.0% overall; lowest 80.0% (window 1970-01-01 00:00, final)." in page
    row = re.search(r'<tr class="comparison tone-critical">(.*?)</tr>', page, flags=re.S).group(1)
    assert [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td.*?</td>", row, flags=re.S)] == [
        "1970-01-01 00:00", "v1", "95.0% of 400", "87.0% of 100", "-8.0 [-14.7, -1.3]", "0.0004", "worse"]
    assert cells(page) == []  # not taken for alert rows
