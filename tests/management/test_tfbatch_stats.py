"""``manage.py tfbatch_stats``: the dashboard's numbers as tables, or its JSON."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from tests.monitoring.workloads import GATED, known_workload
from tfbatch_django import get_stats
from tfbatch_django.monitoring.aggregate import dashboard_data
from tfbatch_django.monitoring.publisher import Publisher

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def gated() -> Iterator[None]:
    with override_settings(TFBATCH=GATED):
        yield


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("tfbatch_stats", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_json_is_the_dashboards_and_equals_the_batchers_counters():
    known_workload()
    Publisher().publish()
    expected = get_stats()["gated"]
    printed = json.loads(run("--json")[0])
    dashboard = dashboard_data()
    for key in ("requests", "batches", "rows", "batch_size_histogram", "latency_ms", "padding_share"):
        assert printed["models"]["gated"][key] == dashboard["models"]["gated"][key] == expected[key], key
    assert printed.keys() == dashboard.keys()


def test_table_shows_models_processes_and_batch_sizes():
    known_workload()
    p = Publisher()
    p.publish()
    out, err = run()
    assert err == ""
    lines = out.splitlines()
    header = lines[0].split()
    row = next(line for line in lines if line.startswith("gated ")).split()
    assert dict(zip(header, row, strict=False))["requests"] == "100"
    fields = dict(
        zip(["model", "status", "procs", "req/s", "rows/s", "requests", "completed", "batches"], row, strict=False)
    )
    assert (fields["status"], fields["procs"], fields["completed"], fields["batches"]) == ("ready", "1", "100", "11")
    assert "gated batches by size (rows: batches): 1: 1, 9: 1, 10: 9" in out
    assert any(line.startswith(str(p.identity.pid)) for line in lines)


def test_no_live_process_is_said_on_stderr():
    out, err = run()
    assert "No serving process published" in err
    assert "no_data" in out


def test_unknown_model_is_an_error():
    with pytest.raises(CommandError, match="unknown model"):
        run("nope")
