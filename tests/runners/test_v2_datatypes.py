"""v2 tensors <-> numpy: every datatype through the binary extension and JSON."""

from __future__ import annotations

import numpy as np
import pytest

from tfbatch_django.runners.v2_datatypes import (
    DATATYPES,
    decode_binary,
    decode_json,
    encode_binary,
    numpy_dtype,
    parse_shape,
    v2_datatype,
)


@pytest.mark.parametrize("datatype", [d for d in DATATYPES if d != "BYTES"])
def test_numeric_tensors_round_trip_little_endian(datatype: str) -> None:
    dtype = numpy_dtype(datatype)
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


def test_bytes_tensors_are_length_prefixed() -> None:
    array = np.array([[b"ab", b""], ["\u00e9", b"\x00\xff"]], dtype=object)
    raw = encode_binary(array)
    assert (
        raw == b"\x02\x00\x00\x00ab" + b"\x00\x00\x00\x00" + b"\x02\x00\x00\x00\xc3\xa9" + b"\x02\x00\x00\x00\x00\xff"
    )
    back = decode_binary(raw, "BYTES", [2, 2])
    assert back.dtype == object and back.tolist() == [[b"ab", b""], ["\u00e9".encode(), b"\x00\xff"]]
    assert decode_json(["ab", "\u00e9"], "BYTES", [2]).tolist() == [b"ab", "\u00e9".encode()]
    assert v2_datatype(np.dtype("U3")) == v2_datatype(object) == "BYTES"


def test_shapes_and_datatypes_are_checked() -> None:
    assert parse_shape([-1, 4]) == (None, 4)
    assert parse_shape([]) == ()
    for bad in ([-2], [1.5], "1,2", None):
        with pytest.raises(ValueError, match="a v2 shape is a list of integers >= -1"):
            parse_shape(bad)
    with pytest.raises(ValueError, match="v2 datatype 'BF16' has no numpy equivalent; supported: BOOL, UINT8"):
        numpy_dtype("BF16")
    with pytest.raises(ValueError, match="numpy dtype complex64 has no v2 datatype"):
        v2_datatype(np.complex64)
    with pytest.raises(ValueError, match=r"FP32 tensor of shape \[2\] needs 8 bytes, got 7"):
        decode_binary(b"\x00" * 7, "FP32", [2])
    with pytest.raises(ValueError, match="BYTES tensor ends inside an element"):
        decode_binary(b"\x05\x00\x00\x00ab", "BYTES", [1])
    with pytest.raises(ValueError, match=r"BYTES tensor holds 1 elements, its shape \[2\] needs 2"):
        decode_binary(b"\x00\x00\x00\x00", "BYTES", [2])
