"""The WebSocket message protocol: one JSON object per text frame, each way.

    request  {"id": "a1", "model": "digits", "inputs": [[...]], "timeout_ms": 500}
    answer   {"id": "a1", "outputs": [[...]], "batch": {"size": 12, "queue_ms": 1.9, "run_ms": 0.8}}
    failure  {"id": "a1", "error": {"code": "invalid_input", "message": "..."}}

``inputs`` is a nested list (one-input models) or an object of input name -> nested
list; ``outputs`` is a nested list for one-output models, else an object of output name
-> nested list. The id is the client's, echoed so it can match answers to requests
that complete out of order; it is ``null`` in the failure when it could not be read.

Parsing is strict and specific: every problem with a frame gets its own message
naming the field and what is expected, and never disturbs the socket or its other
requests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..batching import Prediction
from . import codec
from .errors import ServingError, describe_error

__all__ = ["FIELDS", "FrameError", "Message", "answer", "failure", "parse_message"]

MessageId = str | int | float | None

FIELDS = ("id", "model", "inputs", "timeout_ms")


@dataclass(frozen=True)
class Message:
    id: MessageId
    model: str
    inputs: Any
    timeout: float | None  # seconds


class FrameError(ServingError):
    """A frame refused before it became a request; carries the id when one was read."""

    def __init__(self, code: str, message: str, message_id: MessageId = None) -> None:
        super().__init__(code, message)
        self.message_id = message_id


def parse_message(text: str, max_bytes: int) -> Message:
    """A request from one text frame, or ``FrameError`` saying exactly what is wrong."""
    with codec.collector_paused():
        return _parse(text, max_bytes)


def _parse(text: str, max_bytes: int) -> Message:
    if len(text) > max_bytes:
        raise FrameError(
            "too_large",
            f"the frame has {len(text)} characters; the limit is {max_bytes} (TFBATCH['MAX_REQUEST_BYTES'])",
        )
    try:
        doc = codec.loads(text, what="the frame")
    except ServingError as exc:
        raise FrameError(exc.code, exc.message) from None
    if not isinstance(doc, dict):
        raise FrameError("bad_request", f"a request is a JSON object with fields {', '.join(FIELDS)}")
    message_id = doc.get("id")
    if not _is_id(message_id):
        raise FrameError(
            "bad_request",
            "'id' is missing or not a string or number; every request needs an id to match its answer",
        )

    def bad(text: str) -> FrameError:
        return FrameError("bad_request", text, message_id)

    unknown = [key for key in doc if key not in FIELDS]
    if unknown:
        raise bad(f"unknown field(s) {', '.join(map(repr, unknown))}; the fields are {', '.join(FIELDS)}")
    model = doc.get("model")
    if not isinstance(model, str) or not model:
        raise bad("'model' is missing or not a non-empty string naming a configured model")
    if "inputs" not in doc:
        raise bad("'inputs' is missing: send a nested list, or an object of input name -> nested list")
    inputs = doc["inputs"]
    if not isinstance(inputs, list | dict):
        raise bad(
            f"'inputs' must be a nested list (with a leading batch dimension) or an object of input name -> "
            f"nested list, got {type(inputs).__name__}"
        )
    if '"b64"' in text:
        try:
            inputs = codec.decode_b64(inputs)
        except ServingError as exc:
            raise bad(exc.message) from None
    timeout_ms = doc.get("timeout_ms")
    if timeout_ms is not None and not (
        isinstance(timeout_ms, int | float) and not isinstance(timeout_ms, bool) and 0 < timeout_ms < math.inf
    ):
        raise bad(f"'timeout_ms' must be a positive number of milliseconds, got {timeout_ms!r}")
    return Message(message_id, model, codec.as_tensors(inputs), None if timeout_ms is None else timeout_ms / 1000.0)


def _is_id(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def answer(message_id: MessageId, prediction: Prediction) -> str:
    batch = prediction.batch
    return codec.dumps(
        {
            "id": message_id,
            "outputs": prediction.value(),
            "batch": {"size": batch.size, "queue_ms": round(batch.queue_ms, 3), "run_ms": round(batch.run_ms, 3)},
        }
    ).decode()


def failure(message_id: MessageId, exc: BaseException) -> str:
    code, message = describe_error(exc)
    return codec.dumps({"id": message_id, "error": {"code": code, "message": message}}).decode()
