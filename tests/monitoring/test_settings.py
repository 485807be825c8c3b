"""The monitoring keys of settings.TFBATCH: defaults, checks E020-E024, never fatal."""

from __future__ import annotations

import sys

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from tfbatch_django import predict_sync
from tfbatch_django.checks import check_settings
from tfbatch_django.conf import MonitoringConfig, get_monitoring, parse

MODELS = {"MODELS": {"double": {"RUNNER": "tests.fakes.double_runner"}}}


def problems(**keys: object) -> list[tuple[str, str]]:
    return [(p.id, p.msg) for p in parse({**MODELS, **keys})[1]]


def test_defaults():
    config, found = parse(MODELS)
    assert found == []
    assert config.monitoring == MonitoringConfig(
        publish_interval=5.0,
        stale_after=20.0,
        history_interval=60.0,
        retention_hours=24.0,
        refresh_seconds=5.0,
        prometheus=False,
    )


@pytest.mark.parametrize(
    "key", ["STATS_PUBLISH_INTERVAL", "STATS_STALE_AFTER", "STATS_HISTORY_INTERVAL", "STATS_RETENTION_HOURS",
            "DASHBOARD_REFRESH_SECONDS"]
)  # fmt: skip
@pytest.mark.parametrize("value", [0, -1, "5", True])
def test_durations_must_be_positive_numbers(key, value):
    [(id_, msg)] = problems(**{key: value})
    assert id_ == "E020"
    assert key in msg


def test_publishing_can_be_turned_off():
    config, found = parse({**MODELS, "STATS_PUBLISH_INTERVAL": None})
    assert found == [] and config.monitoring.publish_interval is None


def test_stale_after_must_outlast_the_publish_interval():
    [(id_, msg)] = problems(STATS_PUBLISH_INTERVAL=10, STATS_STALE_AFTER=10)
    assert id_ == "E021" and "drop out between two snapshots" in msg
    assert parse({**MODELS, "STATS_PUBLISH_INTERVAL": 10, "STATS_STALE_AFTER": 10})[0].monitoring.stale_after == 30


def test_history_cannot_be_finer_than_publishing():
    [(id_, _)] = problems(STATS_PUBLISH_INTERVAL=10, STATS_HISTORY_INTERVAL=5, STATS_STALE_AFTER=30)
    assert id_ == "E022"


def test_prometheus_must_be_a_bool_and_installed(monkeypatch):
    assert [i for i, _ in problems(PROMETHEUS="yes")] == ["E023"]
    assert problems(PROMETHEUS=True) == []
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # what "not installed" looks like to imports
    [(id_, msg)] = problems(PROMETHEUS=True)
    assert id_ == "E024" and "not installed" in msg


def test_check_framework_reports_them_and_predictions_go_on():
    with override_settings(TFBATCH={**MODELS, "STATS_PUBLISH_INTERVAL": -5, "DASHBOARD_REFRESH_SECONDS": 0}):
        assert [m.id for m in check_settings()] == ["tfbatch_django.E020", "tfbatch_django.E020"]
        with pytest.raises(SystemCheckError, match=r"tfbatch_django\.E020"):
            call_command("check", "--tag", "tfbatch_django")  # Django 6's model checks query the database
        assert get_monitoring().publish_interval == 5.0  # the default stands in
        assert predict_sync("double", [[1, 2, 3]]).tolist() == [[2, 4, 6]]
