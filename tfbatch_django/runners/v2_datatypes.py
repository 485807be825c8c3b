"""Open Inference Protocol (KServe v2) tensors <-> numpy: datatypes, shapes, binary data.

Pure numpy, no Django and no HTTP, so both directions of the protocol can share it:
the remote runner (``remote_v2.py``) that sends batches to an engine, and a v2 server.

The binary tensor data extension lays tensors out as raw little-endian row-major bytes;
``BYTES`` tensors as, per element, a 4-byte little-endian length and then the bytes.
Strings are numpy ``object`` arrays of ``bytes``, as everywhere in this project.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "DATATYPES",
    "decode_binary",
    "decode_json",
    "encode_binary",
    "numpy_dtype",
    "parse_shape",
    "v2_datatype",
]

#: v2 datatype -> numpy dtype. ``BYTES`` is ``object`` (elements are ``bytes``).
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}

_BY_NUMPY = {dtype: name for name, dtype in DATATYPES.items()}
_LENGTH = struct.Struct("<I")


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The numpy dtype of a v2 datatype; ``ValueError`` for one numpy lacks (``BF16``)."""
    try:
        return DATATYPES[datatype]
    except (KeyError, TypeError):
        raise ValueError(
            f"v2 datatype {datatype!r} has no numpy equivalent; supported: {', '.join(DATATYPES)}"
        ) from None


def v2_datatype(dtype: Any) -> str:
    """The v2 datatype of a numpy dtype (strings and ``object`` are ``BYTES``)."""
    dt = np.dtype(dtype)
    if dt.kind in "OUS":
        return "BYTES"
    try:
        return _BY_NUMPY[dt.newbyteorder("=")]
    except KeyError:
        raise ValueError(f"numpy dtype {dt.name} has no v2 datatype") from None


def parse_shape(shape: Any) -> tuple[int | None, ...]:
    """A v2 shape (a list of ints, ``-1`` for any size) as a spec shape (``None`` for any size)."""
    if not isinstance(shape, list | tuple) or not all(isinstance(d, int) and d >= -1 for d in shape):
        raise ValueError(f"a v2 shape is a list of integers >= -1, got {shape!r}")
    return tuple(None if d == -1 else d for d in shape)


def encode_binary(array: np.ndarray) -> bytes:
    """The binary-extension bytes of ``array`` (whose dtype decides the v2 datatype)."""
    if array.dtype.kind in "OUS":
        parts: list[bytes] = []
        for item in array.reshape(-1):
            data = item.encode("utf-8") if isinstance(item, str) else bytes(item)
            parts.append(_LENGTH.pack(len(data)))
            parts.append(data)
        return b"".join(parts)
    little = array.dtype.newbyteorder("<")
    return np.ascontiguousarray(array, dtype=little).tobytes()


def decode_binary(buffer: bytes | bytearray | memoryview, datatype: str, shape: Sequence[int]) -> np.ndarray:
    """The tensor in ``buffer`` (exactly its bytes). Writable when ``buffer`` is a bytearray."""
    dtype = numpy_dtype(datatype)
    count = int(np.prod(shape, dtype=np.int64))
    view = memoryview(buffer)
    if datatype == "BYTES":
        items: list[bytes] = []
        offset = 0
        while offset < len(view):
            if offset + 4 > len(view):
                raise ValueError("BYTES tensor ends inside an element's length prefix")
            (length,) = _LENGTH.unpack_from(view, offset)
            offset += 4
            if offset + length > len(view):
                raise ValueError("BYTES tensor ends inside an element")
            items.append(bytes(view[offset : offset + length]))
            offset += length
        if len(items) != count:
            raise ValueError(f"BYTES tensor holds {len(items)} elements, its shape {list(shape)} needs {count}")
        out = np.empty(count, dtype=object)
        out[:] = items
        return out.reshape(tuple(shape))
    little = dtype.newbyteorder("<")
    if len(view) != count * little.itemsize:
        raise ValueError(
            f"{datatype} tensor of shape {list(shape)} needs {count * little.itemsize} bytes, got {len(view)}"
        )
    array = np.frombuffer(view, dtype=little, count=count).reshape(tuple(shape))
    return array if little == dtype else array.astype(dtype)


def decode_json(data: Any, datatype: str, shape: Sequence[int]) -> np.ndarray:
    """A tensor given as JSON ``data`` (flat or nested, row-major)."""
    dtype = numpy_dtype(datatype)
    if datatype == "BYTES":
        flat = np.asarray(data, dtype=object).reshape(-1)
        out = np.empty(len(flat), dtype=object)
        out[:] = [item.encode("utf-8") if isinstance(item, str) else bytes(item) for item in flat]
        return out.reshape(tuple(shape))
    return np.asarray(data, dtype=dtype).reshape(tuple(shape))
