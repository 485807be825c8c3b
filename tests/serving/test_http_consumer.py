"""What the fast door adds to the shared REST protocol: refusing big bodies as they arrive."""

from __future__ import annotations

import json

import pytest
from channels.testing import ApplicationCommunicator
from django.test import override_settings

from demo_project.asgi import application

SETTINGS = {"MODELS": {"double": {"RUNNER": "tests.fakes.double_runner"}}, "PERMISSION": "any"}

# The demo's AuthMiddlewareStack may touch the database in Django's executor thread.
pytestmark = pytest.mark.django_db(transaction=True)


def scope(headers=()):
    return {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "path": "/fast/v1/models/double:predict",
        "raw_path": b"/fast/v1/models/double:predict",
        "query_string": b"",
        "headers": list(headers),
    }


async def response_of(communicator):
    start = await communicator.receive_output(timeout=5)
    body = await communicator.receive_output(timeout=5)
    return start["status"], dict(start["headers"]), json.loads(body["body"])


async def test_a_chunked_body_over_the_limit_is_refused_without_waiting_for_the_rest():
    with override_settings(TFBATCH={**SETTINGS, "MAX_REQUEST_BYTES": 10}):
        communicator = ApplicationCommunicator(application, scope())
        await communicator.send_input({"type": "http.request", "body": b'{"instances": [', "more_body": True})
        status, headers, body = await response_of(communicator)  # the rest of the body never comes
    assert status == 413
    assert body == {"error": "the request body has 15 bytes; the limit is 10 (TFBATCH['MAX_REQUEST_BYTES'])"}
    assert headers[b"Content-Length"] == str(len(json.dumps(body, separators=(",", ":")))).encode()


async def test_a_declared_length_over_the_limit_is_refused_before_any_body():
    with override_settings(TFBATCH={**SETTINGS, "MAX_REQUEST_BYTES": 10}):
        communicator = ApplicationCommunicator(application, scope([(b"content-length", b"5000")]))
        await communicator.send_input({"type": "http.request", "body": b"", "more_body": True})
        status, _, body = await response_of(communicator)
    assert status == 413
    assert "5000 bytes" in body["error"]


async def test_a_body_in_several_chunks_is_joined():
    with override_settings(TFBATCH=SETTINGS):
        communicator = ApplicationCommunicator(application, scope())
        await communicator.send_input({"type": "http.request", "body": b'{"instances": [[1, ', "more_body": True})
        await communicator.send_input({"type": "http.request", "body": b"2, 3]]}", "more_body": False})
        status, _, body = await response_of(communicator)
    assert (status, body) == (200, {"predictions": [[2.0, 4.0, 6.0]]})
