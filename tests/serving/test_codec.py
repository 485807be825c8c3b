"""The JSON codec shared by every front door."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from tfbatch_django.serving import codec
from tfbatch_django.serving.errors import ServingError


def test_float32_outputs_are_written_in_their_shortest_float32_form():
    out = np.array([[0.1, 2.5]], dtype=np.float32)
    assert codec.dumps({"predictions": out}) == b'{"predictions":[[0.1,2.5]]}'


def test_a_strided_float32_output_is_written_in_float32_form_too():
    strided = np.array([[0.1, 9.0, 2.5]], dtype=np.float32)[:, ::2]  # a slice of a batch output
    assert not strided.flags.c_contiguous
    assert codec.dumps({"predictions": strided}) == b'{"predictions":[[0.1,2.5]]}'


def test_numpy_scalars_ints_and_bools():
    value = {"a": np.float32(1.5), "b": np.int64(3), "c": np.array([True, False])}
    assert codec.dumps(value) == b'{"a":1.5,"b":3,"c":[true,false]}'


def test_arrays_orjson_cannot_write_natively_fall_back_to_lists():
    strided = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]  # not C-contiguous
    half = np.array([0.5, 1.0], dtype=np.float16)
    assert codec.loads(codec.dumps({"s": strided, "h": half})) == {"s": [[0, 2], [4, 6], [8, 10]], "h": [0.5, 1.0]}


def test_string_tensors_become_text_or_base64():
    out = np.array([b"hello", b"\xff\xfe"], dtype=object)
    assert codec.loads(codec.dumps(out)) == ["hello", {"b64": base64.b64encode(b"\xff\xfe").decode()}]


def test_invalid_json_is_a_bad_request_naming_what_broke():
    with pytest.raises(ServingError, match=r"the frame is not valid JSON \(.*line 1 column 2") as info:
        codec.loads(b"{x", what="the frame")
    assert info.value.code == "bad_request"


def test_b64_values_decode_to_bytes_anywhere_in_the_structure():
    value = [{"b64": base64.b64encode(b"\x00\x01").decode()}, {"text": [{"b64": "aGk="}], "n": 1}]
    assert codec.decode_b64(value) == [b"\x00\x01", {"text": [b"hi"], "n": 1}]


@pytest.mark.parametrize(
    ("value", "message"), [({"b64": 3}, "must hold a base64 string"), ({"b64": "@@@"}, "not valid base64")]
)
def test_bad_b64_values_are_bad_requests(value, message):
    with pytest.raises(ServingError, match=message):
        codec.decode_b64([value])
