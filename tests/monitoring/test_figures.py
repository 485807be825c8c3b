"""Windows (differences over time) and totals (sums over processes) of real batcher stats."""

from __future__ import annotations

import pytest

from tfbatch_django.batching.stats import BatcherStats
from tfbatch_django.monitoring.figures import COUNTERS, sum_totals, sum_windows, summarize, window


def stats_with(requests: int, latency: float, batch: int = 4) -> BatcherStats:
    """A batcher's counters after ``requests`` one-row requests in batches of ``batch``."""
    stats = BatcherStats(max_batch_size=8)
    record(stats, requests, latency, batch)
    return stats


def record(stats: BatcherStats, requests: int, latency: float, batch: int = 4) -> None:
    stats.requests += requests
    for i in range(requests):
        stats.record_request("ok", queue_wait=latency / 4, latency=latency)
        if i % batch == batch - 1:
            stats.record_batch(batch, batch, latency / 2, 0, 0, queue_depth=0)


def snap(stats: BatcherStats) -> dict:
    return stats.snapshot(queue_depth=2, in_flight_batches=1)


def test_first_window_is_everything_since_the_batcher_started():
    current = snap(stats_with(8, 0.010))
    w = window(current, None)
    assert w["seconds"] == pytest.approx(current["uptime_s"], abs=1e-3)
    assert {c: w["counters"][c] for c in COUNTERS} == {c: current[c] for c in COUNTERS}
    assert w["histograms"]["end_to_end"] == current["histograms"]["end_to_end"]


def test_window_is_the_difference_between_two_snapshots():
    stats = stats_with(8, 0.010)
    before = snap(stats)
    record(stats, 12, 0.200)
    after = snap(stats)
    w = window(after, before)
    assert w["counters"]["requests"] == 12
    assert w["counters"]["completed"] == 12
    assert w["counters"]["batches"] == 3
    e2e = w["histograms"]["end_to_end"]
    assert e2e["count"] == 12
    assert summarize(e2e)["p50_ms"] == summarize(snap(stats_with(12, 0.200))["histograms"]["end_to_end"])["p50_ms"]
    assert summarize(e2e)["p99_ms"] > 190  # only the slow requests: the window forgot the fast ones


def test_a_rebuilt_batcher_starts_a_new_window_from_zero():
    old = snap(stats_with(50, 0.010))
    rebuilt = snap(stats_with(3, 0.010))  # settings changed: new BatcherStats, counters restart
    assert window(rebuilt, old)["counters"]["requests"] == 3


def test_summaries_equal_the_batchers_own():
    current = snap(stats_with(37, 0.0123))
    for name in ("queue_wait", "run", "end_to_end"):
        assert summarize(current["histograms"][name]) == current["latency_ms"][name]


def test_totals_add_counters_and_histograms_and_recompute_the_rest():
    fast, slow = snap(stats_with(96, 0.001, batch=8)), snap(stats_with(4, 0.500, batch=1))
    total = sum_totals([fast, slow])
    for c in COUNTERS:
        assert total[c] == fast[c] + slow[c]
    assert total["batch_size_histogram"] == {"1": 4, "8": 12}
    assert total["mean_batch_size"] == round(100 / 16, 3)
    assert (total["queue_depth"], total["in_flight_batches"]) == (4, 2)
    # 4 slow requests in 100: above the 95th percentile, so p99 is slow and p95 fast.
    assert total["latency_ms"]["end_to_end"]["p95_ms"] < 2
    assert total["latency_ms"]["end_to_end"]["p99_ms"] > 400
    one = sum_totals([fast])
    assert {k: one[k] for k in ("mean_batch_size", "padding_share", "latency_ms")} == {
        k: fast[k] for k in ("mean_batch_size", "padding_share", "latency_ms")
    }


def test_rates_are_per_process_then_added():
    def w(requests: int, seconds: float) -> dict:
        return window(snap(stats_with(requests, 0.01)), None) | {"seconds": seconds}

    recent = sum_windows([w(10, 2.0), w(30, 3.0), w(5, 0.0)])
    assert recent["requests_per_s"] == 5 + 10  # the empty window adds counts, not a rate
    assert recent["requests"] == 45
    assert recent["latency_ms"]["end_to_end"]["count"] == 45
    assert sum_windows([])["requests_per_s"] == 0
