"""TensorFlow Serving's REST API as Django views: one async, one sync.

``rest_api`` awaits ``predict()``, so requests from every client of an ASGI worker
batch together (``tfbatch_django.urls`` mounts it). ``rest_api_sync`` blocks its thread
in ``predict_sync()``: under WSGI (``runserver --noasgi``, gunicorn with threads) the
requests of all threads batch together, without an event loop per request
(``tfbatch_django.urls_sync`` mounts it). Both are thin: the protocol lives in
``serving.rest``, shared with the Channels fast door.

Both are exempt from CSRF: TensorFlow Serving clients send no token, and a
prediction changes nothing on the server. Who may predict is the ``PERMISSION``
setting's decision.
"""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from .serving import rest
from .serving.errors import ServingError, too_large
from .serving.options import serving_options

__all__ = ["rest_api", "rest_api_sync"]


@csrf_exempt
async def rest_api(
    request: HttpRequest, model: str, version: str | None = None, action: str | None = None
) -> HttpResponse:
    body = _body_or_refusal(request)
    if isinstance(body, rest.Response):
        return _http(body)
    user = await request.auser() if serving_options().permission.needs_user else None
    return _http(await rest.handle(rest.Route(model, version, action), request.method or "GET", body, user))


@csrf_exempt
def rest_api_sync(
    request: HttpRequest, model: str, version: str | None = None, action: str | None = None
) -> HttpResponse:
    body = _body_or_refusal(request)
    if isinstance(body, rest.Response):
        return _http(body)
    user = request.user if serving_options().permission.needs_user else None
    return _http(rest.handle_sync(rest.Route(model, version, action), request.method or "GET", body, user))


def _body_or_refusal(request: HttpRequest) -> bytes | rest.Response:
    try:
        return _body(request)
    except ServingError as exc:
        return rest.error_response(exc)


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


def _http(response: rest.Response) -> HttpResponse:
    return HttpResponse(response.body, status=response.status, headers=response.headers)
