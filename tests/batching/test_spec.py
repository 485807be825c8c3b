"""Input validation and coercion (the exact messages are the user interface)."""

from __future__ import annotations

import numpy as np
import pytest

from tfbatch_django.batching.spec import TensorSpec, coerce_inputs, format_shape
from tfbatch_django.exceptions import InvalidInput

IMG = {"image": TensorSpec.of("image", "float32", (None, 2, 2))}


def test_single_input_accepts_array_like():
    arrays, rows = coerce_inputs(IMG, [[[1, 2], [3, 4]]])
    assert rows == 1
    assert arrays["image"].dtype == np.float32


def test_passes_matching_arrays_through_without_copy():
    x = np.zeros((3, 2, 2), np.float32)
    arrays, rows = coerce_inputs(IMG, {"image": x})
    assert arrays["image"] is x
    assert rows == 3


def test_trailing_dimension_mismatch_names_both_shapes():
    with pytest.raises(InvalidInput) as info:
        coerce_inputs(IMG, np.zeros((1, 2, 3)), model="m")
    assert str(info.value) == "input 'image' has shape (1, 2, 3); expected (None, 2, 2) (first dimension = rows)"
    assert (info.value.model, info.value.input) == ("m", "image")


def test_rank_mismatch():
    with pytest.raises(InvalidInput, match=r"has shape \(4,\) \(rank 1\); expected rank 3"):
        coerce_inputs(IMG, np.zeros(4))


def test_unknown_rank_accepts_anything_with_rows():
    spec = {"s": TensorSpec.of("s", "string", None)}
    arrays, rows = coerce_inputs(spec, [b"a", "b"])
    assert rows == 2
    assert arrays["s"].tolist() == [b"a", b"b"]


def test_strings_are_utf8_encoded_without_touching_the_callers_array():
    spec = {"s": TensorSpec.of("s", "string", (None,))}
    original = np.array(["é", "x"], dtype=object)
    arrays, _ = coerce_inputs(spec, original)
    assert arrays["s"].tolist() == ["é".encode(), b"x"]
    assert original.tolist() == ["é", "x"]


def test_bool_and_int_cast_to_float():
    spec = {"x": TensorSpec.of("x", "float32", (None, 2))}
    assert coerce_inputs(spec, np.array([[True, False]]))[0]["x"].tolist() == [[1.0, 0.0]]
    assert coerce_inputs(spec, np.array([[1, 2]], np.int64))[0]["x"].dtype == np.float32


def test_float_to_int_refused():
    spec = {"ids": TensorSpec.of("ids", "int64", (None,))}
    with pytest.raises(InvalidInput, match="input 'ids' has dtype float64, which cannot be cast to int64"):
        coerce_inputs(spec, [1.5])


def test_fixed_batch_dimension_is_not_enforced_on_requests():
    # A signature with shape (1,) takes one row per call; the runner loops, so a
    # request may carry any number of rows.
    spec = {"x": TensorSpec.of("x", "float32", (1,))}
    _, rows = coerce_inputs(spec, [1.0, 2.0, 3.0])
    assert rows == 3


def test_describe_and_format():
    assert IMG["image"].describe() == {"name": "image", "dtype": "float32", "shape": [-1, 2, 2]}
    assert TensorSpec.of("s", "string", None).describe() == {"name": "s", "dtype": "string", "shape": None}
    assert format_shape((None,)) == "(None,)"
    assert format_shape(None) == "any shape"
