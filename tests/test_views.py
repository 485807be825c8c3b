"""What the Django views add to the shared REST protocol (the rest is in serving/test_tfserving.py)."""

from __future__ import annotations

import pytest
from django.test import AsyncClient, override_settings

SETTINGS = {"MODELS": {"double": {"RUNNER": "tests.fakes.double_runner"}}, "PERMISSION": "any"}

pytestmark = pytest.mark.urls("tests.serving.urls")


@pytest.mark.parametrize("prefix", ["/tfbatch/", "/sync/"])
async def test_djangos_own_body_limit_is_a_413_too(prefix):
    with override_settings(TFBATCH=SETTINGS, DATA_UPLOAD_MAX_MEMORY_SIZE=50):
        response = await AsyncClient().post(
            prefix + "v1/models/double:predict", {"instances": [[1, 2, 3]] * 10}, content_type="application/json"
        )
    assert response.status_code == 413
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in response.json()["error"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "path", ["/tfbatch/v1/models/double:predict", "/tfbatch/v1/models/double:regress", "/v2/models/double/infer"]
)
async def test_a_body_over_the_limit_without_content_length_is_a_413(path):
    """A chunked body declares no length: the view measures what it read, whatever the protocol."""
    from channels.testing import HttpCommunicator
    from django.core.asgi import get_asgi_application

    body = b'{"instances": [[1, 2, 3]], "padding": "' + b"x" * 200 + b'"}'
    with override_settings(TFBATCH={**SETTINGS, "MAX_REQUEST_BYTES": 100}):
        communicator = HttpCommunicator(
            get_asgi_application(),
            "POST",
            path,
            body=body,
            headers=[(b"content-type", b"application/json"), (b"host", b"testserver")],
        )
        response = await communicator.get_response(timeout=30)
    assert response["status"] == 413
    assert b"the request body has 241 bytes; the limit is 100" in response["body"]
