"""An Open Inference Protocol ``infer`` request in, its answer out (JSON and binary tensors).

A request body is a JSON object, optionally followed by binary tensor data: the
``Inference-Header-Content-Length`` header then says where the JSON ends, and each
input with a ``binary_data_size`` parameter takes that many bytes, in input order.
JSON ``data`` may be flat or nested; either way it fills the declared ``shape``
row-major. Every way a request can be wrong is a ``bad_request`` that says what.

Outputs go back as JSON ``data`` (flat, row-major), or as binary data after the JSON
when the request asks (the output's ``binary_data`` parameter, or the request's
``binary_data_output`` parameter for every output not asking otherwise).
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..batching import Prediction
from ..runners import v2_datatypes
from . import codec
from .core import JSON, Response, batch_headers
from .errors import ServingError, too_large

__all__ = ["HEADER_LENGTH", "InferRequest", "compressed", "decoded_body", "parse_infer", "render_infer"]

HEADER_LENGTH = "inference-header-content-length"
_OCTETS = "application/octet-stream"


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    #: Requested outputs in order, each with whether it goes back as binary (None: as the
    #: request's ``binary_data_output`` says); None: every output.
    outputs: list[tuple[str, bool | None]] | None
    binary_output: bool  # the request's ``binary_data_output`` parameter


def _bad(message: str) -> ServingError:
    return ServingError("bad_request", message)


def parse_infer(body: bytes, headers: Mapping[str, str]) -> InferRequest:
    header, binary = _split(body, headers.get(HEADER_LENGTH))
    doc = codec.loads(header, what="the inference request")
    if not isinstance(doc, dict):
        raise _bad("the inference request must be a JSON object with 'inputs'")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise _bad("'id' must be a string")
    parameters = _parameters(doc, "the request")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise _bad("'inputs' must be a non-empty list of tensors ({'name', 'shape', 'datatype', 'data'})")
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for i, item in enumerate(inputs):
        name, array, offset = _input(i, item, binary, offset)
        if name in tensors:
            raise _bad(f"input {name!r} appears twice")
        tensors[name] = array
    if offset != len(binary):
        raise _bad(
            f"the body has {len(binary)} bytes of binary data after the JSON; "
            f"the inputs' binary_data_size parameters account for {offset}"
        )
    return InferRequest(request_id, tensors, _outputs(doc), _flag(parameters, "binary_data_output", "the request"))


def _split(body: bytes, declared: str | None) -> tuple[bytes, memoryview]:
    if declared is None:
        return body, memoryview(b"")
    try:
        length = int(declared)
    except ValueError:
        raise _bad(f"Inference-Header-Content-Length must be an integer, got {declared!r}") from None
    if not 0 <= length <= len(body):
        raise _bad(f"Inference-Header-Content-Length is {length}; the body has {len(body)} bytes")
    return body[:length], memoryview(body)[length:]


def _parameters(doc: dict[str, Any], what: str) -> dict[str, Any]:
    parameters = doc.get("parameters", {})
    if not isinstance(parameters, dict):
        raise _bad(f"'parameters' of {what} must be an object")
    return parameters


def _flag(parameters: dict[str, Any], key: str, what: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise _bad(f"parameter {key!r} of {what} must be true or false")
    return value


def _input(i: int, item: Any, binary: memoryview, offset: int) -> tuple[str, np.ndarray, int]:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise _bad(f"input {i} must be an object with a string 'name'")
    name: str = item["name"]
    what = f"input {name!r}"
    datatype = item.get("datatype")
    if not isinstance(datatype, str):
        raise _bad(f"{what} has no 'datatype'")
    try:
        dtype = v2_datatypes.numpy_dtype(datatype)
    except ValueError as exc:
        raise _bad(f"{what}: {exc}") from None
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise _bad(f"{what}: 'shape' must be a list of non-negative integers")
    parameters = _parameters(item, what)
    size = parameters.get("binary_data_size")
    if "shared_memory_region" in parameters:
        raise _bad(f"{what}: shared memory is not supported by this server; send the data in the body")
    if size is not None:
        if "data" in item:
            raise _bad(f"{what} has both 'data' and a binary_data_size parameter; send one")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _bad(f"{what}: binary_data_size must be a non-negative integer")
        if offset + size > len(binary):
            raise _bad(
                f"{what}: binary_data_size is {size} but only {len(binary) - offset} bytes of binary data remain"
            )
        try:
            array = v2_datatypes.decode_binary(binary[offset : offset + size], datatype, tuple(shape))
        except ValueError as exc:
            raise _bad(f"{what}: {exc}") from None
        return name, array, offset + size
    if "data" not in item:
        raise _bad(f"{what} has neither 'data' nor a binary_data_size parameter")
    return name, _from_json(what, item["data"], datatype, dtype, shape), offset


def _from_json(what: str, data: Any, datatype: str, dtype: np.dtype[Any], shape: list[int]) -> np.ndarray:
    """JSON ``data`` (flat or nested) -> an array of ``shape``, checked against ``datatype``.

    Numbers go through one ``np.asarray`` (C, not a Python loop per element): measured
    here on a 32x32x3 image (``bench/bench_protocols.py``), checking each element in
    Python first made a v2 JSON request cost 2.1x a TF Serving row-format one; now 0.5x.
    """
    count = int(np.prod(shape, dtype=np.int64))
    if datatype == v2_datatypes.BYTES:
        flat = _flatten(data if isinstance(data, list) else [data])
        if len(flat) != count:
            raise _bad(f"{what}: 'data' has {len(flat)} elements; shape {shape} holds {count}")
        if not all(isinstance(v, str) for v in flat):
            raise _bad(f"{what}: BYTES data must be strings")
        array = np.empty(count, dtype=object)
        array[:] = [v.encode("utf-8") for v in flat]
        return array.reshape(shape)
    try:
        raw = np.asarray(data)
    except (ValueError, OverflowError):
        raise _bad(f"{what}: 'data' is ragged or holds values that are not {datatype}") from None
    if raw.size != count:
        raise _bad(f"{what}: 'data' has {raw.size} elements; shape {shape} holds {count}")
    kind = raw.dtype.kind
    if datatype == "BOOL":
        if kind != "b" and raw.size:
            raise _bad(f"{what}: BOOL data must be true or false")
    elif kind not in "iuf" and raw.size:
        raise _bad(f"{what}: {datatype} data must be numbers")
    elif dtype.kind in "iu" and kind == "f":
        raise _bad(f"{what}: {datatype} data must be integers")
    elif dtype.kind in "iu" and raw.size:
        info = np.iinfo(dtype)
        if raw.min() < info.min or raw.max() > info.max:
            raise _bad(f"{what}: a value does not fit {datatype}")
    try:
        with np.errstate(over="raise", invalid="raise"):
            return raw.astype(dtype, copy=False).reshape(shape)
    except FloatingPointError:
        raise _bad(f"{what}: a value does not fit {datatype}") from None


def _flatten(data: list[Any]) -> list[Any]:
    if not any(isinstance(v, list) for v in data):
        return data
    out: list[Any] = []
    for v in data:
        out.extend(_flatten(v) if isinstance(v, list) else [v])
    return out


def _outputs(doc: dict[str, Any]) -> list[tuple[str, bool | None]] | None:
    outputs = doc.get("outputs")
    if outputs is None:
        return None
    if not isinstance(outputs, list):
        raise _bad("'outputs' must be a list of {'name': ...} objects")
    chosen: list[tuple[str, bool | None]] = []
    for i, item in enumerate(outputs):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise _bad(f"requested output {i} must be an object with a string 'name'")
        what = f"requested output {item['name']!r}"
        parameters = _parameters(item, what)
        if "shared_memory_region" in parameters:
            raise _bad(f"{what}: shared memory is not supported by this server")
        if "classification" in parameters:
            raise _bad(f"{what}: the classification extension is not supported by this server")
        chosen.append((item["name"], _flag(parameters, "binary_data", what) if "binary_data" in parameters else None))
    return chosen


def render_infer(model: str, version: int, request: InferRequest, prediction: Prediction) -> Response:
    """The ``infer`` answer: JSON, with binary outputs after it when asked for."""
    outputs = prediction.outputs
    if request.outputs is None:
        chosen = [(name, request.binary_output) for name in outputs]
    else:
        chosen = []
        for name, binary in request.outputs:
            if name not in outputs:
                raise _bad(f"model {model!r} has no output {name!r}; its outputs: {', '.join(map(repr, outputs))}")
            chosen.append((name, request.binary_output if binary is None else binary))
    rendered: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, binary in chosen:
        array = outputs[name]
        try:
            datatype = v2_datatypes.v2_datatype(array.dtype)
        except ValueError as exc:
            raise ServingError("model_error", f"output {name!r}: {exc}") from None
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            blob = v2_datatypes.encode_binary(array)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_data(name, array)
        rendered.append(entry)
    payload: dict[str, Any] = {"model_name": model, "model_version": str(version)}
    if request.id is not None:
        payload["id"] = request.id
    payload["outputs"] = rendered
    header = codec.dumps(payload)
    headers = batch_headers(prediction)
    if not blobs:
        return Response(200, header, {"Content-Type": JSON, **headers})
    headers["Inference-Header-Content-Length"] = str(len(header))
    return Response(200, b"".join([header, *blobs]), {"Content-Type": _OCTETS, **headers})


_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def decoded_body(body: bytes, headers: Mapping[str, str], limit: int) -> bytes:
    """The body, decompressed when ``Content-Encoding`` says gzip or deflate (as
    ``tritonclient`` sends it with ``request_compression_algorithm``); never more than
    ``limit`` bytes decompressed, so a small bomb cannot fill the memory."""
    encoding = headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in _WBITS:
        raise _bad(f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or none")
    inflater = zlib.decompressobj(_WBITS[encoding])
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise _bad(f"the body is not valid {encoding} data ({exc})") from None
    if len(data) > limit:
        raise too_large(limit + 1, limit, what="the decompressed request body has at least")
    if not inflater.eof:
        raise _bad(f"the {encoding} body is truncated")
    return data


def compressed(response: Response, accept: str | None) -> Response:
    """The answer compressed as ``Accept-Encoding`` asks (gzip or deflate), else as it is.
    ``Inference-Header-Content-Length`` still counts the uncompressed JSON, as the
    protocol's clients read it after decompressing."""
    tokens = {t.split(";")[0].strip().lower() for t in (accept or "").split(",")}
    if "gzip" in tokens:
        body, encoding = gzip.compress(response.body, compresslevel=1), "gzip"
    elif "deflate" in tokens:
        body, encoding = zlib.compress(response.body, 1), "deflate"
    else:
        return response
    return replace(response, body=body, headers={**response.headers, "Content-Encoding": encoding})


def _json_data(name: str, array: np.ndarray) -> Any:
    flat = array.reshape(-1)
    if flat.dtype.kind not in "OSU":
        return flat
    items = []
    for item in flat.tolist():
        if isinstance(item, bytes):
            try:
                item = item.decode("utf-8")
            except UnicodeDecodeError:
                raise _bad(
                    f"output {name!r} holds bytes that are not UTF-8 text; "
                    'request it as binary data (parameters {"binary_data": true})'
                ) from None
        items.append(item)
    return items
