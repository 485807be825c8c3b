"""History: chart series from per-process samples, retention, and surviving a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from tfbatch_django.batching.stats import BatcherStats
from tfbatch_django.models import PublishedProcess, StatsSample
from tfbatch_django.monitoring import store
from tfbatch_django.monitoring.figures import window
from tfbatch_django.monitoring.history import series

from .workloads import GATED

pytestmark = pytest.mark.django_db

#: The end of a 60 s bin (bins are aligned to the epoch), so samples land where intended.
NOW = datetime.fromtimestamp(60 * 29_000_000 + 59, UTC)


def save(identity: store.ProcessIdentity, seconds_ago: float, requests: int, seconds: float, latency: float) -> None:
    stats = BatcherStats(max_batch_size=8)
    stats.requests = requests
    for _ in range(requests):
        stats.record_request("ok", queue_wait=latency / 2, latency=latency)
    for _ in range(requests // 2):
        stats.record_batch(2, 2, latency / 2, 0, 0, queue_depth=0)
    data = window(stats.snapshot(queue_depth=0, in_flight_batches=0), None) | {"seconds": seconds, "queue_depth": 0}
    store.save_history(identity, NOW - timedelta(seconds=seconds_ago), {"gated": data})


def points(hours: float = 1, interval: float = 60) -> list[dict]:
    return series(["gated"], NOW, hours, interval)["models"]["gated"]


def test_processes_in_one_bin_add_up_and_percentiles_merge():
    a, b = store.ProcessIdentity(), store.ProcessIdentity()
    save(a, 10, requests=60, seconds=60, latency=0.001)
    save(b, 20, requests=120, seconds=60, latency=0.001)
    save(b, 30, requests=2, seconds=0.5, latency=0.300)  # a second, short sample of b in the same bin
    [point] = points()
    assert point["t"] == NOW.timestamp() + 1  # the bin's end
    assert point["requests_per_s"] == pytest.approx(1.0 + 122 / 60.5, abs=1e-3)
    assert point["mean_batch_size"] == 2.0
    assert point["p99_ms"] > 250  # 2 slow requests in 182: above the 99th percentile


def test_bins_without_samples_are_gaps_and_old_samples_are_outside_the_span():
    p = store.ProcessIdentity()
    save(p, 0, 60, 60, 0.01)
    save(p, 180, 60, 60, 0.01)
    save(p, 2 * 3600, 60, 60, 0.01)
    assert [pt["t"] for pt in points()] == [NOW.timestamp() + 1 - 180, NOW.timestamp() + 1]
    assert len(points(hours=6)) == 3


def test_long_spans_use_wider_bins():
    history = series(["gated"], NOW, 24, 60)
    assert history["bin_seconds"] == 24 * 3600 / 120


def test_prune_keeps_the_retention_and_deletes_the_rest():
    p = store.ProcessIdentity()
    save(p, 25 * 3600, 1, 60, 0.01)
    save(p, 23 * 3600, 1, 60, 0.01)
    store.save_live(p, NOW - timedelta(hours=25), {})
    fresh = store.ProcessIdentity()
    store.save_live(fresh, NOW, {})
    assert store.prune(NOW, retention_hours=24) == 2
    assert StatsSample.objects.count() == 1
    assert list(PublishedProcess.objects.values_list("key", flat=True)) == [fresh.key]


def test_history_survives_a_restart_on_the_page():
    """Nothing is publishing (every process restarted), yet the charts show the samples."""
    user = User.objects.create_superuser("root")
    p = store.ProcessIdentity()
    client = Client()
    client.force_login(user)
    with override_settings(TFBATCH=GATED):
        now = timezone.now()
        # Far apart: the 24-hour view cuts time into 12-minute bins aligned to the epoch,
        # so samples only minutes apart could share one, depending on the wall clock.
        for minutes in (600, 360, 120):
            stats = BatcherStats(max_batch_size=10)
            stats.requests = 10
            data = window(stats.snapshot(queue_depth=0, in_flight_batches=0), None) | {"seconds": 60.0}
            store.save_history(p, now - timedelta(minutes=minutes), {"gated": data})
        html = client.get(reverse("admin:tfbatch_django_dashboard_changelist") + "?hours=24").content.decode()
        body = client.get(reverse("admin:tfbatch_django_dashboard_data") + "?hours=24").json()
    assert body["processes"] == []
    assert len(body["history"]["models"]["gated"]) == 3
    assert 'class="tfb-line tfb-line-requests" d="M' not in html  # three isolated samples: dots
    assert html.count('class="tfb-dot tfb-line-requests"') == 3
