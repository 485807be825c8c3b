"""TensorFlow Serving's REST API, one protocol on the serving core (``core``).

    POST /v1/models/<name>[/versions/<n>|/labels/<l>]:predict    {"instances": [...]} or {"inputs": ...}
    POST /v1/models/<name>[...]:classify / :regress               {"examples": [...]} (tfserving_examples)
    GET  /v1/models/<name>[/versions/<n>|/labels/<l>]            version status
    GET  /v1/models/<name>[/versions/<n>|/labels/<l>]/metadata   every signature of the SavedModel

Answers are shaped as TensorFlow Serving shapes them, so its existing clients work
unchanged; errors are ``{"error": "<message>"}`` with the status ``errors.HTTP_STATUS``
gives their code. A label names a version through the model's ``VERSION_LABELS``
setting; any other URL under ``v1`` is a JSON 404 (``NOT_FOUND``). Mounted
by the Django views (``tfbatch_django.urls``, ``urls_sync``) and the Channels fast door
(``routing.http_urlpatterns``), which drive the same flow.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..batching import Prediction
from ..conf import ModelConfig
from ..registry import registry
from . import codec
from .core import (
    Flow,
    HttpProtocol,
    Predict,
    Request,
    Response,
    allow,
    batch_headers,
    json_response,
    permitted_model,
)
from .errors import ServingError
from .model_io import checked_version, savedmodel_directory, savedmodel_signatures, served_version, signature_tensors
from .tfserving_body import parse_predict
from .tfserving_examples import METHODS, check_signature, parse_examples, render_results

__all__ = ["NOT_FOUND", "PROTOCOL", "ROUTE", "UNKNOWN_ROUTE", "Route", "TFServing", "UnknownEndpoint"]

#: The URL below the mount point; both front doors route with it (Django's ``re_path``
#: and Channels' ``URLRouter`` pass its groups as keyword arguments).
ROUTE = (
    r"v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>[0-9]+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<action>:[A-Za-z]+|/metadata)?/?$"
)
#: Every other URL under ``v1`` (routed after ``ROUTE``): a JSON 404. Only ``v1``, as
#: TensorFlow Serving's own handler: a project may mount the API at its root.
UNKNOWN_ROUTE = r"(?P<path>v1(?:/.*)?)$"

_PREDICT_METHOD = "tensorflow/serving/predict"

# numpy dtype name -> TensorFlow's DataType enum name, as TF Serving writes metadata.
_TF_DTYPES = {
    "float32": "DT_FLOAT",
    "float64": "DT_DOUBLE",
    "float16": "DT_HALF",
    "bfloat16": "DT_BFLOAT16",
    "int8": "DT_INT8",
    "int16": "DT_INT16",
    "int32": "DT_INT32",
    "int64": "DT_INT64",
    "uint8": "DT_UINT8",
    "uint16": "DT_UINT16",
    "uint32": "DT_UINT32",
    "uint64": "DT_UINT64",
    "bool": "DT_BOOL",
    "string": "DT_STRING",
}


@dataclass(frozen=True)
class Route:
    """What the URL named: the model, a version if any, and ``:predict``/``/metadata``/None."""

    model: str
    version: str | None = None
    action: str | None = None
    label: str | None = None


class TFServing(HttpProtocol):
    name = "tfserving"
    route = ROUTE

    def flow(self, request: Request) -> Flow[Response]:
        get = request.route.get
        route = Route(str(get("model")), get("version"), get("action"), get("label"))
        posting = _endpoint(route, request.method)
        config = yield from permitted_model(request.context, route.model)
        if route.label is not None:
            checked_version(config, str(_labelled_version(config, route.label)))
        if route.version is not None:
            checked_version(config, str(int(route.version)))  # "007" names version 7
        if route.action == ":predict":
            with codec.collector_paused():
                inputs, columnar = parse_predict(request.body, config)
            prediction: Prediction = yield Predict(route.model, inputs)
            return _predicted(prediction, columnar)
        if posting:  # :classify or :regress
            assert route.action is not None
            inputs_meta, _, method = yield from signature_tensors(config)
            name = check_signature(route.action, method or _PREDICT_METHOD, inputs_meta)
            examples = parse_examples(request.body, config)
            prediction = yield Predict(route.model, {name: examples})
            return json_response(200, render_results(route.action, prediction), batch_headers(prediction))
        if route.action is None:
            return _status(config)
        return (yield from _metadata(config))


PROTOCOL = TFServing()


class UnknownEndpoint(HttpProtocol):
    """Any other URL under the API's ``v1``: a JSON 404, not the framework's HTML page."""

    name = "tfserving_not_found"
    route = UNKNOWN_ROUTE

    def flow(self, request: Request) -> Flow[Response]:
        raise ServingError(
            "model_not_found",
            f"no endpoint {request.method} {request.route.get('path') or ''!r} here: TensorFlow Serving's REST API "
            "serves v1/models/<name>[/versions/<n>|/labels/<label>] with :predict, :classify, :regress, "
            "/metadata or nothing (status)",
        )
        yield  # a generator, like every flow


NOT_FOUND = UnknownEndpoint()


def _endpoint(route: Route, method: str) -> bool:
    """True for the POST verbs; False for the GET endpoints. Refuses other verbs and methods."""
    if route.action in (":predict", *METHODS):
        allow(method, "POST", route.action or "")
        return True
    if route.action not in (None, "/metadata"):
        # TensorFlow Serving's own answer to a verb it does not know.
        raise ServingError("bad_request", f"Malformed request: {method} v1/models/{route.model}{route.action}")
    allow(method, "GET, HEAD", "model status" if route.action is None else "metadata")
    return False


def _labelled_version(config: ModelConfig, label: str) -> int:
    labels = config.raw.get("VERSION_LABELS") or {}
    if label not in labels:
        raise ServingError("bad_request", f"Unrecognized servable version label: {label}")  # TF Serving's words
    return int(labels[label])


# ---------------------------------------------------------------- predict


def _predicted(prediction: Prediction, columnar: bool) -> Response:
    outputs = {name: _b64_if_named_bytes(name, out) for name, out in prediction.outputs.items()}
    if len(outputs) == 1:
        payload: dict[str, Any] = {"outputs" if columnar else "predictions": next(iter(outputs.values()))}
    elif columnar:
        payload = {"outputs": outputs}
    else:
        rows = len(next(iter(outputs.values())))
        payload = {"predictions": [{name: out[i] for name, out in outputs.items()} for i in range(rows)]}
    return json_response(200, payload, batch_headers(prediction))


def _b64_if_named_bytes(name: str, output: np.ndarray) -> np.ndarray:
    """A string output whose name ends in ``_bytes`` is written as ``{"b64": ...}``, text or
    not, as TensorFlow Serving writes it; other string outputs are text where they can be."""
    if not name.endswith("_bytes") or output.dtype.kind not in "OS":
        return output
    encoded = np.empty(output.shape, dtype=object)
    for index, item in np.ndenumerate(output):
        data = item.encode("utf-8") if isinstance(item, str) else bytes(item)
        encoded[index] = {"b64": base64.b64encode(data).decode("ascii")}
    return encoded


# ---------------------------------------------------------------- status and metadata

_STATES = {"not_loaded": "START", "loading": "LOADING", "warming": "LOADING", "ready": "AVAILABLE", "failed": "END"}


def _status(config: ModelConfig) -> Response:
    handle = registry.get(config.name)
    failed = handle.status == "failed"
    status = {"error_code": "UNKNOWN" if failed else "OK", "error_message": (handle.error or "") if failed else ""}
    entry = {"version": str(served_version(config)), "state": _STATES.get(handle.status, "UNKNOWN"), "status": status}
    return json_response(200, {"model_version_status": [entry]})


def _metadata(config: ModelConfig) -> Flow[Response]:
    """Every signature of the SavedModel (its ``serve`` meta graph), as TensorFlow Serving
    lists them, TensorFlow's ``__saved_model_init_op`` included; a Keras file or a custom
    runner has the one signature it serves, described once loaded."""
    if config.runner.format == "savedmodel":
        try:
            signatures = savedmodel_signatures(savedmodel_directory(config), internal=True)
        except (OSError, ValueError) as exc:  # the checks (E002) said so already
            raise ServingError("model_error", f"model {config.name!r}: its SavedModel cannot be read ({exc})") from None
        described = {name: (meta.inputs, meta.outputs, meta.method_name) for name, meta in signatures.items()}
    else:
        described = {config.runner.signature: (yield from signature_tensors(config))}
    signature_def = {
        name: {
            "inputs": {t.name: _tensor_info(t.dtype, t.shape, t.tensor_name) for t in inputs},
            "outputs": {t.name: _tensor_info(t.dtype, t.shape, t.tensor_name) for t in outputs},
            "method_name": method or ("" if name.startswith("__") else _PREDICT_METHOD),
        }
        for name, (inputs, outputs, method) in described.items()
    }
    return json_response(
        200,
        {
            "model_spec": {"name": config.name, "signature_name": "", "version": str(served_version(config))},
            "metadata": {"signature_def": {"signature_def": signature_def}},
        },
    )


def _tensor_info(dtype: str, shape: tuple[int | None, ...] | None, tensor_name: str) -> dict[str, Any]:
    """TF Serving's TensorInfo JSON; ``name`` (the graph tensor) only where the export has one."""
    dims = [] if shape is None else [{"size": str(-1 if d is None else d), "name": ""} for d in shape]
    info: dict[str, Any] = {
        "dtype": _TF_DTYPES.get(dtype, "DT_INVALID"),
        "tensor_shape": {"dim": dims, "unknown_rank": shape is None},
    }
    if tensor_name:
        info["name"] = tensor_name
    return info
