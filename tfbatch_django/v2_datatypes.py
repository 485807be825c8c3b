"""The Open Inference Protocol's ("KServe v2") tensor datatypes, and their binary form.

numpy only, no Django, no TensorFlow: the v2 server (``serving/kserve_v2*``) and a v2
client runner can both import it. The names are the protocol's (``"FP32"``,
``"INT64"``, ``"BYTES"``, ``"BOOL"``...); string tensors are numpy ``object`` arrays
holding ``bytes``, as everywhere in this project.

Binary form (the binary tensor data extension): little-endian, row-major, no padding;
``BOOL`` one byte per element; ``BYTES`` each element as a 4-byte little-endian
unsigned length followed by its bytes.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

__all__ = [
    "BF16",
    "BYTES",
    "TO_NUMPY",
    "datatype_of",
    "datatype_of_name",
    "from_binary",
    "numpy_dtype",
    "to_binary",
]

BYTES = "BYTES"
BF16 = "BF16"

#: v2 datatype -> numpy dtype (little-endian). ``BF16`` has no numpy dtype of its own
#: (``ml_dtypes`` adds one when TensorFlow or JAX is loaded): bfloat16 outputs are named
#: and written, inputs of that datatype are refused.
TO_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    BYTES: np.dtype(object),
}

_BY_KIND_SIZE = {(dt.kind, dt.itemsize): name for name, dt in TO_NUMPY.items() if name != BYTES}


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The numpy dtype for a v2 datatype; ``KeyError`` naming the known ones if unknown."""
    try:
        return TO_NUMPY[datatype]
    except KeyError:
        if datatype == BF16:
            raise KeyError("datatype 'BF16' is not accepted here; send FP32 (it is cast as the model needs)") from None
        raise KeyError(f"unknown datatype {datatype!r}; known: {', '.join(TO_NUMPY)}") from None


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The v2 datatype of a numpy dtype: strings and bytes (``object``, ``S``, ``U``) are ``BYTES``."""
    if dtype.kind in "OSU":
        return BYTES
    if dtype.name == "bfloat16":
        return BF16
    name = _BY_KIND_SIZE.get((dtype.kind, dtype.itemsize))
    if name is None:
        raise ValueError(f"numpy dtype {dtype} has no Open Inference Protocol datatype")
    return name


def datatype_of_name(name: str) -> str:
    """The v2 datatype of a dtype name as the runners describe tensors (``"float32"``, ``"string"``)."""
    if name == "string":
        return BYTES
    if name == "bfloat16":
        return BF16
    try:
        return datatype_of(np.dtype(name))
    except (TypeError, ValueError):  # a dtype numpy does not know
        return name.upper()


def to_binary(array: np.ndarray) -> bytes:
    """A tensor's bytes in the binary extension's layout."""
    if array.dtype.kind in "OSU":
        parts: list[bytes] = []
        for item in array.reshape(-1).tolist():
            data = item.encode("utf-8") if isinstance(item, str) else bytes(item)
            parts.append(struct.pack("<I", len(data)))
            parts.append(data)
        return b"".join(parts)
    datatype = datatype_of(array.dtype)
    if datatype == BF16:  # two bytes each, the upper half of a float32
        return np.ascontiguousarray(array).tobytes()
    return np.ascontiguousarray(array, dtype=TO_NUMPY[datatype]).tobytes()


def from_binary(data: bytes | memoryview, datatype: str, shape: tuple[int, ...]) -> np.ndarray:
    """A tensor from its binary form; ``ValueError`` saying what does not add up."""
    count = int(np.prod(shape, dtype=np.int64))
    dtype = numpy_dtype(datatype)
    if datatype != BYTES:
        if len(data) != count * dtype.itemsize:
            raise ValueError(
                f"{len(data)} bytes of binary data for {count} {datatype} elements of shape {list(shape)}; "
                f"expected {count * dtype.itemsize}"
            )
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    view = memoryview(data)
    items: list[bytes] = []
    pos = 0
    while pos < len(view):
        if pos + 4 > len(view):
            raise ValueError("BYTES binary data ends inside an element's 4-byte length")
        (length,) = struct.unpack_from("<I", view, pos)
        pos += 4
        if pos + length > len(view):
            raise ValueError(f"BYTES element {len(items)} claims {length} bytes; only {len(view) - pos} remain")
        items.append(bytes(view[pos : pos + length]))
        pos += length
    if len(items) != count:
        raise ValueError(f"{len(items)} BYTES elements in the binary data for shape {list(shape)}; expected {count}")
    array = np.empty(count, dtype=object)
    array[:] = items
    return array.reshape(shape)
