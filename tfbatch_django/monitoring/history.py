"""Chart series from persisted history samples: throughput, mean batch size, p99 latency.

Samples are per process and per history interval, and processes do not sample in step.
So time is cut into fixed bins (aligned to the epoch); within a bin each process's rate
is its deltas over its own sampled seconds, and the bin's rate is the sum over
processes. Latency percentiles of a bin come from the summed bucket deltas.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from . import figures, store

__all__ = ["MAX_POINTS", "series"]

#: Bins per chart: enough for a readable line, few enough to draw at every refresh.
MAX_POINTS = 120


def series(models: list[str], now: datetime, hours: float, history_interval: float) -> dict[str, Any]:
    """Per model, one point per bin that has samples (a missing bin is a gap, not a zero)."""
    span = hours * 3600.0
    bin_seconds = max(history_interval, span / MAX_POINTS)
    since = now - timedelta(seconds=span)
    # model -> bin -> process -> samples
    grouped: dict[str, dict[int, dict[str, list[Any]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for sample in store.samples_since(since, models):
        grouped[sample.model][math.floor(sample.at.timestamp() / bin_seconds)][sample.process].append(sample)
    return {
        "hours": hours,
        "bin_seconds": bin_seconds,
        "start": since.timestamp(),
        "end": now.timestamp(),
        "models": {
            name: [_point(index, bin_seconds, per_process) for index, per_process in sorted(grouped[name].items())]
            for name in models
        },
    }


def _point(index: int, bin_seconds: float, per_process: dict[str, list[Any]]) -> dict[str, Any]:
    windows = []
    for samples in per_process.values():
        # One window per process: its samples in this bin, merged.
        counters = {c: sum(s.data["counters"][c] for s in samples) for c in figures.COUNTERS}
        histograms = figures.sum_histograms(s.data for s in samples)
        windows.append({"seconds": sum(s.seconds for s in samples), "counters": counters, "histograms": histograms})
    recent = figures.sum_windows(windows)
    return {
        "t": (index + 1) * bin_seconds,
        "requests_per_s": recent["requests_per_s"],
        "rows_per_s": recent["rows_per_s"],
        "mean_batch_size": recent["mean_batch_size"],
        "p99_ms": recent["latency_ms"]["end_to_end"]["p99_ms"],
    }
