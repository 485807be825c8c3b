"""The body of a ``:predict`` request, TensorFlow Serving's way, into ``predict()``'s inputs.

Row format (``"instances"``: one item per row, plain values or objects of input name ->
value) becomes columns; columnar format (``"inputs"``) is taken as it is. Either may
carry TF Serving's ``{"b64": ...}`` binary strings. Every way a body can be wrong is a
``bad_request`` that says what was expected.
"""

from __future__ import annotations

from typing import Any

from ..conf import ModelConfig
from . import codec
from .errors import ServingError

__all__ = ["check_signature_name", "parse_predict"]


def parse_predict(body: bytes, config: ModelConfig) -> tuple[Any, bool]:
    """The model inputs and whether the request was columnar, from a ``:predict`` body
    (within ``MAX_REQUEST_BYTES``: every door refuses a larger one before it gets here)."""
    doc = codec.loads(body, what="the request body")
    if not isinstance(doc, dict):
        raise ServingError(
            "bad_request", f"the request body must be a JSON object with 'instances' or 'inputs', got {_kind(doc)}"
        )
    check_signature_name(doc, config)
    has_rows, has_columns = "instances" in doc, "inputs" in doc
    if has_rows == has_columns:
        raise ServingError(
            "bad_request",
            "send exactly one of 'instances' (row format: a list with one item per row) or "
            "'inputs' (columnar format: a tensor, or an object of input name -> tensor)"
            + ("; this request has both" if has_rows else ""),
        )
    value = doc["instances"] if has_rows else doc["inputs"]
    try:
        if b'"b64"' in body:
            value = codec.decode_b64(value)
        return codec.as_tensors(_rows_to_columns(value) if has_rows else value), has_columns
    except RecursionError:
        raise codec.too_deep("the request body") from None


def check_signature_name(doc: dict[str, Any], config: ModelConfig) -> None:
    """A body's ``signature_name`` (TF Serving's every POST has one) may only name the
    model's ``SIGNATURE``, or be absent or empty."""
    signature = doc.get("signature_name")
    if signature not in (None, "", config.runner.signature):
        raise ServingError(
            "bad_request",
            f"model {config.name!r} serves signature {config.runner.signature!r}, not {signature!r}; "
            "configure another model on the same PATH with that SIGNATURE to serve it",
        )


_KINDS: dict[type, str] = {dict: "an object", list: "a list", str: "a string"}


def _kind(value: Any) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def _rows_to_columns(instances: Any) -> Any:
    """Row format -> what ``predict()`` takes: a list of rows, or {input name: rows}."""
    if not isinstance(instances, list):
        raise ServingError("bad_request", f"'instances' must be a list with one item per row, got {_kind(instances)}")
    if not instances:
        raise ServingError("bad_request", "'instances' is empty; send at least one row")
    first = instances[0]
    if not isinstance(first, dict):
        if any(isinstance(row, dict) for row in instances):
            raise ServingError("bad_request", "'instances' mixes objects and plain values; use one form for every row")
        return instances
    names = first.keys()
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for i, row in enumerate(instances):
        if not isinstance(row, dict) or row.keys() != names:
            raise ServingError(
                "bad_request",
                f"instance {i} does not have the inputs of instance 0 ({', '.join(map(repr, names))}); "
                "every instance must name the same inputs",
            )
        for name, item in row.items():
            columns[name].append(item)
    return columns
