"""What travels: tensors as bytes with dtype and shape, errors by class, never nested lists."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from tfbatch_django import InvalidInput, ModelError, Overloaded, PredictTimeout, WorkerUnavailable
from tfbatch_django.batching import BatchInfo, Prediction
from tfbatch_django.remote import protocol


@pytest.mark.parametrize("dtype", ["float32", "float64", "int8", "int64", "uint16", "bool", "float16"])
def test_numeric_tensors_travel_as_raw_bytes(dtype):
    array = (np.arange(24).reshape(2, 3, 4) % 7).astype(dtype)
    encoded = protocol.encode_arrays({"x": array})
    _, shape, data = encoded["x"]
    assert isinstance(data, bytes) and len(data) == array.nbytes and shape == [2, 3, 4]
    wire = msgpack.unpackb(msgpack.packb(encoded))  # what channels_redis does
    back = protocol.decode_arrays(wire)["x"]
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_big_endian_and_non_contiguous_arrays_arrive_as_the_same_values():
    array = np.arange(12, dtype=">f4").reshape(3, 4)[:, ::2]
    back = protocol.decode_arrays(msgpack.unpackb(msgpack.packb(protocol.encode_arrays({"x": array}))))["x"]
    np.testing.assert_array_equal(back, array)


def test_string_tensors_travel_as_lists_of_bytes():
    array = np.array([[b"a", b"bc"], [b"", b"\xff"]], dtype=object)
    back = protocol.decode_arrays(msgpack.unpackb(msgpack.packb(protocol.encode_arrays({"s": array}))))["s"]
    assert back.dtype == object and back.shape == (2, 2) and back.tolist() == array.tolist()


def test_predictions_round_trip_with_their_batch_info():
    prediction = Prediction({"y": np.ones((2, 3), np.float32)}, BatchInfo(7, 8, 1.5, 2.5, 1))
    back = protocol.decode_prediction(msgpack.unpackb(msgpack.packb(protocol.encode_prediction(prediction))))
    assert back.batch == prediction.batch
    np.testing.assert_array_equal(back.outputs["y"], prediction.outputs["y"])


@pytest.mark.parametrize(
    "error",
    [
        InvalidInput("input 'x' has no rows", model="m", input="x"),
        Overloaded("queue full", model="m"),
        PredictTimeout("deadline of 5 ms passed", model="m"),
        ModelError("boom", model="m"),
        WorkerUnavailable("gone", model="m"),
    ],
)
def test_errors_keep_their_class_message_and_input(error):
    back = protocol.decode_error(msgpack.unpackb(msgpack.packb(protocol.encode_error(error))), "m")
    assert type(back) is type(error) and back.message == error.message and back.model == "m"
    assert getattr(back, "input", None) == getattr(error, "input", None)


def test_foreign_exceptions_become_model_errors():
    back = protocol.decode_error(protocol.encode_error(KeyError("k")), "m")
    assert type(back) is ModelError and "KeyError" in back.message


def test_channel_names_are_valid_for_the_layer():
    from channels.layers import BaseChannelLayer

    layer = BaseChannelLayer()
    name = "gpu-0.a_b"
    assert layer.require_valid_channel_name(protocol.request_channel(name))
    assert layer.require_valid_group_name(protocol.control_group(name))
    assert layer.require_valid_group_name(protocol.heartbeat_group(name))
