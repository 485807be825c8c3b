"""Serialize ``tf.Example`` protos in pure Python, for ``:classify`` and ``:regress``.

TensorFlow Serving's Classify and Regress APIs take examples as JSON objects of feature
name -> value(s) and feed the model serialized ``tf.Example`` protos. The message is
small (Example -> Features -> map of Feature -> one of three lists), so it is written
here directly on the protobuf wire format instead of importing TensorFlow into the
serving layer. The bytes equal ``tf.train.Example(...).SerializeToString()`` (tested).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

__all__ = ["serialize_example"]


def serialize_example(features: Mapping[str, Any]) -> bytes:
    """One ``tf.Example``: each value a number, a string, bytes, or a list of one kind.

    Integers become an ``int64_list``, numbers with a fraction (or lists with any) a
    ``float_list``, strings and bytes a ``bytes_list``. ``ValueError`` says what is wrong.
    """
    entries = b"".join(
        _field(1, _field(1, name.encode("utf-8")) + _field(2, _feature(name, value)))
        for name, value in features.items()
    )
    return _field(1, entries)  # Example.features -> Features.feature (map entries)


def _feature(name: str, value: Any) -> bytes:
    values = value if isinstance(value, list) else [value]
    if all(isinstance(v, str | bytes) for v in values):
        items = b"".join(_field(1, v.encode("utf-8") if isinstance(v, str) else v) for v in values)
        return _field(1, items)  # Feature.bytes_list
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise ValueError(f"feature {name!r} must hold numbers or strings of one kind, got {value!r}")
    if any(isinstance(v, float) for v in values):
        return _field(2, _field(1, struct.pack(f"<{len(values)}f", *values)))  # Feature.float_list, packed
    packed = b"".join(_varint(v & 0xFFFFFFFFFFFFFFFF) for v in values)
    return _field(3, _field(1, packed))  # Feature.int64_list, packed


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
