"""Open Inference Protocol (KServe v2) tensors <-> numpy: datatypes, shapes, binary data.

Pure numpy, no Django and no HTTP, so both directions of the protocol share one table:
the remote runner (``remote_v2.py``) that sends batches to an engine, and the v2 server
(``serving/kserve_v2*``), which may import runners (never the reverse).

The names are the protocol's (``"FP32"``, ``"INT64"``, ``"BYTES"``, ``"BOOL"``...).
The binary tensor data extension lays tensors out as raw little-endian row-major bytes,
no padding; ``BOOL`` one byte per element; ``BYTES`` as, per element, a 4-byte
little-endian unsigned length and then the bytes. Strings are numpy ``object`` arrays of
``bytes``, as everywhere in this project.

``BF16`` has no numpy dtype of its own (``ml_dtypes`` adds one when TensorFlow or JAX is
loaded): bfloat16 arrays are named and written as ``BF16``; ``BF16`` data read back
(an engine's outputs) is widened to float32, which holds every bfloat16 exactly; an
input declared ``BF16`` is refused by :func:`numpy_dtype`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "BF16",
    "BYTES",
    "DATATYPES",
    "datatype_of_name",
    "decode_binary",
    "decode_json",
    "encode_binary",
    "numpy_dtype",
    "parse_shape",
    "v2_datatype",
]

BYTES = "BYTES"
BF16 = "BF16"

#: v2 datatype -> numpy dtype (native order; the wire is little-endian). ``BYTES`` is
#: ``object`` (elements are ``bytes``).
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
    BYTES: np.dtype(object),
}

_BY_KIND_SIZE = {(dt.kind, dt.itemsize): name for name, dt in DATATYPES.items() if name != BYTES}
_LENGTH = struct.Struct("<I")


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The numpy dtype of a v2 datatype; ``ValueError`` naming the known ones if there is none."""
    try:
        return DATATYPES[datatype]
    except (KeyError, TypeError):
        if datatype == BF16:
            raise ValueError(
                "datatype 'BF16' is not accepted for inputs (numpy has no bfloat16); use FP32 "
                "(models cast it as they need)"
            ) from None
        raise ValueError(f"unknown datatype {datatype!r}; known: {', '.join(DATATYPES)}") from None


def v2_datatype(dtype: Any) -> str:
    """The v2 datatype of a numpy dtype, any byte order: strings and ``object`` are ``BYTES``."""
    dt = np.dtype(dtype)
    if dt.kind in "OSU":
        return BYTES
    if dt.name == "bfloat16":
        return BF16
    name = _BY_KIND_SIZE.get((dt.kind, dt.itemsize))
    if name is None:
        raise ValueError(f"numpy dtype {dt.name} has no Open Inference Protocol datatype")
    return name


def datatype_of_name(name: str) -> str:
    """The v2 datatype of a dtype name as the runners describe tensors (``"float32"``, ``"string"``)."""
    if name == "string":
        return BYTES
    if name == "bfloat16":
        return BF16
    try:
        return v2_datatype(np.dtype(name))
    except (TypeError, ValueError):  # a dtype numpy does not know, or one v2 lacks
        return name.upper()


def parse_shape(shape: Any) -> tuple[int | None, ...]:
    """A v2 shape (a list of ints, ``-1`` for any size) as a spec shape (``None`` for any size)."""
    if not isinstance(shape, list | tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape
    ):
        raise ValueError(f"a v2 shape is a list of integers >= -1, got {shape!r}")
    return tuple(None if d == -1 else d for d in shape)


def encode_binary(array: np.ndarray) -> bytes:
    """The binary-extension bytes of ``array`` (whose dtype decides the v2 datatype)."""
    if array.dtype.kind in "OSU":
        parts: list[bytes] = []
        for item in array.reshape(-1).tolist():
            data = item.encode("utf-8") if isinstance(item, str) else bytes(item)
            parts.append(_LENGTH.pack(len(data)))
            parts.append(data)
        return b"".join(parts)
    datatype = v2_datatype(array.dtype)
    if datatype == BF16:  # ml_dtypes' bfloat16: two bytes each, native (little-endian) order
        return np.ascontiguousarray(array).tobytes()
    return np.ascontiguousarray(array, dtype=DATATYPES[datatype].newbyteorder("<")).tobytes()


def decode_binary(buffer: bytes | bytearray | memoryview, datatype: str, shape: Sequence[int]) -> np.ndarray:
    """The tensor in ``buffer`` (exactly its bytes); ``ValueError`` saying what does not add up.

    Writable when ``buffer`` is a bytearray (and always for ``BYTES`` and ``BF16``).
    """
    count = int(np.prod(shape, dtype=np.int64))
    view = memoryview(buffer)
    if datatype == BYTES:
        items: list[bytes] = []
        offset = 0
        while offset < len(view):
            if offset + 4 > len(view):
                raise ValueError("BYTES binary data ends inside an element's 4-byte length")
            (length,) = _LENGTH.unpack_from(view, offset)
            offset += 4
            if offset + length > len(view):
                raise ValueError(f"BYTES element {len(items)} claims {length} bytes; only {len(view) - offset} remain")
            items.append(bytes(view[offset : offset + length]))
            offset += length
        if len(items) != count:
            raise ValueError(
                f"{len(items)} BYTES elements in the binary data for shape {list(shape)}; expected {count}"
            )
        out = np.empty(count, dtype=object)
        out[:] = items
        return out.reshape(tuple(shape))
    little = np.dtype("<u2") if datatype == BF16 else numpy_dtype(datatype).newbyteorder("<")
    if len(view) != count * little.itemsize:
        raise ValueError(
            f"{len(view)} bytes of binary data for {count} {datatype} elements of shape {list(shape)}; "
            f"expected {count * little.itemsize}"
        )
    array = np.frombuffer(view, dtype=little, count=count).reshape(tuple(shape))
    if datatype == BF16:  # the upper half of a float32: widen exactly
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array if little.isnative else array.astype(little.newbyteorder("="))


def decode_json(data: Any, datatype: str, shape: Sequence[int]) -> np.ndarray:
    """A tensor given as JSON ``data`` (flat or nested, row-major); ``BF16`` as float32."""
    if datatype == BYTES:
        flat = np.asarray(data, dtype=object).reshape(-1)
        out = np.empty(len(flat), dtype=object)
        out[:] = [item.encode("utf-8") if isinstance(item, str) else bytes(item) for item in flat]
        return out.reshape(tuple(shape))
    dtype = np.dtype(np.float32) if datatype == BF16 else numpy_dtype(datatype)
    return np.asarray(data, dtype=dtype).reshape(tuple(shape))
