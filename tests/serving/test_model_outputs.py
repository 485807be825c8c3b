"""A model output no client can be sent (issue 9, defect 5) is the model's error on every door.

The batcher's output check classifies it (``ModelError``, counted under ``errors``, never
``completed``), so each door answers it as it answers any model failure: HTTP 500
``model_error`` with the reason, a WebSocket ``model_error`` echoing the id.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from demo_project.asgi import application
from tfbatch_django import CallableRunner, get_stats

from .doors import DOORS, call

MODELS = {
    "sets": {"RUNNER": "tests.serving.test_model_outputs.set_runner", "WARMUP": False},
    "objects": {"RUNNER": "tests.serving.test_model_outputs.object_runner", "WARMUP": False},
}
SETTINGS = {"MODELS": MODELS, "PERMISSION": "any"}
ORIGIN = (b"origin", b"http://127.0.0.1:8000")

pytestmark = [pytest.mark.urls("tests.serving.urls"), pytest.mark.django_db(transaction=True)]


def set_runner() -> CallableRunner:
    """Returns a Python set per row (an object array of sets)."""
    return CallableRunner(lambda x: np.array([{1, 2}] * len(x), dtype=object), inputs={"x": ("float32", (None, 2))})


def object_runner() -> CallableRunner:
    return CallableRunner(lambda x: np.array([object()] * len(x)), inputs={"x": ("float32", (None, 2))})


@pytest.fixture(autouse=True)
def serving_settings():
    with override_settings(TFBATCH=SETTINGS):
        yield


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("model", ["sets", "objects"])
async def test_rest_doors_answer_model_error(door, model):
    before = get_stats(model)[model]
    reply = await call(door, "POST", f"v1/models/{model}:predict", {"instances": [[1, 2]]})
    assert reply.status == 500
    assert "failed on this request" in reply.json()["error"]
    assert "object outputs must hold strings" in reply.json()["error"]
    after = get_stats(model)[model]
    assert after["errors"] == before.get("errors", 0) + 1
    assert after["completed"] == before.get("completed", 0)


async def test_websocket_answers_model_error_with_the_id():
    ws = WebsocketCommunicator(application, "/ws/tfbatch/", headers=[ORIGIN])
    connected, _ = await ws.connect(timeout=5)
    assert connected
    await ws.send_to(text_data=json.dumps({"id": "s1", "model": "sets", "inputs": [[1, 2]]}))
    answer = json.loads(await ws.receive_from(timeout=10))
    assert answer["id"] == "s1"
    assert answer["error"]["code"] == "model_error"
    assert "holds a set" in answer["error"]["message"]
    await ws.disconnect()
