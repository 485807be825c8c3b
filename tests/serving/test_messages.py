"""The WebSocket message protocol: parsing requests and writing answers and failures."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from tfbatch_django import BatchInfo, InvalidInput, Prediction
from tfbatch_django.serving.messages import (
    FrameError,
    answer,
    answer_binary,
    failure,
    parse_binary_message,
    parse_message,
)


def parse(doc, limit=10_000):
    return parse_message(doc if isinstance(doc, str) else json.dumps(doc), limit)


def test_a_full_request():
    message = parse({"id": "a", "model": "m", "inputs": {"x": [[1]]}, "timeout_ms": 250})
    assert (message.id, message.model, message.inputs, message.timeout) == ("a", "m", {"x": [[1]]}, 0.25)


def test_numeric_ids_and_no_timeout():
    message = parse({"id": 7, "model": "m", "inputs": [[1]]})
    assert (message.id, message.timeout) == (7, None)


@pytest.mark.parametrize(
    ("frame", "code", "message", "echoed_id"),
    [
        ("not json", "bad_request", "the frame is not valid JSON", None),
        ("[1, 2]", "bad_request", "a request is a JSON object with fields id, model, inputs, timeout_ms", None),
        ({"model": "m", "inputs": [[1]]}, "bad_request", "'id' is missing", None),
        ({"id": True, "model": "m", "inputs": [[1]]}, "bad_request", "'id' is missing or not a string or number", None),
        ({"id": 1, "inputs": [[1]]}, "bad_request", "'model' is missing", 1),
        ({"id": 1, "model": 3, "inputs": [[1]]}, "bad_request", "'model' is missing or not a non-empty string", 1),
        ({"id": 1, "model": "m"}, "bad_request", "'inputs' is missing", 1),
        ({"id": 1, "model": "m", "inputs": "abc"}, "bad_request", "'inputs' must be a nested list", 1),
        (
            {"id": 1, "model": "m", "inputs": [[1]], "timeout_ms": -5},
            "bad_request",
            "'timeout_ms' must be a positive",
            1,
        ),
        (
            {"id": 1, "model": "m", "inputs": [[1]], "timeout_ms": "9"},
            "bad_request",
            "'timeout_ms' must be a positive",
            1,
        ),
        (  # issue 9 defect 1: a huge deadline overflowed the scheduler's wait and failed every request
            {"id": 1, "model": "m", "inputs": [[1]], "timeout_ms": 1e13},
            "bad_request",
            "'timeout_ms' must be a positive number of milliseconds, at most 86400000 (a day), got 10000000000000.0",
            1,
        ),
        ({"id": 1, "model": "m", "inputs": [[1]], "timout_ms": 9}, "bad_request", "unknown field(s) 'timout_ms'", 1),
        ("x" * 101, "too_large", "the frame has 101 characters; the limit is 100", None),
    ],
)
def test_bad_frames_say_what_is_wrong(frame, code, message, echoed_id):
    with pytest.raises(FrameError) as info:
        parse(frame, limit=100)
    assert info.value.code == code
    assert message in info.value.message
    assert info.value.message_id == echoed_id


def test_b64_inputs_are_decoded():
    assert parse({"id": 1, "model": "m", "inputs": [{"b64": "aGk="}]}).inputs == [b"hi"]


def test_answer_carries_id_outputs_and_batch():
    prediction = Prediction({"y": np.array([[0.5]], np.float32)}, BatchInfo(12, 16, 1.23456, 0.5, 1))
    assert json.loads(answer("q1", prediction)) == {
        "id": "q1",
        "outputs": [[0.5]],
        "batch": {"size": 12, "queue_ms": 1.235, "run_ms": 0.5},
    }


def test_answer_of_a_multi_output_model_is_an_object():
    prediction = Prediction({"a": np.ones((1, 1)), "b": np.zeros((1,))}, BatchInfo(1, 1, 0.0, 0.0))
    assert json.loads(answer(1, prediction))["outputs"] == {"a": [[1.0]], "b": [0.0]}


def test_failure_of_a_core_error_uses_its_code():
    assert json.loads(failure(3, InvalidInput("input 'x' is wrong", model="m"))) == {
        "id": 3,
        "error": {"code": "invalid_input", "message": "input 'x' is wrong"},
    }


def test_unexpected_errors_are_reported_without_internals(caplog):
    frame = json.loads(failure(4, KeyError("secret detail")))
    assert frame["error"] == {
        "code": "model_error",
        "message": "internal error (KeyError); the server log has the details",
    }
    assert "secret detail" in caplog.text


def frame(header, payload=b""):
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack(">I", len(head)) + head + payload


def test_binary_request_with_named_inputs():
    a = np.arange(6, dtype="<f4").reshape(2, 3)
    b = np.array([[1], [0]], dtype="<i8")
    header = {
        "id": 5,
        "model": "m",
        "inputs": {"a": {"dtype": "float32", "shape": [2, 3]}, "b": {"dtype": "int64", "shape": [2, 1]}},
    }
    message = parse_binary_message(frame(header, a.tobytes() + b.tobytes()), 10_000)
    assert (message.id, message.model, message.binary) == (5, "m", True)
    np.testing.assert_array_equal(message.inputs["a"], a)
    np.testing.assert_array_equal(message.inputs["b"], b)


def test_binary_request_with_one_unnamed_input():
    x = np.ones((1, 4), "<f4")
    message = parse_binary_message(
        frame({"id": 1, "model": "m", "inputs": {"dtype": "float32", "shape": [1, 4]}}, x.tobytes()), 1000
    )
    np.testing.assert_array_equal(message.inputs, x)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x01", "starts with its JSON header's length as 4 big-endian bytes"),
        (struct.pack(">I", 99) + b"{}", "the header length 99 runs past the end of the 6-byte frame"),
        (frame(b"{oops"), "the binary frame's header is not valid JSON"),
        (frame({"id": 1, "model": "m", "inputs": [[1]]}), "in a binary frame 'inputs' describes the tensors"),
        (
            frame({"id": 1, "model": "m", "inputs": {"dtype": "str", "shape": [1]}}),
            "'dtype' must be one of bool, float16",
        ),
        (
            frame({"id": 1, "model": "m", "inputs": {"dtype": "float32", "shape": [1, -2]}}),
            "'shape' must be a list of non-negative",
        ),
        (
            frame({"id": 1, "model": "m", "inputs": {"dtype": "float32", "shape": [2]}}, b"1234"),
            "needs 8 bytes; the frame has 4 left",
        ),
        (
            frame({"id": 1, "model": "m", "inputs": {"dtype": "uint8", "shape": [1]}}, b"12"),
            "the frame has 1 bytes after the tensors",
        ),
        (frame({"id": 1, "inputs": {"dtype": "uint8", "shape": [1]}}, b"1"), "'model' is missing"),
        # Zero bytes, yet no tensor can have these shapes (numpy would raise a bare ValueError).
        (
            frame({"id": 1, "model": "m", "inputs": {"dtype": "uint8", "shape": [0] * 70}}),
            "is beyond what a tensor can have (at most 32 dimensions",
        ),
        (
            frame({"id": 1, "model": "m", "inputs": {"dtype": "uint8", "shape": [0, 2**62, 2**62]}}),
            "is beyond what a tensor can have",
        ),
    ],
)
def test_bad_binary_frames_say_what_is_wrong(data, message):
    with pytest.raises(FrameError, match=None) as info:
        parse_binary_message(data, 1000)
    assert info.value.code == "bad_request"
    assert message in info.value.message


def test_binary_frames_over_the_limit():
    with pytest.raises(FrameError, match="the frame has 2000 bytes; the limit is 1000") as info:
        parse_binary_message(b"x" * 2000, 1000)
    assert info.value.code == "too_large"


def test_binary_answer_and_its_text_fallback_for_strings():
    numbers = Prediction({"y": np.array([[1.0, 2.0]], np.float32)}, BatchInfo(3, 3, 0.1, 0.2))
    data = answer_binary("z", numbers)
    (length,) = struct.unpack_from(">I", data)
    assert json.loads(data[4 : 4 + length]) == {
        "id": "z",
        "batch": {"size": 3, "queue_ms": 0.1, "run_ms": 0.2},
        "outputs": {"y": {"dtype": "float32", "shape": [1, 2]}},
    }
    assert np.frombuffer(data[4 + length :], "<f4").tolist() == [1.0, 2.0]
    strings = Prediction({"s": np.array([b"hi"], dtype=object)}, BatchInfo(1, 1, 0.0, 0.0))
    assert json.loads(answer_binary(1, strings))["outputs"] == ["hi"]


@pytest.mark.parametrize("message_id", [float("inf"), float("-inf")])
def test_a_binary_answer_echoes_a_non_finite_id_as_the_text_answer_does(message_id):
    """Requests may hold ``Infinity`` (TF Serving's literals), so an id may be one: the
    binary answer's header echoes it as the text answer and failures do, never ``null``."""
    numbers = Prediction({"y": np.array([[1.0]], np.float32)}, BatchInfo(1, 1, 0.1, 0.2))
    data = answer_binary(message_id, numbers)
    (length,) = struct.unpack_from(">I", data)
    assert json.loads(data[4 : 4 + length])["id"] == message_id
    assert json.loads(answer(message_id, numbers))["id"] == message_id
