"""Inline SVG charts, computed on the server: no chart library, no CDN, no JavaScript.

The dashboard re-renders its live part every few seconds anyway, so drawing on the
server costs one small path per line and keeps the page's script to a fetch loop.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["BarChart", "Line", "LineChart", "batch_size_chart", "history_charts", "nice_ceiling"]

WIDTH, HEIGHT = 320.0, 90.0


@dataclass(frozen=True)
class Line:
    label: str
    css: str  # class name: the stylesheet picks its colour
    path: str  # SVG path data; "" when there is nothing to draw
    latest: str  # the last value, formatted
    dots: tuple[tuple[float, float], ...] = ()  # points with no neighbour to draw a line to


@dataclass(frozen=True)
class LineChart:
    title: str
    unit: str
    lines: tuple[Line, ...]
    y_max: str
    x_start: str
    x_end: str = "now"
    y_unit: str = ""  # what the vertical axis counts, after its range
    width: float = WIDTH
    height: float = HEIGHT


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class BarChart:
    bars: tuple[Bar, ...]
    y_max: str
    x_max: str
    width: float = WIDTH
    height: float = HEIGHT


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is >= ``value`` (an axis maximum)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 5.0, 10.0):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10.0 * power


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _segments(
    points: Sequence[tuple[float, float | None]], start: float, end: float, y_max: float, gap: float
) -> list[list[tuple[float, float]]]:
    """(time, value) points in chart coordinates, split where data is missing or ``gap`` apart."""
    segments: list[list[tuple[float, float]]] = []
    previous_t: float | None = None
    for t, value in points:
        if value is None:
            previous_t = None
            continue
        if previous_t is None or t - previous_t > gap:
            segments.append([])
        segments[-1].append((round((t - start) / (end - start) * WIDTH, 1), round(HEIGHT - value / y_max * HEIGHT, 1)))
        previous_t = t
    return segments


def _line(
    label: str, css: str, points: Sequence[tuple[float, float | None]], history: Mapping[str, Any], y_max: float
) -> Line:
    segments = _segments(points, history["start"], history["end"], y_max, gap=1.5 * history["bin_seconds"])
    path = " ".join("M" + " L".join(f"{x},{y}" for x, y in segment) for segment in segments if len(segment) > 1)
    dots = tuple(segment[0] for segment in segments if len(segment) == 1)
    latest = next((v for _, v in reversed(points) if v is not None), None)
    return Line(label, css, path, _fmt(latest), dots)


def _line_chart(
    title: str,
    unit: str,
    series: Sequence[tuple[str, str, Sequence[tuple[float, float | None]]]],
    history: Mapping[str, Any],
    y_unit: str,
) -> LineChart:
    y_max = nice_ceiling(max((v for _, _, points in series for _, v in points if v is not None), default=0.0))
    lines = tuple(_line(label, css, points, history, y_max) for label, css, points in series)
    return LineChart(title, unit, lines, _fmt(y_max), f"-{history['hours']:g} h", y_unit=y_unit)


def history_charts(points: Sequence[Mapping[str, Any]], history: Mapping[str, Any]) -> list[LineChart]:
    """Throughput, mean batch size and p99 latency of one model over the history span."""

    def pick(key: str) -> list[tuple[float, float | None]]:
        return [(p["t"], p[key]) for p in points]

    return [
        _line_chart(
            "Throughput",
            "per second",
            [("requests/s", "requests", pick("requests_per_s")), ("rows/s", "rows", pick("rows_per_s"))],
            history,
            "requests or rows per second",
        ),
        _line_chart(
            "Mean batch size", "rows", [("mean batch", "batch", pick("mean_batch_size"))], history, "rows per batch"
        ),
        _line_chart("p99 latency, end to end", "ms", [("p99", "latency", pick("p99_ms"))], history, "ms"),
    ]


def batch_size_chart(histogram: Mapping[str, int], max_batch_size: int) -> BarChart:
    """One bar per batch size that occurred, placed on a 1..MAX_BATCH_SIZE axis."""
    sizes = {int(size): n for size, n in histogram.items() if n}
    top = max(sizes.values(), default=0)
    x_max = max([max_batch_size, *sizes])
    slot = WIDTH / x_max
    bars = tuple(
        Bar(
            x=round((size - 1) * slot, 2),
            y=round(HEIGHT - n / top * HEIGHT, 2),
            width=round(max(slot - 1.0, 1.0), 2),
            height=round(n / top * HEIGHT, 2),
            title=f"{n:,} batch{'es' if n != 1 else ''} of {size} row{'s' if size != 1 else ''}",
        )
        for size, n in sorted(sizes.items())
    )
    return BarChart(bars, _fmt(float(top)), str(x_max))
