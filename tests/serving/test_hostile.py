"""Hostile structure and non-finite numbers, on every door (issue 9 defects 2 and 10).

Structure nested ~1,000 levels deep (under orjson's own limit of 1,024) used to reach a
``RecursionError`` (HTTP 500, WebSocket ``model_error`` without the id) and log a
traceback; a binary header whose ``dtype`` is a list raised ``TypeError``. Non-finite
numbers: a ``NaN`` in a request was "not valid JSON" and a non-finite output was written
as ``null``. TF Serving accepts and writes ``NaN``, ``Infinity`` and ``-Infinity``.
"""

from __future__ import annotations

import json
import logging
import struct

import numpy as np
import pytest
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from demo_project.asgi import application
from tfbatch_django.serving import codec

from .doors import DOORS, call

MODELS = {"double": {"RUNNER": "tests.fakes.double_runner", "MAX_BATCH_SIZE": 8}}
SETTINGS = {"MODELS": MODELS, "PERMISSION": "any"}
DEPTH = 1000
DEEP_LIST = b"[" * DEPTH + b"1" + b"]" * DEPTH
DEEP_OBJECT = b'{"a":' * DEPTH + b"1" + b"}" * DEPTH
DEEP_B64 = b"[" * DEPTH + b'{"b64": "AA=="}' + b"]" * DEPTH

pytestmark = [
    pytest.mark.urls("tests.serving.urls"),
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),  # 3e38 * 2 in float32
]


@pytest.fixture(autouse=True)
def serving_settings(caplog):
    with override_settings(TFBATCH=SETTINGS), caplog.at_level(logging.ERROR, logger="tfbatch_django"):
        yield
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []  # no traceback logged


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize(
    "body",
    [b'{"instances": ' + DEEP_LIST + b"}", b'{"inputs": ' + DEEP_OBJECT + b"}", b'{"inputs": ' + DEEP_B64 + b"}"],
    ids=["list", "object", "b64"],
)
async def test_deep_structure_is_a_400(door, body):
    reply = await call(door, "POST", "v1/models/double:predict", body)
    assert reply.status == 400, reply.body
    assert "nested too deeply" in reply.json()["error"] or "rectangular" in reply.json()["error"]


@pytest.mark.parametrize("door", DOORS)
async def test_non_finite_numbers_in_and_out_as_tf_serving(door):
    body = b'{"instances": [[NaN, Infinity, -Infinity], [1.5, 3e38, -3e38]]}'
    reply = await call(door, "POST", "v1/models/double:predict", body)
    # float32 overflow (3e38 * 2) is infinite too, and written so, never as null.
    assert (reply.status, reply.body) == (200, b'{"predictions":[[NaN,Infinity,-Infinity],[3.0,Infinity,-Infinity]]}')
    columnar = await call(door, "POST", "v1/models/double:predict", b'{"inputs": [[NaN, 1, 2]]}')
    assert columnar.body == b'{"outputs":[[NaN,2.0,4.0]]}'


@pytest.mark.parametrize("door", DOORS)
async def test_invalid_json_stays_invalid(door):
    reply = await call(door, "POST", "v1/models/double:predict", b'{"instances": [[NaN, nan, 1]]}')
    assert reply.status == 400
    assert "not valid JSON" in reply.json()["error"]


async def connect():
    ws = WebsocketCommunicator(application, "/ws/tfbatch/", headers=[(b"origin", b"http://127.0.0.1:8000")])
    assert (await ws.connect(timeout=5))[0]
    return ws


async def ask(ws, text=None, data=None):
    await ws.send_to(text_data=text, bytes_data=data)
    return json.loads(await ws.receive_from(timeout=10))


async def test_websocket_deep_structure_is_bad_request_with_the_id():
    ws = await connect()
    for inputs in (DEEP_LIST, DEEP_OBJECT, DEEP_B64):
        reply = await ask(ws, '{"id": 7, "model": "double", "inputs": ' + inputs.decode() + "}")
        assert reply["id"] == 7
        assert reply["error"]["code"] in ("bad_request", "invalid_input"), reply
    await ws.disconnect()


@pytest.mark.parametrize("dtype", [["float32"], {"a": 1}, 3, None])
async def test_websocket_binary_dtype_of_the_wrong_type_is_bad_request(dtype):
    ws = await connect()
    header = json.dumps({"id": "b", "model": "double", "inputs": {"x": {"dtype": dtype, "shape": [1, 3]}}}).encode()
    reply = await ask(ws, data=struct.pack(">I", len(header)) + header + bytes(12))
    assert reply["id"] == "b"
    assert reply["error"]["code"] == "bad_request"
    assert "'dtype' must be one of" in reply["error"]["message"]
    await ws.disconnect()


async def test_websocket_json_non_finite_numbers_in_and_out():
    ws = await connect()
    reply = await ask(ws, '{"id": 1, "model": "double", "inputs": [[NaN, Infinity, -Infinity]]}')
    assert np.isnan(reply["outputs"][0][0]) and reply["outputs"][0][1:] == [np.inf, -np.inf]
    await ws.send_to(text_data='{"id": 2, "model": "double", "inputs": [[NaN, Infinity, 3e38]]}')
    raw = await ws.receive_from(timeout=10)
    assert raw.startswith('{"id":2,"outputs":[[NaN,Infinity,Infinity]]')
    await ws.disconnect()


def test_codec_writes_each_literal_in_place_in_every_float_dtype():
    for dtype in (np.float16, np.float32, np.float64):
        array = np.array([[np.nan, 0.5], [np.inf, -np.inf]], dtype=dtype)
        assert codec.dumps({"y": array}) == b'{"y":[[NaN,0.5],[Infinity,-Infinity]]}'
        assert codec.dumps({"y": array.T}) == b'{"y":[[NaN,Infinity],[0.5,-Infinity]]}'  # not C-contiguous
    assert codec.dumps([np.float32("nan"), float("-inf"), 1.0]) == b"[NaN,-Infinity,1.0]"
    assert codec.dumps({"y": np.array([0.1], np.float32)}) == b'{"y":[0.1]}'  # finite: orjson's shortest form
    assert codec.loads(b"[NaN, -Infinity]")[1] == -np.inf
