"""The same request answered the same way on every door (issue 11).

Each TensorFlow Serving and Open Inference Protocol request below goes through the async
Django views, the sync Django views and the Channels fast door, and each door's answer
(status, body byte for byte, the headers a client reads) must equal the others'. The
WebSocket has a protocol of its own: asked for the same rows of the same model, its
outputs must be the numbers the HTTP doors answered.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from channels.testing import WebsocketCommunicator

from demo_project.asgi import application
from tests.tf_models import TFSERVING

from .doors import DOORS, PREFIX, V2_PREFIX, Reply, call

MODELS = {
    "half_plus_two": {"PATH": TFSERVING / "saved_model_half_plus_two_cpu"},
    "pair": {"RUNNER": "tests.serving.fakes.pair_runner"},
    "text": {"RUNNER": "tests.serving.fakes.text_runner"},
}
SETTINGS = {"MODELS": MODELS, "PERMISSION": "any", "STATS_PUBLISH_INTERVAL": None}

pytestmark = [
    pytest.mark.urls("tests.serving.urls"),
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("module_settings"),
]

#: What a client reads besides the body; the X-TFBatch-* headers say how each request's
#: own batch went, so they differ from request to request by design.
READ = ("content-type", "content-encoding", "inference-header-content-length", "allow", "retry-after")


def x_input(values: list[float], **parameters: object) -> dict:
    tensor: dict = {"name": "x", "shape": [len(values), 1], "datatype": "FP32", "data": values}
    return {"inputs": [tensor], **({"parameters": parameters} if parameters else {})}


TF_SERVING = [
    ("POST", "v1/models/half_plus_two:predict", {"instances": [[1.0], [2.0], [5.0]]}),
    ("POST", "v1/models/half_plus_two/versions/123:predict", {"inputs": [[3.0], [4.0]]}),
    ("POST", "v1/models/pair:predict", {"instances": [{"a": [1, 2], "b": [3, 4]}, {"a": [5, 6], "b": [7, 8]}]}),
    ("POST", "v1/models/text:predict", {"instances": [{"b64": "aGk="}, "ok"]}),
    ("GET", "v1/models/half_plus_two", None),
    ("GET", "v1/models/half_plus_two/metadata", None),
    ("POST", "v1/models/half_plus_two:predict", b"{not json"),
    ("POST", "v1/models/half_plus_two:predict", {"instances": [["a"]]}),
    ("POST", "v1/models/nope:predict", {"instances": [[1.0]]}),
    ("GET", "v1/models/half_plus_two:predict", None),
    ("GET", "v1/nowhere", None),
]

KSERVE_V2 = [
    ("POST", "v2/models/half_plus_two/infer", {"id": "same", **x_input([1.0, 2.0, 5.0])}),
    ("POST", "v2/models/half_plus_two/versions/123/infer", x_input([0.5], binary_data_output=True)),
    ("GET", "v2/models/half_plus_two", None),
    ("GET", "v2/models/half_plus_two/ready", None),
    ("GET", "v2", None),
    ("POST", "v2/models/half_plus_two/infer", {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP8"}]}),
    ("POST", "v2/models/half_plus_two/versions/7/infer", x_input([1.0])),
    ("POST", "v2/models/nope/infer", x_input([1.0])),
    ("GET", "v2/models/half_plus_two/infer", None),
]


async def every_door(method: str, path: str, body: object, prefixes: dict[str, str]) -> dict[str, Reply]:
    return {door: await call(door, method, path, body, prefixes=prefixes) for door in DOORS}


def answer(reply: Reply) -> tuple[int, bytes, dict[str, str]]:
    return reply.status, reply.body, {name: reply.headers[name] for name in READ if name in reply.headers}


def assert_the_same(replies: dict[str, Reply]) -> None:
    first = answer(replies[DOORS[0]])
    assert {door: answer(reply) for door, reply in replies.items()} == {door: first for door in replies}


@pytest.mark.parametrize(("method", "path", "body"), TF_SERVING, ids=[f"{m} {p}" for m, p, _ in TF_SERVING])
async def test_a_tf_serving_request_is_answered_the_same_on_every_door(method, path, body):
    replies = await every_door(method, path, body, PREFIX)
    assert_the_same(replies)


@pytest.mark.parametrize(("method", "path", "body"), KSERVE_V2, ids=[f"{m} {p}" for m, p, _ in KSERVE_V2])
async def test_a_kserve_v2_request_is_answered_the_same_on_every_door(method, path, body):
    replies = await every_door(method, path, body, V2_PREFIX)
    assert_the_same(replies)


async def test_the_websocket_answers_the_same_numbers_as_the_http_doors():
    rows = [[1.0], [2.0], [5.0]]
    tf_serving = await every_door("POST", "v1/models/half_plus_two:predict", {"instances": rows}, PREFIX)
    v2 = await every_door("POST", "v2/models/half_plus_two/infer", x_input([1.0, 2.0, 5.0]), V2_PREFIX)
    assert_the_same(tf_serving)
    assert_the_same(v2)
    ws = WebsocketCommunicator(application, "/ws/tfbatch/", headers=[(b"origin", b"http://127.0.0.1:8000")])
    assert (await ws.connect(timeout=5))[0]
    try:
        await ws.send_to(text_data=json.dumps({"id": 1, "model": "half_plus_two", "inputs": rows}))
        text = json.loads(await ws.receive_from(timeout=30))
        header = json.dumps({"id": 2, "model": "half_plus_two", "inputs": {"dtype": "float32", "shape": [3, 1]}})
        tensor = np.array(rows, dtype=np.float32).tobytes()
        await ws.send_to(bytes_data=len(header).to_bytes(4, "big") + header.encode() + tensor)
        binary = await ws.receive_from(timeout=30)
    finally:
        await ws.disconnect()
    length = int.from_bytes(binary[:4], "big")
    binary_outputs = np.frombuffer(binary[4 + length :], dtype="<f4").reshape(3, 1)
    predictions = tf_serving[DOORS[0]].json()["predictions"]
    assert predictions == [[2.5], [3.0], [4.5]]
    assert text["outputs"] == predictions
    assert binary_outputs.tolist() == predictions
    assert [v for output in v2[DOORS[0]].json()["outputs"] for v in output["data"]] == [2.5, 3.0, 4.5]
