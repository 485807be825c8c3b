"""Both HTTP doors: a client that disconnects before its answer cancels its request, and
the batcher drops the request's rows before they are computed."""

from __future__ import annotations

from typing import Any

import pytest
from channels.routing import URLRouter
from channels.testing import ApplicationCommunicator
from django.core.asgi import get_asgi_application
from django.test import override_settings

from tfbatch_django import get_stats
from tfbatch_django.routing import http_urlpatterns

from .fakes import until

SETTINGS = {"MODELS": {"gated": {"RUNNER": "tests.serving.fakes.gated_runner", "WARMUP": False}}, "PERMISSION": "any"}


def fast_door() -> Any:
    return URLRouter(http_urlpatterns("tfbatch/"))  # without AuthMiddlewareStack: no database


@pytest.mark.urls("tests.serving.urls")
@pytest.mark.django_db(transaction=True)  # Django closes stale connections around each request
@pytest.mark.parametrize("door", [fast_door, get_asgi_application], ids=["fast door", "Django view"])
async def test_a_client_that_disconnects_cancels_its_queued_request(gate, door):
    path = "/tfbatch/v1/models/gated:predict"
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")],
    }
    with override_settings(TFBATCH=SETTINGS):
        app = door()
        first = ApplicationCommunicator(app, scope)
        gate.hold()
        await first.send_input({"type": "http.request", "body": b'{"instances": [[1, 1]]}'})
        await until(gate.entered.is_set, "the first request runs")
        gone = ApplicationCommunicator(app, scope)
        await gone.send_input({"type": "http.request", "body": b'{"instances": [[7, 7]]}'})
        await until(lambda: get_stats("gated")["gated"]["queue_depth"] == 1, "the second request queues")
        await gone.send_input({"type": "http.disconnect"})
        # It stops by itself (the test harness would otherwise cancel it on wait()).
        await until(gone.future.done, "the door stops serving the gone client")
        gate.release()
        start = await first.receive_output(timeout=5)
        assert start["status"] == 200
        await until(lambda: get_stats("gated")["gated"]["cancelled"] == 1, "the batcher drops the rows")
    assert [row.tolist() for batch in gate.batches for row in batch] == [[1.0, 1.0]]  # the 7s were never computed
