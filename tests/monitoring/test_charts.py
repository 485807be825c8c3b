"""Server-side SVG charts: axis maxima, gaps, isolated points, batch-size bars."""

from __future__ import annotations

import pytest

from tfbatch_django.monitoring.charts import HEIGHT, WIDTH, batch_size_chart, history_charts, nice_ceiling
from tfbatch_django.monitoring.views import latency_text

HISTORY = {"start": 0.0, "end": 600.0, "bin_seconds": 60.0, "hours": 1 / 6}


@pytest.mark.parametrize(
    ("value", "ceiling"), [(0, 1), (0.7, 1), (1, 1), (1.01, 2), (3, 5), (7.5, 10), (12, 20), (450, 500), (0.013, 0.02)]
)
def test_axis_maximum_is_a_round_number(value, ceiling):
    assert nice_ceiling(value) == pytest.approx(ceiling)


def point(t: float, requests: float | None, p99: float | None = 1.0) -> dict:
    return {"t": t, "requests_per_s": requests, "rows_per_s": requests, "mean_batch_size": 2.0, "p99_ms": p99}


def test_lines_break_at_gaps_and_lone_points_become_dots():
    points = [point(60, 10), point(120, 20), point(300, 5), point(480, 8), point(540, None), point(600, 4)]
    throughput, batch, latency = history_charts(points, HISTORY)
    requests = throughput.lines[0]
    assert throughput.y_max == "20"
    # 60 and 120 join; 300, 480 and 600 each stand alone (a gap, or a missing value, between).
    assert requests.path == f"M{WIDTH * 0.1},{HEIGHT / 2} L{WIDTH * 0.2},0.0"
    assert requests.dots == ((WIDTH / 2, HEIGHT * 0.75), (WIDTH * 0.8, HEIGHT * 0.6), (WIDTH, HEIGHT * 0.8))
    assert requests.latest == "4"
    assert [c.title for c in (throughput, batch, latency)] == [
        "Throughput",
        "Mean batch size",
        "p99 latency, end to end",
    ]
    # Each vertical axis says what it counts.
    assert [c.y_unit for c in (throughput, batch, latency)] == ["requests or rows per second", "rows per batch", "ms"]


def test_no_history_draws_nothing():
    charts = history_charts([], HISTORY)
    assert all(line.path == "" and line.dots == () and line.latest == "-" for c in charts for line in c.lines)


def test_batch_size_bars_sit_at_their_size():
    chart = batch_size_chart({"1": 2, "10": 8}, max_batch_size=10)
    assert [(b.x, b.height) for b in chart.bars] == [(0.0, HEIGHT / 4), (WIDTH * 0.9, HEIGHT)]
    assert chart.bars[1].title == "8 batches of 10 rows"
    assert (chart.y_max, chart.x_max) == ("8", "10")
    assert batch_size_chart({}, 8).bars == ()


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (None, "\u2013"),
        (0, "0"),
        (0.0004, "<0.001"),
        (0.01, "0.01"),
        (0.5382, "0.538"),
        (6.0887, "6.09"),
        (57.24, "57.2"),
        (612.4, "612"),
        (1234.6, "1,235"),
    ],
)
def test_latencies_are_shown_with_three_significant_figures_at_most(ms, text):
    assert latency_text(ms) == text


def test_the_page_labels_both_axes_of_every_chart():
    from django.template.loader import render_to_string

    charts = history_charts([point(60, 10), point(120, 20)], HISTORY)
    html = render_to_string("admin/tfbatch_django/line_chart.html", {"chart": charts[0]})
    assert "↑ 0 \u2013 20 requests or rows per second" in html
    assert "<span>-0.166667 h</span><span>time →</span><span>now</span>" in html
    html = render_to_string("admin/tfbatch_django/bar_chart.html", {"chart": batch_size_chart({"1": 2, "10": 8}, 10)})
    assert "↑ 0 \u2013 8 batches" in html
    assert "<span>1 row</span><span>batch size →</span><span>10 rows</span>" in html
