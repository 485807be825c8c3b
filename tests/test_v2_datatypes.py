"""The Open Inference Protocol's datatypes and their binary form (numpy only)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from tfbatch_django import v2_datatypes as v2


@pytest.mark.parametrize(
    ("datatype", "dtype"),
    [
        ("BOOL", np.bool_),
        ("UINT8", np.uint8),
        ("UINT16", np.uint16),
        ("UINT32", np.uint32),
        ("UINT64", np.uint64),
        ("INT8", np.int8),
        ("INT16", np.int16),
        ("INT32", np.int32),
        ("INT64", np.int64),
        ("FP16", np.float16),
        ("FP32", np.float32),
        ("FP64", np.float64),
    ],
)
def test_fixed_size_types_round_trip_through_their_binary_form(datatype, dtype):
    array = (np.arange(6) % 2).astype(dtype).reshape(2, 3)
    assert v2.numpy_dtype(datatype) == np.dtype(dtype)
    assert v2.datatype_of(array.dtype) == datatype
    data = v2.to_binary(array)
    assert len(data) == 6 * np.dtype(dtype).itemsize
    back = v2.from_binary(data, datatype, (2, 3))
    np.testing.assert_array_equal(back, array)
    assert back.dtype == np.dtype(dtype)


def test_binary_is_little_endian_row_major_even_from_a_strided_big_endian_array():
    array = np.arange(6, dtype=">i4").reshape(2, 3).T  # neither little-endian nor contiguous
    assert v2.to_binary(array) == struct.pack("<6i", 0, 3, 1, 4, 2, 5)


def test_bytes_elements_carry_a_4_byte_length():
    array = np.array([b"ab", b"", "é".encode()], dtype=object)
    data = v2.to_binary(array)
    assert data == b"\x02\x00\x00\x00ab" + b"\x00\x00\x00\x00" + b"\x02\x00\x00\x00\xc3\xa9"
    back = v2.from_binary(data, "BYTES", (3,))
    assert back.dtype == object and back.tolist() == [b"ab", b"", "é".encode()]
    assert v2.to_binary(np.array(["é"])) == b"\x02\x00\x00\x00\xc3\xa9"  # numpy unicode: UTF-8


def test_names_the_runners_use():
    assert v2.datatype_of_name("float32") == "FP32"
    assert v2.datatype_of_name("string") == "BYTES"
    assert v2.datatype_of_name("bool") == "BOOL"
    assert v2.datatype_of_name("bfloat16") == "BF16"  # with or without ml_dtypes loaded
    assert v2.datatype_of_name("complex64") == "COMPLEX64"  # no v2 datatype: named as it is
    assert v2.datatype_of(np.dtype("U3")) == v2.datatype_of(np.dtype(object)) == "BYTES"


@pytest.mark.parametrize(
    ("data", "datatype", "shape", "error"),
    [
        (b"\x00" * 7, "FP32", (2,), "7 bytes of binary data for 2 FP32 elements of shape [2]; expected 8"),
        (b"\x05\x00\x00\x00ab", "BYTES", (1,), "BYTES element 0 claims 5 bytes; only 2 remain"),
        (b"\x01\x00", "BYTES", (1,), "ends inside an element's 4-byte length"),
        (b"\x01\x00\x00\x00a", "BYTES", (2,), "1 BYTES elements in the binary data for shape [2]; expected 2"),
    ],
)
def test_binary_that_does_not_add_up(data, datatype, shape, error):
    with pytest.raises(ValueError, match=error.replace("[", r"\[").replace("]", r"\]")):
        v2.from_binary(data, datatype, shape)


def test_bfloat16_outputs_are_named_and_written_inputs_refused():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    array = np.array([1.0, -2.5], dtype=ml_dtypes.bfloat16)
    assert v2.datatype_of(array.dtype) == "BF16"
    assert v2.to_binary(array) == np.array([1.0, -2.5], "<f4").view("<u2")[1::2].tobytes()
    with pytest.raises(KeyError, match="'BF16' is not accepted here; send FP32"):
        v2.numpy_dtype("BF16")


def test_unknown_types():
    with pytest.raises(KeyError, match="unknown datatype 'FP8'; known: BOOL"):
        v2.numpy_dtype("FP8")
    with pytest.raises(ValueError, match="has no Open Inference Protocol datatype"):
        v2.datatype_of(np.dtype(np.complex64))
