"""The Django door: any HTTP protocol of the serving core as Django views, async or sync.

``protocol_view(protocol)`` awaits ``predict()``, so requests from every client of an
ASGI worker batch together (``tfbatch_django.urls`` mounts TensorFlow Serving's REST API
with it). ``protocol_view_sync(protocol)`` blocks its thread in ``predict_sync()``: under
WSGI (``runserver --noasgi``, gunicorn with threads) the requests of all threads batch
together, without an event loop per request (``tfbatch_django.urls_sync``). Both are
thin: the protocol lives in its ``serving`` module, shared with the Channels fast door.

They are exempt from CSRF: TensorFlow Serving clients send no token, and a prediction
changes nothing on the server. Who may predict is the ``PERMISSION`` setting's decision.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from .serving import core, tfserving
from .serving.errors import ServingError, too_large
from .serving.options import serving_options

__all__ = ["protocol_view", "protocol_view_sync", "rest_api", "rest_api_sync"]


def protocol_view(protocol: core.HttpProtocol) -> Callable[..., Coroutine[Any, Any, HttpResponse]]:
    """An async view serving ``protocol``; route it with ``re_path("^" + protocol.route, ...)``."""

    @csrf_exempt
    async def view(request: HttpRequest, **route: str | None) -> HttpResponse:
        body = _body_or_refusal(request, protocol)
        if isinstance(body, core.Response):
            return _http(body)
        user = await request.auser() if serving_options().permission.needs_user else None
        call = _request(request, route, body, user, "django")
        return _http(await core.serve(protocol, call))

    view.__name__ = view.__qualname__ = f"{protocol.name}_view"
    return view


def protocol_view_sync(protocol: core.HttpProtocol) -> Callable[..., HttpResponse]:
    """A sync view serving ``protocol``, for WSGI deployments."""

    @csrf_exempt
    def view(request: HttpRequest, **route: str | None) -> HttpResponse:
        body = _body_or_refusal(request, protocol)
        if isinstance(body, core.Response):
            return _http(body)
        user = request.user if serving_options().permission.needs_user else None
        return _http(core.serve_sync(protocol, _request(request, route, body, user, "django-sync")))

    view.__name__ = view.__qualname__ = f"{protocol.name}_view_sync"
    return view


#: TensorFlow Serving's REST API (``tfbatch_django.urls`` and ``urls_sync`` mount these).
rest_api = protocol_view(tfserving.PROTOCOL)
rest_api_sync = protocol_view_sync(tfserving.PROTOCOL)


def _request(request: HttpRequest, route: dict[str, str | None], body: bytes, user: Any, door: str) -> core.Request:
    context = core.Context(
        user=user,
        door=door,
        host=request.META.get("HTTP_HOST", ""),
        headers={name.lower(): value for name, value in request.headers.items()},
        raw=request,
    )
    return core.Request(request.method or "GET", route, body, context, request.META.get("QUERY_STRING", ""))


def _body_or_refusal(request: HttpRequest, protocol: core.HttpProtocol) -> bytes | core.Response:
    try:
        request.get_host()  # ALLOWED_HOSTS, whatever the project's middleware does
    except DisallowedHost as exc:
        return protocol.error(ServingError("bad_request", str(exc)))
    try:
        return _body(request)
    except ServingError as exc:
        return protocol.error(exc)


def _body(request: HttpRequest) -> bytes:
    """The body, refused from its declared length before ``request.body`` reads it.

    Under WSGI that spares reading it at all; under ASGI Django has already spooled the
    body (to disk past ``FILE_UPLOAD_MAX_MEMORY_SIZE``) before any view runs, so the
    refusal only spares loading it into memory. The fast door refuses it as it arrives.
    """
    limit = serving_options().max_request_bytes
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise too_large(declared, limit)
    try:
        return request.body
    except RequestDataTooBig:
        raise ServingError(
            "too_large", "the request body is larger than Django's DATA_UPLOAD_MAX_MEMORY_SIZE setting allows"
        ) from None


def _http(response: core.Response) -> HttpResponse:
    return HttpResponse(response.body, status=response.status, headers=response.headers)
