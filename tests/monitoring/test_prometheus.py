"""Prometheus metrics in one process: fed by the listener, read back from the exposition.

(Several processes are covered by ``test_processes``, in prometheus_client's
multiprocess mode.)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import RequestFactory, override_settings

from tfbatch_django import get_stats
from tfbatch_django.batching.stats import LATENCY_BOUNDS
from tfbatch_django.monitoring.prometheus import LATENCY_BUCKETS, listener, metrics_view
from tfbatch_django.registry import registry

from .prometheus_text import samples_of
from .workloads import GATED, known_workload


@pytest.fixture
def prometheus() -> Iterator[None]:
    with override_settings(TFBATCH={**GATED, "PROMETHEUS": True}):
        yield


def scrape(model: str = "gated") -> dict[tuple[str, object], float]:
    response = metrics_view(RequestFactory().get("/metrics"))
    assert response["Content-Type"].startswith("text/plain")
    return samples_of(response.content.decode(), model)


def test_listener_follows_the_setting(prometheus):
    assert listener() in registry.listeners
    with override_settings(TFBATCH=GATED):
        assert listener() not in registry.listeners


def test_metrics_equal_the_batchers_counters_after_a_known_workload(prometheus):
    before = scrape()  # counters live as long as the process: compare differences
    known_workload()
    after = scrape()
    stats = get_stats()["gated"]

    def delta(name: str, extra: object = None) -> float:
        return after[(name, extra)] - before.get((name, extra), 0.0)

    assert delta("tfbatch_requests_total", "ok") == stats["completed"] == 100
    for outcome in ("timeout", "error", "cancelled", "overloaded", "invalid"):
        assert delta("tfbatch_requests_total", outcome) == 0
    assert delta("tfbatch_batch_size_count") == stats["batches"] == 11
    assert delta("tfbatch_batch_size_sum") == stats["rows"] == 100
    assert [delta("tfbatch_batch_size_bucket", float(le)) for le in (1, 8, 16)] == [1, 1, 11]  # sizes 1, 9, 10
    assert delta("tfbatch_padding_rows_total") == stats["padding_rows"] == 1
    assert delta("tfbatch_run_seconds_count") == 11
    assert after[("tfbatch_queue_depth", None)] == 0
    # Every Prometheus bucket edge is a batcher bucket edge: cumulative counts agree exactly.
    for metric, histogram in (
        ("tfbatch_request_latency_seconds", "end_to_end"),
        ("tfbatch_queue_wait_seconds", "queue_wait"),
    ):
        buckets = stats["histograms"][histogram]["buckets"]
        for edge in LATENCY_BUCKETS:
            below = sum(n for i, n in buckets.items() if LATENCY_BOUNDS[int(i)] <= edge) if buckets else 0
            assert delta(f"{metric}_bucket", edge) == below, (metric, edge)
        assert delta(f"{metric}_count") == 100
