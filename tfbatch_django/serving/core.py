"""The protocol-neutral serving core: what every protocol and every door shares.

A *protocol* (TensorFlow Serving's REST API in ``tfserving``, the Open Inference
Protocol in ``kserve_v2``, the WebSocket message protocol in ``messages``) says how a
request looks on the wire and how its answer is written. A *door* (the Django views
in ``tfbatch_django.views``, the Channels fast door in ``http_consumer``, the WebSocket
consumer in ``websocket``) says how bytes arrive. This module is everything in
between, written once:

* ``Context``: who is asking and through what (user, host, headers, door), and the
  permission verdicts of that caller;
* the blocking **steps** (``Allowed``, ``Load``, ``Predict``): a protocol's request
  flow is a generator that *yields* them instead of running them, so that the very
  same flow is driven by async doors (``run``: each step awaited on the event loop)
  and sync ones (``run_sync``: each step blocks the thread, e.g. ``predict_sync``);
* ``permitted_model``: permission first, then the model. Every flow that names a model
  goes through it, so a caller the ``PERMISSION`` setting refuses never learns which
  models exist;
* ``Response``, ``json_response``, ``error_response``, ``batch_headers``: HTTP answers,
  with every error code mapped to its status once (``errors.HTTP_STATUS``);
* ``HttpProtocol`` and the HTTP drivers ``serve`` / ``serve_sync``: one request in,
  one ``Response`` out, errors mapped, ``HEAD`` answered as ``GET`` without a body.

How to add an HTTP protocol — one new module, no edit here (``kserve_v2`` was added
so; ``tests/serving/protocol_example.py`` is the smallest one):

1. Write ``serving/<protocol>.py`` with a subclass of ``HttpProtocol``::

       class MyProtocol(HttpProtocol):
           name = "my_protocol"
           route = r"my/models/(?P<model>[^/]+)/infer/?$"

           def flow(self, request: Request) -> Flow[Response]:
               config = yield from permitted_model(request.context, request.route["model"])
               inputs = parse(request.body, request.context.headers)   # your wire format
               prediction = yield Predict(config.name, inputs)
               return json_response(200, render(prediction))

       PROTOCOL = MyProtocol()

   ``request.route`` holds the route's named groups; ``request.context.headers`` the
   headers (lower-case names). Override ``error`` to write errors another way than
   ``{"error": "<message>"}``. An endpoint that needs no permission (a health probe)
   simply does not call ``permitted_model``.
2. Mount it on each door with one route entry: for Django,
   ``re_path("^" + PROTOCOL.route, views.protocol_view(PROTOCOL))`` (or
   ``protocol_view_sync`` under WSGI); for the fast door,
   ``routing.fast_door(PROTOCOL, prefix)`` in the ``http`` router.

Nothing else changes: the doors read bodies within ``MAX_REQUEST_BYTES``, build the
``Context``, and run the flow; batching, permission, errors and cancellation on
disconnect are the same for every protocol.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from ..api import predict_detailed, predict_detailed_sync, warmup
from ..batching import Prediction
from ..conf import ModelConfig, get_config
from ..exceptions import ModelLoadError, ModelNotFound
from ..registry import registry
from . import codec
from .errors import HTTP_STATUS, ServingError, describe_error
from .options import serving_options

__all__ = [
    "Allowed",
    "Context",
    "Flow",
    "HttpProtocol",
    "Load",
    "Predict",
    "Request",
    "Response",
    "Step",
    "WrongMethod",
    "allow",
    "batch_headers",
    "error_response",
    "json_response",
    "model_config",
    "permitted_model",
    "run",
    "run_sync",
    "serve",
    "serve_sync",
]

T = TypeVar("T")
JSON = "application/json"


# ---------------------------------------------------------------- who is asking


@dataclass
class Context:
    """The caller of one HTTP request, or of every request on one WebSocket.

    ``raw`` is the door's own object (Django's ``HttpRequest``, or the ASGI scope) for
    whatever a protocol needs beyond this. ``door`` names the door: ``"django"``,
    ``"django-sync"``, ``"fast"`` or ``"websocket"``.

    A long-lived context (a WebSocket's) has a ``refresh`` that reloads its user (from
    the session or the API key, as at connect): its verdicts are then kept at most
    ``PERMISSION_RECHECK_SECONDS``, after which the user is reloaded and ``PERMISSION``
    asked again, so a user deactivated, logged out or whose key is revoked stops
    predicting on sockets already open.
    """

    user: Any
    door: str
    host: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    raw: Any = None
    refresh: Callable[[], Awaitable[Any]] | None = None
    #: Permission verdicts already given to this caller, by model name.
    verdicts: dict[str, bool] = field(default_factory=dict)
    checked_at: float = field(default_factory=time.monotonic)

    async def allowed(self, model: str) -> bool:
        options = serving_options()
        if (
            self.refresh is not None
            and options.permission.needs_user
            and time.monotonic() - self.checked_at >= options.permission_recheck_seconds
        ):
            self.checked_at = time.monotonic()  # concurrent requests keep the verdicts meanwhile
            user = await self.refresh()
            self.user, self.verdicts = user, {}
        verdict = self.verdicts.get(model)
        if verdict is None:
            verdict = await options.permission.check(self.user, model)
            self._remember(model, verdict)
        return verdict

    def allowed_sync(self, model: str) -> bool:
        verdict = self.verdicts.get(model)
        if verdict is None:
            verdict = serving_options().permission.check_sync(self.user, model)
            self._remember(model, verdict)
        return verdict

    def _remember(self, model: str, verdict: bool) -> None:
        # Only configured models: a client naming random models must not grow the dict.
        if model in get_config().models:
            self.verdicts[model] = verdict


# ---------------------------------------------------------------- the blocking steps


class Step(Protocol):
    """Something a flow needs done that may block: run by the door's driver."""

    def run_sync(self) -> Any: ...

    async def run_async(self) -> Any: ...


#: A protocol's request flow: yields steps, is sent each step's result, returns ``T``.
Flow = Generator[Step, Any, T]


@dataclass(frozen=True)
class Allowed:
    """Whether ``context``'s caller may predict with ``model`` (the ``PERMISSION`` setting)."""

    context: Context
    model: str

    def run_sync(self) -> bool:
        return self.context.allowed_sync(self.model)

    async def run_async(self) -> bool:
        return await self.context.allowed(self.model)


@dataclass(frozen=True)
class Predict:
    """Run ``inputs`` through ``model`` in a shared batch; the result is a ``Prediction``."""

    model: str
    inputs: Any
    timeout: float | None = None

    def run_sync(self) -> Prediction:
        return predict_detailed_sync(self.model, self.inputs, timeout=self.timeout)

    async def run_async(self) -> Prediction:
        return await predict_detailed(self.model, self.inputs, timeout=self.timeout)


@dataclass(frozen=True)
class Load:
    """Load (and warm up) ``model`` now if it is not; the result is its status."""

    model: str

    def run_sync(self) -> str:
        return warmup([self.model])[self.model]

    async def run_async(self) -> str:
        handle = registry.get(self.model)
        with contextlib.suppress(ModelLoadError):  # the handle's status and error say why
            await handle.aload()
        return handle.status


def run_sync(flow: Flow[T]) -> T:
    """Drive a flow from sync code: each step blocks this thread."""
    try:
        step = next(flow)
        while True:
            step = flow.send(step.run_sync())
    except StopIteration as done:
        result: T = done.value
        return result


async def run(flow: Flow[T]) -> T:
    """Drive a flow from async code: each step is awaited, the event loop stays free."""
    try:
        step = next(flow)
        while True:
            step = flow.send(await step.run_async())
    except StopIteration as done:
        result: T = done.value
        return result


def model_config(name: str) -> ModelConfig:
    """The configured model, or ``ModelNotFound`` listing the configured ones.

    Only for callers already permitted: ``permitted_model`` is the way in.
    """
    config = get_config().models.get(name)
    if config is None:
        registry.get(name)  # raises ModelNotFound with the list of configured models
        raise ModelNotFound(f"no model named {name!r}", model=name)
    return config


def permitted_model(context: Context, name: str) -> Flow[ModelConfig]:
    """Permission first, then the model: a refused caller never learns which models exist."""
    if not (yield Allowed(context, name)):
        raise ServingError("forbidden", serving_options().permission.refusal(name))
    return model_config(name)


# ---------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    """One HTTP request, as every door hands it to a protocol."""

    method: str
    route: Mapping[str, str | None]  # the route's named groups
    body: bytes
    context: Context
    query: str = ""


def batch_headers(prediction: Prediction) -> dict[str, str]:
    """How the request's batch went, as headers of every protocol's HTTP answer."""
    batch = prediction.batch
    return {
        "X-TFBatch-Batch-Size": str(batch.size),
        "X-TFBatch-Queue-Ms": f"{batch.queue_ms:.3f}",
        "X-TFBatch-Run-Ms": f"{batch.run_ms:.3f}",
    }


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, codec.dumps(payload), {"Content-Type": JSON, **(headers or {})})


class WrongMethod(ServingError):
    """A ``405``: the endpoint exists, the method does not (``Allow`` says which do)."""

    def __init__(self, method: str, allow: str, what: str) -> None:
        super().__init__("method_not_allowed", f"{what} takes {allow}, not {method}")
        self.allow = allow


def allow(method: str, allowed: str, what: str) -> None:
    """Refuse ``method`` unless ``allowed`` (``"POST"``, ``"GET, HEAD"``) lists it: a 405
    whose ``Allow`` header is ``allowed``, the message naming ``what`` the URL is."""
    if method not in allowed.split(", "):
        raise WrongMethod(method, allowed, what)


def error_response(
    exc: BaseException, render: Callable[[str, str], Any] = lambda code, message: {"error": message}
) -> Response:
    """The HTTP answer to a request that ended with ``exc``: status from its code, the
    body ``render(code, message)`` (``{"error": message}`` by default)."""
    code, message = describe_error(exc)
    headers = {"Retry-After": "1"} if code == "overloaded" else {}
    if code == "unauthorized":
        headers["WWW-Authenticate"] = 'Bearer realm="tfbatch"'
    if isinstance(exc, WrongMethod):
        headers["Allow"] = exc.allow
    return json_response(HTTP_STATUS[code], render(code, message), headers)


class HttpProtocol:
    """An HTTP protocol: a ``route`` (regex below the mount point, named groups) and a ``flow``."""

    name: str = ""
    route: str = ""

    def flow(self, request: Request) -> Flow[Response]:
        raise NotImplementedError

    def error(self, exc: BaseException) -> Response:
        """The answer to a request that raised ``exc`` (``{"error": "<message>"}``)."""
        return error_response(exc)


async def serve(protocol: HttpProtocol, request: Request) -> Response:
    """Serve one request from async code; requests from every client batch together."""
    try:
        response = await run(protocol.flow(request))
    except Exception as exc:  # noqa: BLE001 - every failure becomes an error response
        response = protocol.error(exc)
    return for_method(response, request.method)


def serve_sync(protocol: HttpProtocol, request: Request) -> Response:
    """Serve one request from sync code (blocks this thread on the model)."""
    try:
        response = run_sync(protocol.flow(request))
    except Exception as exc:  # noqa: BLE001 - every failure becomes an error response
        response = protocol.error(exc)
    return for_method(response, request.method)


def for_method(response: Response, method: str) -> Response:
    """A HEAD request gets the GET answer's status and headers, and no body (RFC 9110, 9.3.2)."""
    if method != "HEAD":
        return response
    return Response(response.status, b"", {**response.headers, "Content-Length": str(len(response.body))})
