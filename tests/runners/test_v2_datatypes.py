"""v2 tensors <-> numpy (numpy only): every datatype through the binary extension and JSON.

One table serves the v2 runner (``runners/remote_v2.py``) and the v2 server (``serving/kserve_v2*``).
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from tfbatch_django.runners import v2_datatypes as v2
from tfbatch_django.runners.v2_datatypes import (
    DATATYPES,
    datatype_of_name,
    decode_binary,
    decode_json,
    encode_binary,
    numpy_dtype,
    parse_shape,
    v2_datatype,
)

NUMERIC = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


def test_the_table_is_every_v2_datatype_numpy_has() -> None:
    assert [d for d in DATATYPES if d != "BYTES"] == list(NUMERIC)


@pytest.mark.parametrize(("datatype", "expected"), NUMERIC.items())
def test_numeric_tensors_round_trip_little_endian(datatype: str, expected: type) -> None:
    dtype = numpy_dtype(datatype)
    assert dtype == np.dtype(expected)
    array = (np.arange(6) % 2 == 0) if dtype == np.bool_ else np.arange(6).astype(dtype)
    array = array.reshape(2, 3)
    raw = encode_binary(array)
    assert raw == array.astype(dtype.newbyteorder("<")).tobytes()
    assert len(raw) == 6 * dtype.itemsize
    back = decode_binary(bytearray(raw), datatype, [2, 3])
    assert back.dtype == dtype and back.tolist() == array.tolist() and back.flags.writeable
    assert v2_datatype(dtype) == datatype
    assert decode_json(array.tolist(), datatype, [2, 3]).tolist() == array.tolist()


def test_big_endian_arrays_are_sent_little_endian() -> None:
    array = np.array([1, 256], dtype=">i4")
    assert encode_binary(array) == b"\x01\x00\x00\x00\x00\x01\x00\x00"
    assert v2_datatype(array.dtype) == "INT32"


def test_binary_is_little_endian_row_major_even_from_a_strided_big_endian_array() -> None:
    array = np.arange(6, dtype=">i4").reshape(2, 3).T  # neither little-endian nor contiguous
    assert encode_binary(array) == struct.pack("<6i", 0, 3, 1, 4, 2, 5)


def test_bytes_tensors_are_length_prefixed() -> None:
    array = np.array([[b"ab", b""], ["\u00e9", b"\x00\xff"]], dtype=object)
    raw = encode_binary(array)
    assert (
        raw == b"\x02\x00\x00\x00ab" + b"\x00\x00\x00\x00" + b"\x02\x00\x00\x00\xc3\xa9" + b"\x02\x00\x00\x00\x00\xff"
    )
    back = decode_binary(raw, "BYTES", [2, 2])
    assert back.dtype == object and back.tolist() == [[b"ab", b""], ["\u00e9".encode(), b"\x00\xff"]]
    assert decode_json(["ab", "\u00e9"], "BYTES", [2]).tolist() == [b"ab", "\u00e9".encode()]
    assert encode_binary(np.array(["\u00e9"])) == b"\x02\x00\x00\x00\xc3\xa9"  # numpy unicode: UTF-8
    assert v2_datatype(np.dtype("U3")) == v2_datatype(object) == v2_datatype(np.dtype("S2")) == "BYTES"


def test_names_the_runners_use() -> None:
    assert datatype_of_name("float32") == "FP32"
    assert datatype_of_name("string") == "BYTES"
    assert datatype_of_name("bool") == "BOOL"
    assert datatype_of_name("bfloat16") == "BF16"  # with or without ml_dtypes loaded
    assert datatype_of_name("complex64") == "COMPLEX64"  # no v2 datatype: named as it is


def test_bfloat16_is_named_and_written_read_back_as_float32_and_refused_as_an_input() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    array = np.array([1.0, -2.5], dtype=ml_dtypes.bfloat16)
    assert v2_datatype(array.dtype) == "BF16"
    raw = encode_binary(array)
    assert raw == np.array([1.0, -2.5], "<f4").view("<u2")[1::2].tobytes()
    back = decode_binary(raw, "BF16", [2])  # an engine's bfloat16 output: widened exactly
    assert back.dtype == np.float32 and back.tolist() == [1.0, -2.5]
    assert decode_json([1.0, -2.5], "BF16", [2]).dtype == np.float32
    with pytest.raises(ValueError, match=r"'BF16' is not accepted for inputs .*; use FP32"):
        numpy_dtype("BF16")


def test_shapes_and_datatypes_are_checked() -> None:
    assert parse_shape([-1, 4]) == (None, 4)
    assert parse_shape([]) == ()
    for bad in ([-2], [1.5], "1,2", None, [True]):
        with pytest.raises(ValueError, match="a v2 shape is a list of integers >= -1"):
            parse_shape(bad)
    with pytest.raises(ValueError, match="unknown datatype 'FP8'; known: BOOL, UINT8"):
        numpy_dtype("FP8")
    with pytest.raises(ValueError, match="numpy dtype complex64 has no Open Inference Protocol datatype"):
        v2_datatype(np.complex64)
    assert v2.BYTES == "BYTES" and v2.BF16 == "BF16"


@pytest.mark.parametrize(
    ("data", "datatype", "shape", "error"),
    [
        (b"\x00" * 7, "FP32", (2,), "7 bytes of binary data for 2 FP32 elements of shape [2]; expected 8"),
        (b"\x00" * 3, "BF16", (2,), "3 bytes of binary data for 2 BF16 elements of shape [2]; expected 4"),
        (b"\x05\x00\x00\x00ab", "BYTES", (1,), "BYTES element 0 claims 5 bytes; only 2 remain"),
        (b"\x01\x00", "BYTES", (1,), "ends inside an element's 4-byte length"),
        (b"\x01\x00\x00\x00a", "BYTES", (2,), "1 BYTES elements in the binary data for shape [2]; expected 2"),
        (b"\x00\x00\x00\x00", "BYTES", (2,), "1 BYTES elements in the binary data for shape [2]; expected 2"),
        (b"", "FP8", (0,), "unknown datatype 'FP8'"),
    ],
)
def test_binary_that_does_not_add_up(data: bytes, datatype: str, shape: tuple[int, ...], error: str) -> None:
    with pytest.raises(ValueError, match=error.replace("[", r"\[").replace("]", r"\]")):
        decode_binary(data, datatype, shape)
