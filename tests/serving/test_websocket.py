"""The WebSocket consumer, through the demo project's full ASGI application (origin
check, session authentication, routing): every error code, requests in flight
together, the per-socket cap, and cancellation on disconnect."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client, override_settings

from demo_project.asgi import application
from tfbatch_django import get_stats

from .fakes import until

MODELS = {
    "double": {"RUNNER": "tests.fakes.double_runner", "MAX_BATCH_SIZE": 8},
    "failing": {"RUNNER": "tests.fakes.failing_runner", "WARMUP": False},
    "gated": {"RUNNER": "tests.serving.fakes.gated_runner", "MAX_BATCH_SIZE": 8, "WARMUP": False},
}
SETTINGS = {"MODELS": MODELS, "PERMISSION": "any"}
ORIGIN = (b"origin", b"http://127.0.0.1:8000")

# The demo's AuthMiddlewareStack looks the user up in Django's executor thread, which may
# touch the database (whatever earlier tests left open there): allow it everywhere here.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def serving_settings():
    with override_settings(TFBATCH=SETTINGS):
        yield


async def connect(*headers):
    communicator = WebsocketCommunicator(application, "/ws/tfbatch/", headers=[ORIGIN, *headers])
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return communicator


async def ask(ws, frame):
    await ws.send_to(text_data=frame if isinstance(frame, str) else json.dumps(frame))
    return json.loads(await ws.receive_from(timeout=10))


async def assert_still_usable(ws):
    assert await ask(ws, {"id": "ok", "model": "double", "inputs": [[1, 2, 3]]}) == {
        "id": "ok",
        "outputs": [[2.0, 4.0, 6.0]],
        "batch": {"size": 1, "queue_ms": pytest.approx(0, abs=1e4), "run_ms": pytest.approx(0, abs=1e4)},
    }


async def test_a_prediction():
    ws = await connect()
    answer = await ask(ws, {"id": 1, "model": "double", "inputs": {"x": [[1, 1, 1], [2, 2, 2]]}})
    assert answer["id"] == 1
    assert answer["outputs"] == [[2, 2, 2], [4, 4, 4]]
    assert set(answer["batch"]) == {"size", "queue_ms", "run_ms"}
    assert answer["batch"]["size"] >= 2
    await ws.disconnect()


@pytest.mark.parametrize(
    ("frame", "code", "message"),
    [
        ("{not json", "bad_request", "the frame is not valid JSON"),
        ({"id": 1, "inputs": [[1, 2, 3]]}, "bad_request", "'model' is missing"),
        ({"id": 1, "model": "double", "inputs": 5}, "bad_request", "'inputs' must be a nested list"),
        ({"id": 1, "model": "nope", "inputs": [[1, 2, 3]]}, "model_not_found", "no model named 'nope'"),
        ({"id": 1, "model": "double", "inputs": [[1, 2]]}, "invalid_input", "input 'x' has shape (1, 2)"),
        ({"id": 1, "model": "double", "inputs": [[1, 2, 3]] * 100}, "too_large", "the limit is 1000"),
        ({"id": 1, "model": "failing", "inputs": [[1, 2]]}, "model_error", "this model always fails"),
    ],
)
async def test_errors_leave_the_socket_open(frame, code, message):
    with override_settings(TFBATCH={**SETTINGS, "MAX_REQUEST_BYTES": 1000}):
        ws = await connect()
        reply = await ask(ws, frame)
        assert reply["error"]["code"] == code
        assert message in reply["error"]["message"]
        assert reply["id"] == (None if code in ("too_large",) or "not json" in str(frame) else 1)
        await assert_still_usable(ws)
        await ws.disconnect()


def binary_frame(header: dict, *tensors: np.ndarray) -> bytes:
    head = json.dumps(header).encode()
    return struct.pack(">I", len(head)) + head + b"".join(t.astype("<f4").tobytes() for t in tensors)


async def test_binary_frames_carry_raw_tensors_both_ways():
    ws = await connect()
    x = np.array([[1.5, 2, 3], [4, 5, 6]], np.float32)
    await ws.send_to(
        bytes_data=binary_frame({"id": "b", "model": "double", "inputs": {"dtype": "float32", "shape": [2, 3]}}, x)
    )
    frame = await ws.receive_from(timeout=10)
    assert isinstance(frame, bytes)
    (length,) = struct.unpack_from(">I", frame)
    header = json.loads(frame[4 : 4 + length])
    assert (header["id"], header["outputs"]) == ("b", {"y": {"dtype": "float32", "shape": [2, 3]}})
    assert header["batch"]["size"] == 2
    np.testing.assert_array_equal(np.frombuffer(frame[4 + length :], "<f4").reshape(2, 3), x * 2)
    await ws.disconnect()


async def test_binary_junk_gets_an_error_frame():
    ws = await connect()
    await ws.send_to(bytes_data=b"\x00\xff junk")
    reply = json.loads(await ws.receive_from(timeout=5))
    assert reply["id"] is None
    assert reply["error"]["code"] == "bad_request"
    assert "runs past the end of the 7-byte frame" in reply["error"]["message"]
    await assert_still_usable(ws)
    await ws.disconnect()


async def test_a_binary_frame_with_an_impossible_shape_costs_one_frame_not_the_socket():
    ws = await connect()
    header = json.dumps({"id": "deep", "model": "double", "inputs": {"dtype": "float32", "shape": [0] * 70}}).encode()
    await ws.send_to(bytes_data=struct.pack(">I", len(header)) + header)
    reply = json.loads(await ws.receive_from(timeout=5))
    assert (reply["id"], reply["error"]["code"]) == ("deep", "bad_request")
    await assert_still_usable(ws)
    await ws.disconnect()


async def test_timeout(gate):
    gate.hold()
    ws = await connect()
    reply = await ask(ws, {"id": "t", "model": "gated", "inputs": [[1, 1]], "timeout_ms": 50})
    gate.release()
    assert reply["id"] == "t"
    assert reply["error"]["code"] == "timeout"
    await assert_still_usable(ws)
    await ws.disconnect()


async def test_many_requests_in_flight_on_one_socket_batch_together(gate):
    gate.hold()
    ws = await connect()
    await ws.send_to(text_data=json.dumps({"id": 0, "model": "gated", "inputs": [[0, 0]]}))
    await until(gate.entered.is_set, "the first request runs")
    for i in range(1, 6):
        await ws.send_to(text_data=json.dumps({"id": i, "model": "gated", "inputs": [[i, i]]}))
    await until(lambda: get_stats("gated")["gated"]["queue_depth"] == 5, "five requests queue behind it")
    gate.release()
    answers = {a["id"]: a for a in [json.loads(await ws.receive_from(timeout=10)) for _ in range(6)]}
    assert {i: a["outputs"]["y"] for i, a in answers.items()} == {i: [[2 * i, 2 * i]] for i in range(6)}
    assert {i: a["batch"]["size"] for i, a in answers.items()} == {0: 1, 1: 5, 2: 5, 3: 5, 4: 5, 5: 5}
    assert gate.sizes == [1, 5]
    await ws.disconnect()


async def test_requests_over_the_per_socket_cap_are_overloaded(gate):
    gate.hold()
    with override_settings(TFBATCH={**SETTINGS, "MAX_IN_FLIGHT_PER_SOCKET": 2}):
        ws = await connect()
        for i in range(2):
            await ws.send_to(text_data=json.dumps({"id": i, "model": "gated", "inputs": [[i, i]]}))
        refused = await ask(ws, {"id": 2, "model": "gated", "inputs": [[2, 2]]})
        gate.release()
        answered = sorted([json.loads(await ws.receive_from(timeout=10))["id"] for _ in range(2)])
        await assert_still_usable(ws)
        await ws.disconnect()
    assert refused["id"] == 2
    assert refused["error"]["code"] == "overloaded"
    assert "already has 2 requests in flight" in refused["error"]["message"]
    assert answered == [0, 1]


async def test_requests_over_the_per_socket_byte_budget_are_overloaded(gate):
    """Issue 9 defect 9: bytes held for one socket are bounded, not only its request count."""
    gate.hold()
    big = json.dumps({"id": 0, "model": "gated", "inputs": [[1.5, 2.5]] * 40})  # ~520 characters
    with override_settings(TFBATCH={**SETTINGS, "MAX_REQUEST_BYTES": 1000, "MAX_BYTES_PER_SOCKET": 1200}):
        ws = await connect()
        await ws.send_to(text_data=big)
        await ws.send_to(text_data=big.replace('"id": 0', '"id": 1'))
        refused = await ask(ws, json.loads(big.replace('"id": 0', '"id": 2')))
        small = {"id": 3, "model": "gated", "inputs": [[3, 3]]}  # fits in what is left
        await ws.send_to(text_data=json.dumps(small))
        gate.release()
        answered = sorted([json.loads(await ws.receive_from(timeout=10))["id"] for _ in range(3)])
        again = await ask(ws, json.loads(big.replace('"id": 0', '"id": 4')))  # the budget is given back
        await ws.disconnect()
    assert (refused["id"], refused["error"]["code"]) == (2, "overloaded")
    assert f"holds {2 * len(big)} bytes" in refused["error"]["message"]
    assert "TFBATCH['MAX_BYTES_PER_SOCKET'] (1200)" in refused["error"]["message"]
    assert answered == [0, 1, 3]
    assert again["id"] == 4 and "outputs" in again


async def test_disconnect_cancels_queued_requests_before_they_are_computed(gate):
    gate.hold()
    ws = await connect()
    await ws.send_to(text_data=json.dumps({"id": 0, "model": "gated", "inputs": [[0, 0]]}))
    await until(gate.entered.is_set, "the first request runs")
    for i in (1, 2):
        await ws.send_to(text_data=json.dumps({"id": i, "model": "gated", "inputs": [[i, i]]}))
    await until(lambda: get_stats("gated")["gated"]["queue_depth"] == 2, "two requests queue")
    await ws.disconnect()
    gate.release()
    await until(lambda: get_stats("gated")["gated"]["cancelled"] >= 2, "the batcher drops the gone client's rows")
    await until(lambda: get_stats("gated")["gated"]["queue_depth"] == 0, "the queue empties")
    assert gate.sizes == [1]  # only the batch already running when the client left


async def test_origin_check_refuses_other_sites():
    communicator = WebsocketCommunicator(application, "/ws/tfbatch/", headers=[(b"origin", b"http://evil.example")])
    connected, _ = await communicator.connect(timeout=5)
    assert not connected
    communicator = WebsocketCommunicator(application, "/ws/tfbatch/")  # no Origin header at all
    connected, _ = await communicator.connect(timeout=5)
    assert not connected


async def test_forbidden_until_logged_in_under_the_library_default():
    with override_settings(TFBATCH={"MODELS": MODELS}):
        anonymous = await connect()
        reply = await ask(anonymous, {"id": 1, "model": "double", "inputs": [[1, 2, 3]]})
        assert reply == {
            "id": 1,
            "error": {
                "code": "forbidden",
                "message": "predicting with model 'double' requires an authenticated user "
                "(TFBATCH['PERMISSION'] = 'authenticated')",
            },
        }
        await anonymous.disconnect()

        cookie = await sync_to_async(logged_in_cookie)()
        user = await connect((b"cookie", cookie.encode()))
        reply = await ask(user, {"id": 2, "model": "double", "inputs": [[1, 2, 3]]})
        assert reply["outputs"] == [[2, 4, 6]]
        await user.disconnect()


async def test_permission_comes_before_the_model_so_refused_callers_learn_no_names():
    with override_settings(TFBATCH={"MODELS": MODELS}):
        anonymous = await connect()
        reply = await ask(anonymous, {"id": 1, "model": "nope", "inputs": [[1, 2, 3]]})
        assert reply["error"]["code"] == "forbidden"
        assert "double" not in reply["error"]["message"]
        await anonymous.disconnect()
    anyone = await connect()  # PERMISSION "any": a permitted caller is told what exists
    reply = await ask(anyone, {"id": 2, "model": "nope", "inputs": [[1, 2, 3]]})
    assert reply["error"]["code"] == "model_not_found"
    assert "double" in reply["error"]["message"]
    await anyone.disconnect()


def logged_in_cookie() -> str:
    from django.contrib.auth.models import User

    client = Client()
    client.force_login(User.objects.create_user("alice"))
    return "; ".join(f"{k}={v.value}" for k, v in client.cookies.items())


async def test_invalid_argument_inside_the_model_is_invalid_input_in_its_words():
    import base64

    from tests.tf_models import TFSERVING
    from tfbatch_django.serving.tf_example import serialize_example

    regress = {"PATH": TFSERVING / "saved_model_half_plus_two_cpu", "SIGNATURE": "regress_x_to_y"}
    example = base64.b64encode(serialize_example({"x": 1})).decode()  # an int64 where the graph parses a float
    with override_settings(TFBATCH={"MODELS": {"regress": regress}, "PERMISSION": "any"}):
        ws = await connect()
        try:
            answer = await ask(ws, {"id": 1, "model": "regress", "inputs": {"inputs": [{"b64": example}]}})
        finally:
            await ws.disconnect()
    assert answer["error"]["code"] == "invalid_input"
    assert answer["error"]["message"].startswith("Name: <unknown>, Key: x, Index: 0.  Data types don't match.")
