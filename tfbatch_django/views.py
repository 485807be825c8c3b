"""The Django door: any HTTP protocol of the serving core as Django views, async or sync.

``protocol_view(protocol)`` awaits ``predict()``, so requests from every client of an
ASGI worker batch together (``tfbatch_django.urls`` mounts TensorFlow Serving's REST API
with it). ``protocol_view_sync(protocol)`` blocks its thread in ``predict_sync()``: under
WSGI (``runserver --noasgi``, gunicorn with threads) the requests of all threads batch
together, without an event loop per request (``tfbatch_django.urls_sync``). Both are
thin: the protocol lives in its ``serving`` module, shared with the Channels fast door.

Who is asking: an API key's user, else the session's (``serving/auth.py``). CSRF is
enforced as Django REST Framework enforces it: on the session's users only, so
anonymous and API-key clients (TensorFlow Serving's send no token) need none. Who may
predict is the ``PERMISSION`` setting's decision.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from .serving import auth, core, tfserving
from .serving.errors import ServingError, too_large
from .serving.options import serving_options

__all__ = ["protocol_view", "protocol_view_sync", "rest_api", "rest_api_sync"]


def protocol_view(protocol: core.HttpProtocol) -> Callable[..., Coroutine[Any, Any, HttpResponse]]:
    """An async view serving ``protocol``; route it with ``re_path("^" + protocol.route, ...)``."""

    @csrf_exempt  # enforced below for the session's users only (see serving/auth.py)
    async def view(request: HttpRequest, **route: str | None) -> HttpResponse:
        prepared = _prepare(request, protocol)
        if isinstance(prepared, core.Response):
            return _http(prepared)
        try:
            user = await _user(request, prepared.headers)
        except ServingError as exc:
            return _http(protocol.error(exc))
        return _http(await core.serve(protocol, prepared.request(request, route, user, "django")))

    view.__name__ = view.__qualname__ = f"{protocol.name}_view"
    return view


def protocol_view_sync(protocol: core.HttpProtocol) -> Callable[..., HttpResponse]:
    """A sync view serving ``protocol``, for WSGI deployments."""

    @csrf_exempt  # enforced below for the session's users only (see serving/auth.py)
    def view(request: HttpRequest, **route: str | None) -> HttpResponse:
        prepared = _prepare(request, protocol)
        if isinstance(prepared, core.Response):
            return _http(prepared)
        try:
            user = _user_sync(request, prepared.headers)
        except ServingError as exc:
            return _http(protocol.error(exc))
        return _http(core.serve_sync(protocol, prepared.request(request, route, user, "django-sync")))

    view.__name__ = view.__qualname__ = f"{protocol.name}_view_sync"
    return view


async def _user(request: HttpRequest, headers: dict[str, str]) -> Any:
    """The API key's user, else the session's (CSRF-checked on unsafe methods)."""
    if not serving_options().permission.needs_user:
        return None
    key = auth.presented_key(headers)
    if key is not None:
        return await auth.user_for_key(key)
    user = await request.auser()
    if user.is_authenticated and request.method not in auth.SAFE_METHODS:
        _csrf(await auth.csrf_refusal_async(request))
    return user


def _user_sync(request: HttpRequest, headers: dict[str, str]) -> Any:
    if not serving_options().permission.needs_user:
        return None
    key = auth.presented_key(headers)
    if key is not None:
        return auth.user_for_key_sync(key)
    user = request.user
    if user.is_authenticated and request.method not in auth.SAFE_METHODS:
        _csrf(auth.csrf_refusal(request))
    return user


def _csrf(refusal: str | None) -> None:
    if refusal is not None:
        raise ServingError("forbidden", refusal)


#: TensorFlow Serving's REST API (``tfbatch_django.urls`` and ``urls_sync`` mount these).
rest_api = protocol_view(tfserving.PROTOCOL)
rest_api_sync = protocol_view_sync(tfserving.PROTOCOL)


@dataclass(frozen=True, slots=True)
class _Prepared:
    """What both views need before the user: the host (validated once), body and headers."""

    host: str
    body: bytes
    headers: dict[str, str]

    def request(self, request: HttpRequest, route: dict[str, str | None], user: Any, door: str) -> core.Request:
        context = core.Context(user=user, door=door, host=self.host, headers=self.headers, raw=request)
        return core.Request(request.method or "GET", route, self.body, context, request.META.get("QUERY_STRING", ""))


def _prepare(request: HttpRequest, protocol: core.HttpProtocol) -> _Prepared | core.Response:
    """The request's host, body and headers, or the protocol's refusal of it."""
    try:
        host = request.get_host()  # ALLOWED_HOSTS, whatever the project's middleware does
    except DisallowedHost as exc:
        return protocol.error(ServingError("bad_request", str(exc)))
    try:
        body = _body(request)
    except ServingError as exc:
        return protocol.error(exc)
    return _Prepared(host, body, {name.lower(): value for name, value in request.headers.items()})


def _body(request: HttpRequest) -> bytes:
    """The body within ``MAX_REQUEST_BYTES``: refused from its declared length before
    ``request.body`` reads it, else from the length read.

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
        body = request.body
    except RequestDataTooBig:
        raise ServingError(
            "too_large", "the request body is larger than Django's DATA_UPLOAD_MAX_MEMORY_SIZE setting allows"
        ) from None
    if len(body) > limit:  # a body that declared no length (chunked), for every protocol
        raise too_large(len(body), limit)
    return body


def _http(response: core.Response) -> HttpResponse:
    http = HttpResponse(response.body, status=response.status, headers=response.headers)
    if "Content-Type" not in response.headers:
        # An answer without a type (the v2 health probes' empty bodies) gets none here
        # either, as from the fast door; not Django's default text/html.
        del http["Content-Type"]
    return http
