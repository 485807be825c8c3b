"""Property-based fuzzing of every door (issue 9): WebSocket text and binary frames, and
REST bodies through the Django views and the fast door.

Properties, for every input hypothesis makes up:

* never an internal error: no ``internal error`` answer, no 500, nothing logged at ERROR;
* never a closed socket: every frame gets exactly one answer, and the socket serves a
  good request afterwards;
* only documented codes (README "Errors") and statuses;
* the id echoed whenever the frame's id was readable.

``TFBATCH_FUZZ_EXAMPLES`` sets the examples per property (300 by default, a few seconds
each here; e.g. ``TFBATCH_FUZZ_EXAMPLES=5000`` for a long run).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from channels.routing import URLRouter
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.test import AsyncClient, override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfbatch_django.routing import http_urlpatterns, websocket_urlpatterns
from tfbatch_django.serving import codec
from tfbatch_django.serving.errors import ServingError

EXAMPLES = int(os.environ.get("TFBATCH_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
MODELS = {
    "double": {"RUNNER": "tests.fakes.double_runner", "MAX_BATCH_SIZE": 8},
    "pair": {"RUNNER": "tests.serving.fakes.pair_runner"},
    "text": {"RUNNER": "tests.serving.fakes.text_runner"},
}
LIMIT = 20_000
SETTINGS = {"MODELS": MODELS, "PERMISSION": "any", "MAX_REQUEST_BYTES": LIMIT}
WS_CODES = {"bad_request", "model_not_found", "invalid_input", "too_large", "overloaded", "timeout"}
HTTP_STATUSES = {200, 400, 404, 405, 413, 503, 504}

pytestmark = [
    pytest.mark.urls("tests.serving.urls"),
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),  # float64 -> float32 is inf
]


@pytest.fixture(autouse=True)
def serving_settings(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with override_settings(TFBATCH=SETTINGS), caplog.at_level(logging.ERROR):
        yield
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# ---------------------------------------------------------------- strategies

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)
rows = st.lists(
    st.lists(st.floats(width=32, allow_nan=True) | st.integers(-1000, 1000), min_size=3, max_size=3),
    min_size=1,
    max_size=4,
)
ids = st.integers(-(2**53), 2**53) | st.floats(allow_nan=False) | st.text(max_size=10) | json_values
models = st.sampled_from(["double", "pair", "text", "nope", "", "a/b"]) | json_values
tensor_inputs = rows | st.dictionaries(st.sampled_from(["x", "a", "b", "y"]), rows, max_size=2) | json_values
timeouts = st.none() | st.floats(allow_nan=True) | st.integers(-5, 10**15) | st.text(max_size=4)


def deep(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


@st.composite
def requests(draw: Callable[..., Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for field, strategy in (("id", ids), ("model", models), ("inputs", tensor_inputs), ("timeout_ms", timeouts)):
        if draw(st.integers(0, 9)):  # each field present 90 % of the time
            doc[field] = draw(strategy)
    if not draw(st.integers(0, 9)):
        doc[draw(st.text(max_size=5))] = draw(json_values)
    return doc


def dumps(doc: Any) -> str:
    return json.dumps(doc, allow_nan=True)  # NaN / Infinity literals, as TF Serving accepts


text_frames = (
    requests().map(dumps)
    | json_values.map(dumps)
    | st.text(max_size=50)
    | st.integers(1, 1200).map(lambda d: '{"id": 9, "model": "double", "inputs": ' + deep(d) + "}")
    | st.integers(1, 1200).map(lambda d: '{"id": 9, "model": "double", "inputs": ' + deep(d, '{"b64": "AA=="}') + "}")
    | st.integers(LIMIT - 5, LIMIT + 5).map(lambda n: '{"id": 9, "x": "' + "a" * n + '"}')
)


@st.composite
def binary_frames(draw: Callable[..., Any]) -> bytes:
    doc = draw(requests())
    if draw(st.booleans()):
        spec = st.fixed_dictionaries(
            {
                "dtype": st.sampled_from(["float32", "float64", "int32", "uint8", "bool", "float16", "string"])
                | json_values,
                "shape": st.lists(st.integers(-2, 2**40), max_size=4) | json_values,
            }
        )
        doc["inputs"] = draw(spec | st.dictionaries(st.sampled_from(["x", "a", "b"]), spec, max_size=3))
    header = json.dumps(doc, allow_nan=True).encode()
    length = draw(st.sampled_from([len(header)]) | st.integers(0, 2**32 - 1))
    return struct.pack(">I", length) + header + draw(st.binary(max_size=64))


predict_bodies = (
    st.fixed_dictionaries(
        {},
        optional={
            "instances": rows
            | st.lists(st.dictionaries(st.sampled_from(["a", "b", "x"]), rows), max_size=3)
            | json_values,
            "inputs": tensor_inputs,
            "signature_name": st.sampled_from(["", "serving_default", "other"]) | json_values,
        },
    ).map(lambda doc: dumps(doc).encode())
    | json_values.map(lambda v: dumps(v).encode())
    | st.binary(max_size=40)
    | st.integers(1, 1200).map(lambda d: ('{"instances": ' + deep(d) + "}").encode())
    | st.integers(1, 1200).map(lambda d: ('{"inputs": ' + '{"a":' * d + "1" + "}" * d + "}").encode())
)
paths = st.sampled_from(
    [
        *("v1/models/double:predict", "v1/models/pair:predict", "v1/models/text:predict", "v1/models/nope:predict"),
        *("v1/models/double/versions/0:predict", "v1/models/double:classify", "v1/models/double/metadata"),
    ]
)
methods = st.sampled_from(["POST", "POST", "POST", "GET", "PUT"])


# ---------------------------------------------------------------- properties


def readable_id(frame: str | bytes) -> tuple[bool, Any]:
    """The id a server could read from the frame: a JSON object within the JSON parser's
    limits (``codec.loads``: orjson, 1,024 levels deep) with a string or number id."""
    try:
        if isinstance(frame, bytes):
            (length,) = struct.unpack_from(">I", frame)
            if 4 + length > len(frame):
                return False, None
            doc = codec.loads(frame[4 : 4 + length])
        else:
            doc = codec.loads(frame)
    except (ServingError, struct.error):
        return False, None
    if not isinstance(doc, dict):
        return False, None
    value = doc.get("id")
    ok = isinstance(value, str | int | float) and not isinstance(value, bool)
    return ok, value


def check_ws_answer(frame: str | bytes, answer: str | bytes, limit: int) -> None:
    if isinstance(answer, bytes):  # a binary answer: a prediction
        (length,) = struct.unpack_from(">I", answer)
        reply = json.loads(answer[4 : 4 + length])
        assert "outputs" in reply and "error" not in reply
    else:
        reply = json.loads(answer)
    if "error" in reply:
        code, message = reply["error"]["code"], reply["error"]["message"]
        assert code in WS_CODES, reply
        assert "internal error" not in message, reply
    else:
        assert "outputs" in reply, reply
    size = len(frame)
    readable, value = readable_id(frame)
    if readable and size <= limit:
        assert reply["id"] == value or (isinstance(value, float) and math.isnan(value)), (frame[:200], reply)


async def new_socket() -> WebsocketCommunicator:
    ws = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/tfbatch/")
    assert (await ws.connect(timeout=5))[0]
    return ws


async def still_serves(ws: WebsocketCommunicator) -> None:
    await ws.send_to(text_data='{"id": "last", "model": "double", "inputs": [[1, 2, 3]]}')
    assert json.loads(await ws.receive_from(timeout=10))["outputs"] == [[2.0, 4.0, 6.0]]
    await ws.disconnect()


def run_on_one_socket(strategy: st.SearchStrategy[Any]) -> None:
    loop = asyncio.new_event_loop()
    try:
        ws = loop.run_until_complete(new_socket())

        @FUZZ
        @given(frame=strategy)
        def one_frame(frame: str | bytes) -> None:
            async def exchange() -> str | bytes:
                kind = "bytes" if isinstance(frame, bytes) else "text"
                await ws.send_input({"type": "websocket.receive", kind: frame})  # empty frames too
                message = await ws.receive_output(timeout=10)
                assert message["type"] == "websocket.send", message  # never a closed socket
                return message.get("text") if message.get("text") is not None else message["bytes"]

            check_ws_answer(frame, loop.run_until_complete(exchange()), LIMIT)

        one_frame()
        loop.run_until_complete(still_serves(ws))
    finally:
        close(loop)


def test_websocket_text_frames() -> None:
    run_on_one_socket(text_frames)


def test_websocket_binary_frames() -> None:
    run_on_one_socket(binary_frames())


def check_http_answer(status: int, body: bytes) -> None:
    assert status in HTTP_STATUSES, (status, body[:300])
    reply = json.loads(body)
    assert isinstance(reply, dict)
    if status != 200:
        assert isinstance(reply["error"], str) and "internal error" not in reply["error"], reply


async def through_views(method: str, path: str, body: bytes) -> tuple[int, bytes]:
    response = await AsyncClient().generic(method, "/tfbatch/" + path, body, content_type="application/json")
    return response.status_code, response.content


async def through_fast_door(method: str, path: str, body: bytes) -> tuple[int, bytes]:
    app = URLRouter(http_urlpatterns("fast/"))  # without AuthMiddlewareStack: no database
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    response = await HttpCommunicator(app, method, "/fast/" + path, body=body, headers=headers).get_response(10)
    return response["status"], response["body"]


@pytest.mark.parametrize("door", [through_views, through_fast_door], ids=["views", "fast"])
def test_rest_bodies(door: Callable[[str, str, bytes], Any]) -> None:
    loop = asyncio.new_event_loop()
    try:

        @FUZZ
        @given(method=methods, path=paths, body=predict_bodies)
        def one_request(method: str, path: str, body: bytes) -> None:
            check_http_answer(*loop.run_until_complete(door(method, path, body)))

        one_request()
    finally:
        close(loop)


def close(loop: asyncio.AbstractEventLoop) -> None:
    """Close a loop after cancelling what the communicators left on it."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()

    async def drain() -> None:
        await asyncio.gather(*pending, return_exceptions=True)

    loop.run_until_complete(drain())
    loop.close()
