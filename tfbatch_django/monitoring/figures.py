"""Arithmetic on ``get_stats()`` snapshots: differences over time, sums over processes.

Counters and the raw latency histograms (fixed log buckets) are additive, so a window
("what happened since the last snapshot") is a subtraction and a cross-process total is
a sum. Every derived figure (mean batch size, padding share, percentiles, rates) is
recomputed from the summed raw numbers, never averaged: an average of two processes'
p99 is not the p99 of their traffic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..batching.stats import LATENCY_BOUNDS, LatencyHistogram, derived_figures

__all__ = [
    "COUNTERS",
    "LATENCIES",
    "add_histograms",
    "derived",
    "empty_histogram",
    "subtract_histograms",
    "sum_histograms",
    "sum_totals",
    "sum_windows",
    "summarize",
    "window",
]

#: Monotonic counters of ``get_stats()`` (they only grow while a batcher lives).
COUNTERS = (
    "requests",
    "rows",
    "completed",
    "batches",
    "padding_rows",
    "rejected",
    "invalid",
    "timeouts",
    "cancelled",
    "errors",
    "failed_batches",
    "bisect_calls",
)
#: The latency histograms of ``get_stats()["histograms"]``.
LATENCIES = ("queue_wait", "run", "end_to_end")

Histogram = dict[str, Any]  # {"buckets": {index as str: count}, "sum": seconds, "count": n}


def empty_histogram() -> Histogram:
    return {"buckets": {}, "sum": 0.0, "count": 0}


def add_histograms(a: Mapping[str, Any], b: Mapping[str, Any]) -> Histogram:
    buckets = dict(a["buckets"])
    for index, n in b["buckets"].items():
        buckets[index] = buckets.get(index, 0) + n
    return {"buckets": buckets, "sum": a["sum"] + b["sum"], "count": a["count"] + b["count"]}


def subtract_histograms(a: Mapping[str, Any], b: Mapping[str, Any]) -> Histogram:
    """``a - b`` for two exports of the same histogram, ``b`` taken earlier."""
    buckets = {index: n - b["buckets"].get(index, 0) for index, n in a["buckets"].items()}
    return {
        "buckets": {index: n for index, n in buckets.items() if n},
        "sum": a["sum"] - b["sum"],
        "count": a["count"] - b["count"],
    }


def summarize(histogram: Mapping[str, Any]) -> dict[str, float | int | None]:
    """Count, mean and percentiles in ms, computed exactly as the batcher computes its own."""
    counts = [0] * (len(LATENCY_BOUNDS) + 1)
    for index, n in histogram["buckets"].items():
        counts[int(index)] += n
    return LatencyHistogram(counts=counts, total=histogram["sum"], count=histogram["count"]).summary()


def derived(counters: Mapping[str, int]) -> dict[str, float | None]:
    """Mean batch size and padding share, computed as ``BatcherStats.snapshot`` does."""
    return derived_figures(counters["rows"], counters["batches"], counters["padding_rows"])


def _taken_at(snapshot: Mapping[str, Any]) -> float:
    return float(snapshot["taken_at"])


def window(current: Mapping[str, Any], previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """What one model did in one process between two of its snapshots.

    Without a previous snapshot, or when the batcher was rebuilt in between (new
    ``started_at``, a counter went down), the window starts at the batcher's start,
    where every counter was zero.
    """
    restarted = (
        previous is None
        or previous["started_at"] != current["started_at"]
        or any(current[c] < previous[c] for c in COUNTERS)
    )
    if restarted:
        seconds = float(current["uptime_s"])
        base_counters: Mapping[str, int] = dict.fromkeys(COUNTERS, 0)
        base_histograms: Mapping[str, Any] = {name: empty_histogram() for name in LATENCIES}
    else:
        assert previous is not None
        seconds = _taken_at(current) - _taken_at(previous)
        base_counters, base_histograms = previous, previous["histograms"]
    return {
        "seconds": round(max(seconds, 0.0), 3),
        "counters": {c: current[c] - base_counters[c] for c in COUNTERS},
        "histograms": {
            name: subtract_histograms(current["histograms"][name], base_histograms[name]) for name in LATENCIES
        },
    }


def sum_histograms(snapshots: Iterable[Mapping[str, Any]]) -> dict[str, Histogram]:
    """The latency histograms of several snapshots or windows, added bucket by bucket."""
    totals = {name: empty_histogram() for name in LATENCIES}
    for snap in snapshots:
        for name in LATENCIES:
            totals[name] = add_histograms(totals[name], snap["histograms"][name])
    return totals


def sum_totals(snapshots: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One model's figures since start, summed over processes; the keys of ``get_stats()``."""
    counters = {c: sum(s[c] for s in snapshots) for c in COUNTERS}
    sizes: dict[str, int] = {}
    for snap in snapshots:
        for size, n in snap["batch_size_histogram"].items():
            sizes[size] = sizes.get(size, 0) + n
    histograms = sum_histograms(snapshots)
    return {
        **counters,
        **derived(counters),
        "batch_size_histogram": dict(sorted(sizes.items(), key=lambda item: int(item[0]))),
        "queue_depth": sum(s["queue_depth"] for s in snapshots),
        "in_flight_batches": sum(s["in_flight_batches"] for s in snapshots),
        "latency_ms": {name: summarize(h) for name, h in histograms.items()},
        "histograms": histograms,
    }


def sum_windows(windows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Recent figures over processes whose windows need not line up.

    Rates are per process (its deltas over its own window) and then added; counts and
    histograms add directly.
    """
    counters = {c: sum(w["counters"][c] for w in windows) for c in COUNTERS}
    rates = {}
    for counter in ("requests", "rows", "batches", "completed"):
        rates[f"{counter}_per_s"] = round(
            sum(w["counters"][counter] / w["seconds"] for w in windows if w["seconds"] > 0), 3
        )
    histograms = sum_histograms(windows)
    return {
        "seconds": max((w["seconds"] for w in windows), default=0.0),
        **rates,
        **counters,
        **derived(counters),
        "latency_ms": {name: summarize(h) for name, h in histograms.items()},
    }
