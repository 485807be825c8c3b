"""The dashboard's data: sums over live processes, statuses, and processes dropping out.

Two "processes" here are two publishers of this test process, publishing before and
after the registry is rebuilt (so each has counters of its own).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from tfbatch_django import predict_sync
from tfbatch_django.monitoring.aggregate import dashboard_data
from tfbatch_django.monitoring.figures import COUNTERS
from tfbatch_django.monitoring.publisher import Publisher
from tfbatch_django.registry import registry

from .workloads import GATED

pytestmark = pytest.mark.django_db

TWO_MODELS = {
    "MODELS": {
        "double": {"RUNNER": "tests.fakes.double_runner", "MAX_BATCH_SIZE": 8},
        "broken": {"RUNNER": "tests.fakes.broken_factory"},
    },
}


def traffic(n: int, rows: int = 1) -> None:
    for i in range(n):
        predict_sync("double", [[i, i, i]] * rows)


def test_two_processes_are_summed_and_listed():
    with override_settings(TFBATCH=TWO_MODELS):
        traffic(3)
        first = Publisher()
        first.publish()
        one = registry.get("double").snapshot()
    with override_settings(TFBATCH=TWO_MODELS):  # a new registry: the second process
        traffic(5, rows=2)
        second = Publisher()
        second.publish()
        two = registry.get("double").snapshot()
        data = dashboard_data()
    double = data["models"]["double"]
    for counter in COUNTERS:
        assert double[counter] == one[counter] + two[counter], counter
    assert (double["requests"], double["rows"], double["processes"]) == (8, 13, 2)
    assert double["batch_size_histogram"] == {"1": 3, "2": 5}
    assert double["status"] == "ready"
    assert {p["key"]: p["models"]["double"]["requests"] for p in data["processes"]} == {
        first.identity.key: 3,
        second.identity.key: 5,
    }


def test_statuses_errors_and_settings_come_through():
    with override_settings(TFBATCH=TWO_MODELS):
        Publisher().publish()  # nothing loaded yet
        traffic(1)
        with pytest.raises(Exception, match="weights file is corrupt"):
            predict_sync("broken", [[1, 2]])
        Publisher().publish()
        data = dashboard_data()
    double, broken = data["models"]["double"], data["models"]["broken"]
    assert (double["status"], double["statuses"]) == ("mixed", {"not_loaded": 1, "ready": 1})
    assert double["device"] == "auto" and double["signature"] is None
    assert double["runner"]["runner"] == "callable"
    assert double["settings"]["MAX_BATCH_SIZE"] == 8
    assert broken["statuses"] == {"not_loaded": 1, "failed": 1}
    assert len(broken["error_messages"]) == 1 and "OSError: weights file is corrupt" in broken["error_messages"][0]


def test_models_nobody_publishes_are_listed_from_settings():
    with override_settings(TFBATCH=GATED):
        data = dashboard_data()
    gated = data["models"]["gated"]
    assert (gated["status"], gated["processes"], gated["requests"]) == ("no_data", 0, 0)
    assert gated["settings"]["MAX_BATCH_SIZE"] == 10
    assert data["processes"] == []


def test_a_silent_process_drops_out_after_stale_after_seconds():
    with override_settings(TFBATCH={**TWO_MODELS, "STATS_STALE_AFTER": 30}):
        traffic(2)
        p = Publisher()
        p.publish()
        now = timezone.now()
        assert [x["key"] for x in dashboard_data(now=now + timedelta(seconds=29))["processes"]] == [p.identity.key]
        later = dashboard_data(now=now + timedelta(seconds=31))
    assert later["processes"] == []
    assert later["models"]["double"]["requests"] == 0
    assert [(x["key"], x["stopped_at"]) for x in later["stopped_processes"]] == [(p.identity.key, None)]


def test_each_process_says_what_it_serves_and_the_dashboard_shows_it():
    from django.contrib.auth.models import User
    from django.test import Client
    from django.urls import reverse

    served = {"MODELS": {**TWO_MODELS["MODELS"], "double": {**TWO_MODELS["MODELS"]["double"], "WORKER": "gpu-0"}}}
    with override_settings(TFBATCH=served):
        registry.serve_worker("gpu-0")  # this "process" is the worker gpu-0: it batches "double" itself
        try:
            traffic(2)
            worker = Publisher()
            worker.publish()
        finally:
            registry.reset()
            registry.local_worker = None  # back to a web process
    with override_settings(TFBATCH=TWO_MODELS):  # a web process batching its own models
        traffic(1)
        web = Publisher()
        web.publish()
        data = dashboard_data()
        client = Client()
        client.force_login(User.objects.create_superuser("root"))
        page = client.get(reverse("admin:tfbatch_django_dashboard_live")).content.decode()
    serves = {p["key"]: p["serves"] for p in data["processes"]}
    assert serves[worker.identity.key] == {"worker": "gpu-0", "models": ["double"]}
    assert serves[web.identity.key] == {"worker": None, "models": ["broken", "double"]}
    assert 'data-figure="serves">worker &#x27;gpu-0&#x27;: double</span>' in page
    assert 'data-figure="serves">in process: broken, double</span>' in page
