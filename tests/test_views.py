"""What the Django views add to the shared REST protocol (the rest is in serving/test_rest.py)."""

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
