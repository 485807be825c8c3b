"""TensorFlow Serving's REST API, one protocol on the serving core (``core``).

    POST /v1/models/<name>[/versions/<n>]:predict   {"instances": [...]} or {"inputs": ...}
    GET  /v1/models/<name>[/versions/<n>]           version status
    GET  /v1/models/<name>[/versions/<n>]/metadata  signature

Answers are shaped as TensorFlow Serving shapes them, so its existing clients work
unchanged; errors are ``{"error": "<message>"}`` with the status ``errors.HTTP_STATUS``
gives their code. Mounted by the Django views (``tfbatch_django.urls``, ``urls_sync``)
and the Channels fast door (``routing.http_urlpatterns``), which drive the same flow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..batching import Prediction
from ..conf import ModelConfig
from ..exceptions import ModelNotFound
from ..registry import READY, ModelHandle, registry
from . import codec
from .core import (
    Flow,
    HttpProtocol,
    Load,
    Predict,
    Request,
    Response,
    WrongMethod,
    error_response,
    json_response,
    permitted_model,
)
from .errors import ServingError
from .model_io import savedmodel_directory, savedmodel_signatures, served_version
from .options import serving_options
from .tfserving_body import parse_predict

__all__ = ["PROTOCOL", "ROUTE", "Route", "TFServing", "error_response"]

#: The URL below the mount point; both front doors route with it (Django's ``re_path``
#: and Channels' ``URLRouter`` pass its groups as keyword arguments).
ROUTE = r"v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>[0-9]+))?(?P<action>:[A-Za-z]+|/metadata)?/?$"

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


class TFServing(HttpProtocol):
    name = "tfserving"
    route = ROUTE

    def flow(self, request: Request) -> Flow[Response]:
        route = Route(str(request.route["model"]), request.route.get("version"), request.route.get("action"))
        predicting = _endpoint(route, request.method)
        config = yield from permitted_model(request.context, route.model)
        if route.version is not None:
            _check_version(config, int(route.version))
        if predicting:
            with codec.collector_paused():
                inputs, columnar = parse_predict(request.body, config, serving_options())
            prediction: Prediction = yield Predict(route.model, inputs)
            return _predicted(prediction, columnar)
        if route.action is None:
            return _status(config)
        return (yield from _metadata(config))


PROTOCOL = TFServing()


def _endpoint(route: Route, method: str) -> bool:
    """True for ``:predict``; False for the GET endpoints. Refuses other verbs and methods."""
    if route.action == ":predict":
        if method != "POST":
            raise WrongMethod(method, "POST", ":predict")
        return True
    if route.action not in (None, "/metadata"):
        raise ServingError(
            "bad_request",
            f"{route.action!r} is not supported: this server offers TensorFlow Serving's Predict API "
            "(':predict'), model status and '/metadata'",
        )
    if method not in ("GET", "HEAD"):
        raise WrongMethod(method, "GET, HEAD", "model status" if route.action is None else "metadata")
    return False


_version = served_version


def _check_version(config: ModelConfig, version: int) -> None:
    served = _version(config)
    if version != served:
        raise ModelNotFound(
            f"model {config.name!r} has no version {version}; it serves version {served}", model=config.name
        )


# ---------------------------------------------------------------- predict


def _predicted(prediction: Prediction, columnar: bool) -> Response:
    outputs = prediction.outputs
    if columnar:
        payload: dict[str, Any] = {"outputs": prediction.value()}
    elif len(outputs) == 1:
        payload = {"predictions": prediction.value()}
    else:
        rows = len(next(iter(outputs.values())))
        payload = {"predictions": [{name: out[i] for name, out in outputs.items()} for i in range(rows)]}
    batch = prediction.batch
    return json_response(
        200,
        payload,
        {
            "X-TFBatch-Batch-Size": str(batch.size),
            "X-TFBatch-Queue-Ms": f"{batch.queue_ms:.3f}",
            "X-TFBatch-Run-Ms": f"{batch.run_ms:.3f}",
        },
    )


# ---------------------------------------------------------------- status and metadata

_STATES = {"not_loaded": "START", "loading": "LOADING", "warming": "LOADING", "ready": "AVAILABLE", "failed": "END"}


def _status(config: ModelConfig) -> Response:
    handle = registry.get(config.name)
    failed = handle.status == "failed"
    status = {"error_code": "UNKNOWN" if failed else "OK", "error_message": (handle.error or "") if failed else ""}
    entry = {"version": str(_version(config)), "state": _STATES.get(handle.status, "UNKNOWN"), "status": status}
    return json_response(200, {"model_version_status": [entry]})


def _metadata(config: ModelConfig) -> Flow[Response]:
    signature = config.runner.signature
    if config.runner.format == "savedmodel":
        assert config.runner.path is not None
        try:
            meta = savedmodel_signatures(savedmodel_directory(config))[signature]
        except (OSError, ValueError, KeyError) as exc:  # the checks (E002, E005) said so already
            raise ServingError(
                "model_error", f"model {config.name!r}: its SavedModel signature {signature!r} cannot be read ({exc})"
            ) from None
        inputs = [(t.name, t.dtype, t.shape, t.tensor_name) for t in meta.inputs]
        outputs = [(t.name, t.dtype, t.shape, t.tensor_name) for t in meta.outputs]
        method = meta.method_name or _PREDICT_METHOD
    else:  # Keras files and custom runners describe themselves once loaded
        handle: ModelHandle = registry.get(config.name)
        if handle.status != READY:
            yield Load(config.name)
        if handle.status != READY:
            raise ServingError("model_error", handle.error or f"model {config.name!r} is not loaded")
        info = handle.runner_info
        inputs = [(t["name"], t["dtype"], _shape(t["shape"]), "") for t in info["inputs"]]
        outputs = [(t["name"], t["dtype"], _shape(t["shape"]), "") for t in info["outputs"]]
        method = _PREDICT_METHOD
    signature_def = {
        "inputs": {name: _tensor_info(dtype, shape, tensor) for name, dtype, shape, tensor in inputs},
        "outputs": {name: _tensor_info(dtype, shape, tensor) for name, dtype, shape, tensor in outputs},
        "method_name": method,
    }
    return json_response(
        200,
        {
            "model_spec": {"name": config.name, "signature_name": "", "version": str(_version(config))},
            "metadata": {"signature_def": {"signature_def": {signature: signature_def}}},
        },
    )


def _shape(shape: list[int] | None) -> tuple[int | None, ...] | None:
    return None if shape is None else tuple(None if d < 0 else d for d in shape)


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
