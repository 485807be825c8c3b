"""JSON in and out, for every front door.

orjson, not the standard library: measured here on a 26 KB request body (a 32x32x3
image), ``json.loads`` takes 0.44 ms and ``orjson.loads`` 0.22 ms; writing a batch of
64 x 1000 float32 outputs takes 42 ms through ``tolist()`` + ``json.dumps`` and 2 ms
through orjson's native numpy support. It also writes float32 values in their
shortest float32 form (``0.1``, not ``0.10000000149011612``), as TensorFlow Serving does.

Non-finite numbers follow TensorFlow Serving too: requests may hold ``NaN``,
``Infinity`` and ``-Infinity`` (not JSON, but what its parser accepts), and answers
write them as those literals, where orjson alone would write ``null`` and silently
change the data. Both cost nothing on finite data: the standard library parses a body
only when orjson refused it and it mentions one of the literals, and an output array
is written by hand only when ``np.isfinite`` finds a non-finite value in it.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import json
import math
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson

from .errors import ServingError

__all__ = ["as_tensors", "collector_paused", "decode_b64", "dumps", "loads", "too_deep"]

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
_NON_FINITE = re.compile(rb"NaN|Infinity")


def loads(data: bytes | str, *, what: str = "the request") -> Any:
    """Parse JSON (plus ``NaN``/``Infinity``/``-Infinity``), or raise ``bad_request`` saying where it broke."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raw = data.encode() if isinstance(data, str) else data
        if _NON_FINITE.search(raw):
            try:
                return json.loads(raw)  # the standard library accepts the three literals
            except RecursionError:
                raise too_deep(what) from None
            except ValueError:
                pass
        raise ServingError("bad_request", f"{what} is not valid JSON ({exc})") from None


def too_deep(what: str = "the request") -> ServingError:
    """Structure nested deeper than any tensor (numpy allows 64 dimensions) can be."""
    return ServingError("bad_request", f"{what} is nested too deeply; a tensor has at most 64 dimensions")


def dumps(value: Any) -> bytes:
    """Serialize answers: dicts, lists, numbers, strings and numpy arrays or scalars."""
    return orjson.dumps(_literals(value), default=_default, option=_OPTIONS)


def dumps_finite(value: Any) -> bytes:
    """``dumps`` for values known to hold no non-finite float (a binary answer's header:
    batch sizes and times, dtypes and shapes, and an id unless it is a non-finite float,
    which requests may hold), without the walk that looks for them: ~2 µs less per
    answer (bench_gpu's host-path rows)."""
    return orjson.dumps(value, default=_default, option=_OPTIONS)


def _literals(value: Any) -> Any:
    """``value`` with every non-finite float array or number replaced by its JSON written
    with TensorFlow Serving's literals (an ``orjson.Fragment``); finite data untouched."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f" and value.size and not np.isfinite(value).all():
            return orjson.Fragment(_write_non_finite(value))
        return value
    if isinstance(value, dict):
        return {k: _literals(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_literals(v) for v in value]
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return orjson.Fragment(_literal(float(value)))
    return value


def _literal(value: float) -> bytes:
    return b"NaN" if math.isnan(value) else b"Infinity" if value > 0 else b"-Infinity"


def _write_non_finite(array: np.ndarray) -> bytes:
    """orjson writes the array (floats in their shortest form, non-finite ones as ``null``,
    the only ``null`` a numeric array can hold); each ``null`` becomes its literal, in order."""
    if array.dtype == np.float16:
        array = array.astype(np.float64)  # orjson has no float16; written as finite float16 arrays are
    written = orjson.dumps(np.ascontiguousarray(array), option=_OPTIONS)
    literals = iter([_literal(float(v)) for v in array[~np.isfinite(array)].ravel()])
    return re.sub(rb"null", lambda _: next(literals), written)


def _default(obj: Any) -> Any:
    """What orjson cannot write natively: string tensors, float16, non-contiguous arrays."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "OSU":
            return _strings(obj.tolist())
        if obj.dtype.kind in "biuf" and obj.dtype != np.float16 and not obj.flags.c_contiguous:
            # A contiguous copy orjson writes natively: float32 in its shortest float32 form.
            return np.ascontiguousarray(obj)
        return obj.tolist()
    if isinstance(obj, bytes):
        return _bytes(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot serialize {type(obj).__name__}")


def _strings(value: Any) -> Any:
    if isinstance(value, list):
        return [_strings(v) for v in value]
    return _bytes(value) if isinstance(value, bytes) else value


def _bytes(value: bytes) -> Any:
    """UTF-8 text as a string; anything else as TensorFlow Serving's ``{"b64": ...}``."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode("ascii")}


def decode_b64(value: Any) -> Any:
    """Replace TensorFlow Serving's ``{"b64": "<base64>"}`` values by the bytes they hold.

    Called only when the raw body mentions ``"b64"``, so numeric requests never pay
    for the walk.
    """
    if isinstance(value, list):
        return [decode_b64(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"b64"}:
            encoded = value["b64"]
            if not isinstance(encoded, str):
                raise ServingError("bad_request", '{"b64": ...} must hold a base64 string')
            try:
                return base64.b64decode(encoded, validate=True)
            except ValueError:
                raise ServingError("bad_request", f'{{"b64": {encoded[:20]!r}...}} is not valid base64') from None
        return {k: decode_b64(v) for k, v in value.items()}
    return value


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Parse a request with the cyclic garbage collector paused.

    A 32x32x3 image arrives as ~1,000 nested lists. Parsed with the collector running,
    the half-built lists survive collections and get promoted into the oldest
    generation, and those promotions trigger full collections, which in a process
    holding TensorFlow walk ~400,000 objects: measured here, 64 WebSocket clients
    sending such images caused 21 full collections costing 3.6 s of a 4 s run. Paused
    for the parse (well under a millisecond) and with the lists turned into arrays
    before it resumes (``as_tensors``), the lists die by reference counting first.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def as_tensors(value: Any) -> Any:
    """Numeric nested lists -> numpy arrays, so the lists die while the request is parsed.

    Anything that is not a rectangular numeric array (strings, ragged lists) is left
    for the model's input check to accept or refuse, with its own message.
    """
    if isinstance(value, dict):
        return {name: as_tensors(item) for name, item in value.items()}
    if isinstance(value, list):
        try:
            array = np.asarray(value)
        except (ValueError, TypeError):
            return value
        if array.dtype.kind in "biuf":
            return array
    return value
