from __future__ import annotations

import json

import pytest

from tfbatch_django.batching.stats import LATENCY_BOUNDS, BatcherStats, LatencyHistogram, percentile_from_buckets


def test_percentiles_read_at_bucket_upper_edges():
    h = LatencyHistogram()
    for _ in range(98):
        h.observe(0.001)
    h.observe(0.050)
    h.observe(0.050)
    s = h.summary()
    assert s["count"] == 100
    assert 1.0 <= s["p50_ms"] < 1.0 * 1.19 + 1e-9
    assert 50.0 <= s["p99_ms"] < 50.0 * 1.19
    assert s["mean_ms"] == pytest.approx((98 * 1 + 2 * 50) / 100)


def test_percentile_of_empty_is_none():
    assert percentile_from_buckets([0] * (len(LATENCY_BOUNDS) + 1), 50) is None
    assert LatencyHistogram().summary()["p99_ms"] is None


def test_exported_buckets_are_sparse_and_summable():
    a, b = LatencyHistogram(), LatencyHistogram()
    a.observe(0.001)
    b.observe(0.001)
    b.observe(10.0)
    ea, eb = a.export(), b.export()
    merged = {k: ea["buckets"].get(k, 0) + eb["buckets"].get(k, 0) for k in set(ea["buckets"]) | set(eb["buckets"])}
    assert sum(merged.values()) == 3
    assert len(eb["buckets"]) == 2


def test_snapshot_is_json_ready_and_counts_outcomes():
    stats = BatcherStats(max_batch_size=4, name="m")
    stats.record_batch(3, 4, 0.002, failed_calls=0, extra_calls=0, queue_depth=0)
    for outcome in ("ok", "ok", "ok"):
        stats.record_request(outcome, 0.0001, 0.003)
    for outcome in ("timeout", "error", "cancelled", "overloaded", "invalid"):
        stats.record_request(outcome)
    snap = stats.snapshot(queue_depth=2, in_flight_batches=1)
    json.dumps(snap)
    assert (snap["completed"], snap["timeouts"], snap["errors"], snap["cancelled"]) == (3, 1, 1, 1)
    assert (snap["rejected"], snap["invalid"]) == (1, 1)
    assert snap["batch_size_histogram"] == {"3": 1}
    assert snap["padding_share"] == 0.25
    assert (snap["queue_depth"], snap["in_flight_batches"]) == (2, 1)
    with pytest.raises(ValueError, match="unknown outcome"):
        stats.record_request("weird")


def test_listeners_get_events_and_cannot_break_recording():
    events = []

    class Listener:
        def on_request(self, model, outcome, queue_wait, latency):
            events.append(("request", model, outcome))
            raise RuntimeError("listener bug")

        def on_batch(self, model, rows, padded, run_time, queue_depth):
            events.append(("batch", model, rows, padded, queue_depth))

    stats = BatcherStats(max_batch_size=4, name="m", listeners=[Listener()])
    stats.record_request("ok", 0.001, 0.002)
    stats.record_batch(2, 4, 0.001, failed_calls=0, extra_calls=0, queue_depth=5)
    assert events == [("request", "m", "ok"), ("batch", "m", 2, 4, 5)]
    assert stats.completed == 1
