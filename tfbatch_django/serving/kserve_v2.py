"""The Open Inference Protocol ("KServe v2"), HTTP/REST, one protocol on the serving core.

    GET  /v2/health/live                                   200 while the process serves
    GET  /v2/health/ready                                  200 once every model is ready, else 400
    GET  /v2                                               server metadata
    GET  /v2/models/<name>[/versions/<v>]                  model metadata
    GET  /v2/models/<name>[/versions/<v>]/ready            200 if the model is ready, else 400
    POST /v2/models/<name>[/versions/<v>]/infer            inference (JSON and binary tensors)

Clients written for Triton, KServe, MLServer or Seldon (``tritonclient`` among them)
work unchanged: mounted at a project's root (``tfbatch_django.urls_v2`` for Django,
``routing.v2_urlpatterns()`` for the Channels fast door), the host is their server URL.
Requests batch with every other request for the same model, whatever the protocol.
``infer`` takes gzip or deflate bodies (``Content-Encoding``) and compresses its answer
when ``Accept-Encoding`` asks, as Triton does.

The two health endpoints need no permission and say nothing else (empty bodies, the
status is the answer). ``health/ready`` also starts loading models nobody has used yet,
so that a probe loop brings a lazily loading process to ready. Everything that names a
model checks the ``PERMISSION`` setting first. Errors are ``{"error": "<message>"}``,
with the statuses Triton gives: 400 for a bad request, 404 for an unknown model,
version or endpoint, 500 for a model failure, 503 when overloaded.
"""

from __future__ import annotations

import re
from typing import Any

from .. import __version__
from ..conf import ModelConfig
from ..registry import NOT_LOADED, READY, registry
from ..runners import v2_datatypes
from ..runners.savedmodel_meta import TensorMeta
from .core import Flow, HttpProtocol, Predict, Request, Response, allow, json_response, permitted_model
from .errors import ServingError
from .kserve_v2_body import compressed, decoded_body, parse_infer, render_infer
from .model_io import checked_version, signature_tensors
from .options import serving_options

__all__ = ["EXTENSIONS", "PROTOCOL", "ROUTE", "KServeV2"]

#: Everything under ``v2``: unknown URLs there answer the protocol's JSON 404.
ROUTE = r"v2(?P<rest>/.*)?$"

EXTENSIONS = ["binary_tensor_data"]

_MODEL = re.compile(r"^/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<action>/ready|/infer)?/?$")
_PLATFORMS = {"savedmodel": "tensorflow_savedmodel", "keras": "keras", "custom": "tfbatch_custom"}


class KServeV2(HttpProtocol):
    name = "kserve_v2"
    route = ROUTE

    def flow(self, request: Request) -> Flow[Response]:
        rest = (request.route.get("rest") or "").rstrip("/")
        method = request.method
        if rest == "":
            allow(method, "GET, HEAD", "server metadata")
            return json_response(200, {"name": "tfbatch-django", "version": __version__, "extensions": EXTENSIONS})
        if rest in ("/health/live", "/health/ready"):
            allow(method, "GET, HEAD", rest[1:])
            return Response(200 if rest == "/health/live" or _all_ready() else 400, b"")
        match = _MODEL.match(rest)
        if match is None:
            raise ServingError("model_not_found", f"no endpoint {method} /v2{rest}; see the Open Inference Protocol")
        name, version, action = match["model"], match["version"], match["action"]
        if action == "/infer":
            allow(method, "POST", "infer")
        else:
            allow(method, "GET, HEAD", "model readiness" if action else "model metadata")
        config = yield from permitted_model(request.context, name)
        served = checked_version(config, version)
        if action == "/ready":
            return Response(200 if registry.get(name).status == READY else 400, b"")
        if action is None:
            return (yield from _metadata(config, served))
        headers = request.context.headers
        infer = parse_infer(decoded_body(request.body, headers, serving_options().max_request_bytes), headers)
        prediction = yield Predict(name, infer.inputs)
        return compressed(render_infer(name, served, infer, prediction), headers.get("accept-encoding"))


PROTOCOL = KServeV2()


def _all_ready() -> bool:
    """True once every configured model is loaded and warmed; starts the loads not begun."""
    handles = registry.handles()
    for handle in handles.values():
        if handle.status == NOT_LOADED:
            handle.start_loading()
    return all(h.status == READY for h in handles.values())


def _metadata(config: ModelConfig, version: int) -> Flow[Response]:
    inputs, outputs, _ = yield from signature_tensors(config)
    return json_response(
        200,
        {
            "name": config.name,
            "versions": [str(version)],
            "platform": _PLATFORMS.get(config.runner.format, ""),
            "inputs": [_tensor(t) for t in inputs],
            "outputs": [_tensor(t) for t in outputs],
        },
    )


def _tensor(meta: TensorMeta) -> dict[str, Any]:
    # A tensor of unknown rank has no v2 shape; [-1] is what Triton shows for "anything".
    shape = [-1] if meta.shape is None else [-1 if d is None else d for d in meta.shape]
    return {"name": meta.name, "datatype": v2_datatypes.datatype_of_name(meta.dtype), "shape": shape}
