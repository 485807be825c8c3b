"""The Open Inference Protocol's errors through every front door: each status, with the
message saying what was wrong (the endpoints themselves: ``test_kserve_v2.py``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.test import override_settings

from .doors import EVERY_DOOR
from .fakes import until
from .test_kserve_v2 import GATED, SETTINGS, binary_body, gated_input, infer_x, v2

pytestmark = EVERY_DOOR


BAD_REQUESTS = [
    (b"not json", None, "the inference request is not valid JSON"),
    ([1], None, "the inference request must be a JSON object with 'inputs'"),
    ({"inputs": []}, None, "'inputs' must be a non-empty list"),
    ({"id": 3, **infer_x([1.0])}, None, "'id' must be a string"),
    ({"inputs": [{"name": "x", "shape": [1, 1], "data": [1]}]}, None, "input 'x' has no 'datatype'"),
    ({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP8", "data": [1]}]}, None, "unknown datatype 'FP8'"),
    ({"inputs": [{"name": "x", "shape": [2, 1], "datatype": "FP32", "data": [1]}]}, None, "has 1 elements"),
    ({"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}]}, None, "non-negative integers"),
    ({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32"}]}, None, "neither 'data' nor"),
    ({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": ["a"]}]}, None, "must be numbers"),
    ({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "INT32", "data": [1.5]}]}, None, "must be integers"),
    ({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "INT8", "data": [300]}]}, None, "does not fit INT8"),
    ({"inputs": [{"name": "x", "shape": [1], "datatype": "BOOL", "data": [1]}]}, None, "true or false"),
    ({**infer_x([1.0]), "outputs": [{"name": "z"}]}, None, "model 'half_plus_two' has no output 'z'"),
    ({**infer_x([1.0]), "outputs": "y"}, None, "'outputs' must be a list"),
    ({**infer_x([1.0]), "parameters": {"binary_data_output": "yes"}}, None, "must be true or false"),
    (infer_x([1.0]), "many", "Inference-Header-Content-Length must be an integer"),
    (infer_x([1.0]), "100000", "Inference-Header-Content-Length is 100000"),
]


@pytest.mark.parametrize(("body", "header_length", "error"), BAD_REQUESTS)
async def test_bad_requests_are_400_saying_what(door, body, header_length, error):
    headers = None if header_length is None else {"Inference-Header-Content-Length": header_length}
    reply = await v2(door, "POST", "v2/models/half_plus_two/infer", body, headers)
    assert reply.status == 400
    assert error in reply.json()["error"]


async def test_binary_sizes_that_do_not_add_up_are_400(door):
    x = np.ones((2, 1), np.float32).tobytes()
    cases = [
        (8, x + b"extra", "the inputs' binary_data_size parameters account for 8"),
        (16, x, "only 8 bytes of binary data remain"),
        (4, x[:4], "4 bytes of binary data for 2 FP32 elements"),
    ]
    for size, blob, error in cases:
        header = {
            "inputs": [{"name": "x", "shape": [2, 1], "datatype": "FP32", "parameters": {"binary_data_size": size}}]
        }
        body, headers = binary_body(header, blob)
        reply = await v2(door, "POST", "v2/models/half_plus_two/infer", body, headers)
        assert (reply.status, error in reply.json()["error"]) == (400, True), reply.json()
    both = {
        "inputs": [
            {"name": "x", "shape": [2, 1], "datatype": "FP32", "data": [1, 2], "parameters": {"binary_data_size": 8}}
        ]
    }
    body, headers = binary_body(both, x)
    assert (
        "has both 'data' and a binary_data_size"
        in (await v2(door, "POST", "v2/models/half_plus_two/infer", body, headers)).json()["error"]
    )


async def test_inputs_the_model_does_not_take_are_400(door):
    body = {"inputs": [{"name": "z", "shape": [1, 1], "datatype": "FP32", "data": [1]}]}
    reply = await v2(door, "POST", "v2/models/half_plus_two/infer", body)
    assert reply.status == 400
    assert "'x'" in reply.json()["error"]


async def test_unknown_models_versions_and_endpoints_are_404(door):
    reply = await v2(door, "GET", "v2/models/nope")
    assert (reply.status, "no model named 'nope'" in reply.json()["error"]) == (404, True)
    assert (await v2(door, "POST", "v2/models/nope/infer", infer_x([1.0]))).status == 404
    assert (await v2(door, "GET", "v2/models/nope/ready")).status == 404
    reply = await v2(door, "GET", "v2/models/half_plus_two/versions/7")
    assert (reply.status, reply.json()) == (
        404,
        {"error": "model 'half_plus_two' has no version 7; it serves version 123"},
    )
    assert (await v2(door, "POST", "v2/models/half_plus_two/versions/7/infer", infer_x([1.0]))).status == 404
    for path in ["v2/nothing", "v2/models", "v2/models/half_plus_two/explain", "v2/health", "v2/repository/index"]:
        reply = await v2(door, "GET", path)
        assert (reply.status, reply.headers["content-type"]) == (404, "application/json"), path
        assert reply.json()["error"].startswith(f"no endpoint GET /{path}")


async def test_wrong_methods_are_405_with_allow(door):
    for method, path, allow in [
        ("GET", "v2/models/half_plus_two/infer", "POST"),
        ("POST", "v2/models/half_plus_two", "GET, HEAD"),
        ("POST", "v2/models/half_plus_two/ready", "GET, HEAD"),
        ("DELETE", "v2/health/ready", "GET, HEAD"),
        ("PUT", "v2", "GET, HEAD"),
    ]:
        reply = await v2(door, method, path)
        assert (reply.status, reply.headers["allow"]) == (405, allow), path
        assert "error" in reply.json()


async def test_a_model_that_fails_is_500_and_others_keep_serving(door):
    body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}
    reply = await v2(door, "POST", "v2/models/failing/infer", body)
    assert reply.status == 500
    assert "this model always fails" in reply.json()["error"]
    reply = await v2(door, "POST", "v2/models/half_plus_three/infer", infer_x([1.0]))
    assert (reply.status, "could not load the SavedModel" in reply.json()["error"]) == (500, True)
    assert (await v2(door, "POST", "v2/models/half_plus_two/infer", infer_x([1.0]))).status == 200


async def test_too_large_is_413(door):
    with override_settings(TFBATCH={**SETTINGS, "MAX_REQUEST_BYTES": 100}):
        reply = await v2(door, "POST", "v2/models/double/infer", infer_x([1.0] * 30))
    assert reply.status == 413
    assert "TFBATCH['MAX_REQUEST_BYTES']" in reply.json()["error"]


async def test_bodies_in_encodings_it_cannot_read_are_400_and_bombs_413(door):
    import gzip

    body = gzip.compress(json.dumps(infer_x([1.0])).encode())
    for encoding, data, error in [
        ("br", body, "Content-Encoding 'br' is not supported; send gzip, deflate or none"),
        ("gzip", b"not gzip at all", "the body is not valid gzip data"),
        ("gzip", body[:-12], "the gzip body is truncated"),
    ]:
        reply = await v2(door, "POST", "v2/models/half_plus_two/infer", data, {"Content-Encoding": encoding})
        assert (reply.status, error in reply.json()["error"]) == (400, True), reply.json()
    bomb = gzip.compress(b" " * 1_000_000)  # 1 MB of spaces in about 1 KB
    with override_settings(TFBATCH={**SETTINGS, "MAX_REQUEST_BYTES": 100_000}):
        reply = await v2(door, "POST", "v2/models/half_plus_two/infer", bomb, {"Content-Encoding": "gzip"})
    assert (reply.status, reply.json()) == (
        413,
        {
            "error": "the decompressed request body has at least 100001 bytes; "
            "the limit is 100000 (TFBATCH['MAX_REQUEST_BYTES'])"
        },
    )


async def test_overloaded_is_503_with_retry_after(door, gate):
    import asyncio

    from tfbatch_django import get_stats

    with override_settings(TFBATCH=GATED):
        gate.hold()
        running = asyncio.create_task(v2(door, "POST", "v2/models/gated/infer", gated_input(1)))
        await until(gate.entered.is_set, "the first request runs")
        queued = [asyncio.create_task(v2(door, "POST", "v2/models/gated/infer", gated_input(i))) for i in (2, 3)]
        await until(lambda: get_stats("gated")["gated"]["queue_depth"] == 2, "the queue is full")
        refused = await v2(door, "POST", "v2/models/gated/infer", gated_input(4))
        gate.release()
        answers = [await running, *[await q for q in queued]]
    assert (refused.status, refused.headers["retry-after"]) == (503, "1")
    assert "overloaded" in refused.json()["error"]
    assert [a.status for a in answers] == [200, 200, 200]


async def test_timeout_is_504(door, gate):
    with override_settings(TFBATCH=GATED):
        gate.hold()
        reply = await v2(door, "POST", "v2/models/gated_timeout/infer", gated_input(1))
        gate.release()
    assert reply.status == 504
    assert "gated_timeout" in reply.json()["error"]
