"""TensorFlow Serving's REST API, written once for every HTTP front door.

    POST /v1/models/<name>[/versions/<n>]:predict   {"instances": [...]} or {"inputs": ...}
    GET  /v1/models/<name>[/versions/<n>]           version status
    GET  /v1/models/<name>[/versions/<n>]/metadata  signature

Answers are shaped as TensorFlow Serving shapes them, so its existing clients work
unchanged; errors are ``{"error": "<message>"}`` with the status ``errors.HTTP_STATUS``
gives their code.

The request flow (``_flow``) is a generator that *yields* the three things that block
(the permission check, loading a model, the prediction) instead of doing them, so
that the very same code serves async front doors (``handle``: the Django async view
and the Channels fast door, which await each step) and sync ones (``handle_sync``: the
sync Django view under WSGI, which blocks on each step with ``predict_sync``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ..api import predict_detailed, predict_detailed_sync, warmup
from ..batching import Prediction
from ..conf import ModelConfig, get_config
from ..exceptions import ModelLoadError, ModelNotFound
from ..registry import READY, registry
from ..runners.savedmodel_meta import SignatureMeta, read_signatures, resolve_savedmodel_dir
from . import codec
from .errors import HTTP_STATUS, ServingError, describe_error
from .options import serving_options
from .permissions import Permission
from .rest_body import parse_predict

__all__ = ["ROUTE", "Response", "Route", "error_response", "handle", "handle_sync"]

#: The URL below the mount point; both front doors route with it (Django's ``re_path``
#: and Channels' ``URLRouter`` pass its groups as keyword arguments).
ROUTE = r"v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>[0-9]+))?(?P<action>:[A-Za-z]+|/metadata)?/?$"

_JSON = "application/json"
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


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, codec.dumps(payload), {"Content-Type": _JSON, **(headers or {})})


def error_response(exc: BaseException) -> Response:
    code, message = describe_error(exc)
    headers = {"Retry-After": "1"} if code == "overloaded" else {}
    if code == "method_not_allowed" and isinstance(exc, _WrongMethod):
        headers["Allow"] = exc.allow
    return json_response(HTTP_STATUS[code], {"error": message}, headers)


class _WrongMethod(ServingError):
    def __init__(self, method: str, allow: str, what: str) -> None:
        super().__init__("method_not_allowed", f"{what} takes {allow}, not {method}")
        self.allow = allow


# ---------------------------------------------------------------- the blocking steps


@dataclass(frozen=True)
class _Allowed:
    permission: Permission
    user: Any
    model: str

    def run_sync(self) -> bool:
        return self.permission.check_sync(self.user, self.model)

    async def run_async(self) -> bool:
        return await self.permission.check(self.user, self.model)


@dataclass(frozen=True)
class _Predict:
    model: str
    inputs: Any

    def run_sync(self) -> Prediction:
        return predict_detailed_sync(self.model, self.inputs)

    async def run_async(self) -> Prediction:
        return await predict_detailed(self.model, self.inputs)


@dataclass(frozen=True)
class _Load:
    model: str

    def run_sync(self) -> dict[str, str]:
        return warmup([self.model])

    async def run_async(self) -> dict[str, str]:
        handle = registry.get(self.model)
        with contextlib.suppress(ModelLoadError):  # the handle's status and error say why
            await handle.aload()
        return {self.model: handle.status}


_Step = _Allowed | _Predict | _Load
_Flow = Generator[_Step, Any, Response]


def handle_sync(route: Route, method: str, body: bytes, user: Any) -> Response:
    """Serve one request from sync code (blocks this thread on the model)."""
    flow = _flow(route, method, body, user)
    try:
        step = next(flow)
        while True:
            step = flow.send(step.run_sync())
    except StopIteration as done:
        response: Response = done.value
    except Exception as exc:  # noqa: BLE001 - every failure becomes an error response
        response = error_response(exc)
    return _for_method(response, method)


async def handle(route: Route, method: str, body: bytes, user: Any) -> Response:
    """Serve one request from async code; requests from every client batch together."""
    flow = _flow(route, method, body, user)
    try:
        step = next(flow)
        while True:
            step = flow.send(await step.run_async())
    except StopIteration as done:
        response: Response = done.value
    except Exception as exc:  # noqa: BLE001 - every failure becomes an error response
        response = error_response(exc)
    return _for_method(response, method)


def _for_method(response: Response, method: str) -> Response:
    """A HEAD request gets the GET answer's status and headers, and no body (RFC 9110, 9.3.2)."""
    if method != "HEAD":
        return response
    return Response(response.status, b"", {**response.headers, "Content-Length": str(len(response.body))})


def _flow(route: Route, method: str, body: bytes, user: Any) -> _Flow:
    options = serving_options()
    predicting = _endpoint(route, method)
    if not (yield _Allowed(options.permission, user, route.model)):
        raise ServingError("forbidden", options.permission.refusal(route.model))
    config = _model_config(route.model)
    if route.version is not None:
        _check_version(config, int(route.version))
    if predicting:
        with codec.collector_paused():
            inputs, columnar = parse_predict(body, config, options)
        prediction: Prediction = yield _Predict(route.model, inputs)
        return _predicted(prediction, columnar)
    if route.action is None:
        return _status(config)
    return (yield from _metadata(config))


def _endpoint(route: Route, method: str) -> bool:
    """True for ``:predict``; False for the GET endpoints. Refuses other verbs and methods."""
    if route.action == ":predict":
        if method != "POST":
            raise _WrongMethod(method, "POST", ":predict")
        return True
    if route.action not in (None, "/metadata"):
        raise ServingError(
            "bad_request",
            f"{route.action!r} is not supported: this server offers TensorFlow Serving's Predict API "
            "(':predict'), model status and '/metadata'",
        )
    if method not in ("GET", "HEAD"):
        raise _WrongMethod(method, "GET, HEAD", "model status" if route.action is None else "metadata")
    return False


def _model_config(name: str) -> ModelConfig:
    config = get_config().models.get(name)
    if config is None:
        registry.get(name)  # raises ModelNotFound with the list of configured models
        raise ModelNotFound(f"no model named {name!r}", model=name)
    return config


def _version(config: ModelConfig) -> int:
    """The served version: a TF Serving version directory's number, else 0.

    Once the model is loaded, the version it loaded: a newer directory copied in
    meanwhile is not what answers requests.
    """
    loaded = registry.get(config.name).runner_info
    if "version" in loaded:
        return int(loaded["version"] or 0)
    path = config.runner.path
    if path is None or config.runner.format != "savedmodel":
        return 0
    try:
        version = resolve_savedmodel_dir(path)[1]
    except FileNotFoundError:
        return 0
    return 0 if version is None else version


@lru_cache(maxsize=64)
def _signatures(directory: str) -> dict[str, SignatureMeta]:
    """A SavedModel's signatures; version directories never change, so read each once."""
    return read_signatures(directory)


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


def _metadata(config: ModelConfig) -> Generator[_Step, Any, Response]:
    signature = config.runner.signature
    if config.runner.format == "savedmodel":
        assert config.runner.path is not None
        loaded = registry.get(config.name).runner_info.get("path")  # the version being served
        try:
            directory = loaded or str(resolve_savedmodel_dir(config.runner.path)[0])
            meta = _signatures(directory)[signature]
        except (OSError, ValueError, KeyError) as exc:  # the checks (E002, E005) said so already
            raise ServingError(
                "model_error", f"model {config.name!r}: its SavedModel signature {signature!r} cannot be read ({exc})"
            ) from None
        inputs = [(t.name, t.dtype, t.shape, t.tensor_name) for t in meta.inputs]
        outputs = [(t.name, t.dtype, t.shape, t.tensor_name) for t in meta.outputs]
        method = meta.method_name or _PREDICT_METHOD
    else:  # Keras files and custom runners describe themselves once loaded
        handle = registry.get(config.name)
        if handle.status != READY:
            yield _Load(config.name)
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
