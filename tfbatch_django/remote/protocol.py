"""The messages web processes and workers exchange over the channel layer.

Plain dicts of msgpack types (the layer's serializer), tensors as raw bytes plus dtype
and shape, never nested lists: a 32x32x3 float32 image is 12 KB of bytes here against
~23 KB of JSON-like lists, and ``np.frombuffer`` reads it back without a copy.

One message may carry several requests (``requests``) or several replies (``replies``):
a web process that has a burst of requests for one worker sends them as one message, and
a worker answers a finished batch with one message per web process (see ``client.py``).

Names::

    tfbatch.w.<worker>       the worker name's request channel (any worker of the name takes each message)
    tfbatch.ctl.<worker>     group of the workers of a name: cancellations and pings
    tfbatch.hb.<worker>      group of the web processes using a worker name: heartbeats

No Django and no Channels here, so both sides and the tests share it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..batching import BatchInfo, Prediction
from ..exceptions import (
    InvalidInput,
    ModelError,
    ModelLoadError,
    ModelNotFound,
    Overloaded,
    PredictTimeout,
    TFBatchError,
    WorkerUnavailable,
)

__all__ = [
    "CANCEL",
    "HEARTBEAT",
    "PING",
    "PREDICT",
    "REPLY",
    "control_group",
    "decode_arrays",
    "decode_error",
    "decode_prediction",
    "encode_arrays",
    "encode_error",
    "encode_prediction",
    "heartbeat_group",
    "request_channel",
]

PREDICT = "tfbatch.predict"  # web -> worker channel: {"reply", "sent", "requests": [[id, model, timeout, inputs]]}
REPLY = "tfbatch.reply"  # worker -> web reply channel: {"replies": [[id, ok, payload]]}
CANCEL = "tfbatch.cancel"  # web -> worker group: {"reply", "ids": [...]}
PING = "tfbatch.ping"  # web -> worker group: {"reply"}: answer with a heartbeat now
HEARTBEAT = "tfbatch.heartbeat"  # worker -> web group (or one reply channel): see server.Heartbeat

_ERRORS: dict[str, type[TFBatchError]] = {
    cls.__name__: cls
    for cls in (
        InvalidInput,
        ModelError,
        ModelLoadError,
        ModelNotFound,
        Overloaded,
        PredictTimeout,
        WorkerUnavailable,
    )
}


def request_channel(worker: str) -> str:
    return f"tfbatch.w.{worker}"


def control_group(worker: str) -> str:
    return f"tfbatch.ctl.{worker}"


def heartbeat_group(worker: str) -> str:
    return f"tfbatch.hb.{worker}"


def encode_arrays(arrays: dict[str, np.ndarray]) -> dict[str, list[Any]]:
    """``{name: [dtype, shape, data]}``: raw bytes for numbers, a flat list of bytes for strings."""
    encoded: dict[str, list[Any]] = {}
    for name, array in arrays.items():
        if array.dtype.kind == "O":
            encoded[name] = ["string", list(array.shape), list(array.reshape(-1))]
        else:
            # Little-endian on the wire, whatever the host ('<' is a no-op on x86 and ARM).
            array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
            encoded[name] = [array.dtype.str, list(array.shape), array.tobytes()]
    return encoded


def decode_arrays(encoded: dict[str, list[Any]]) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for name, (dtype, shape, data) in encoded.items():
        if dtype == "string":
            array = np.empty(len(data), dtype=object)
            array[:] = data
            arrays[name] = array.reshape(shape)
        else:
            arrays[name] = np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape)
    return arrays


def encode_prediction(prediction: Prediction) -> dict[str, Any]:
    return {"outputs": encode_arrays(prediction.outputs), "batch": list(prediction.batch)}


def decode_prediction(payload: dict[str, Any]) -> Prediction:
    return Prediction(decode_arrays(payload["outputs"]), BatchInfo(*payload["batch"]))


def encode_error(error: BaseException) -> dict[str, Any]:
    """An error as ``{"class", "message", "input"}``; anything not ours travels as ``ModelError``."""
    if isinstance(error, TFBatchError) and type(error).__name__ in _ERRORS:
        return {"class": type(error).__name__, "message": error.message, "input": getattr(error, "input", None)}
    return {"class": "ModelError", "message": f"worker: {type(error).__name__}: {error}", "input": None}


def decode_error(payload: dict[str, Any], model: str) -> TFBatchError:
    cls = _ERRORS.get(payload.get("class", ""), ModelError)
    if cls is InvalidInput:
        return InvalidInput(payload["message"], model=model, input=payload.get("input"))
    return cls(payload["message"], model=model)
