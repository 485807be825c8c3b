"""The fast door: any HTTP protocol of the serving core as a Channels ``AsyncHttpConsumer``.

Django's request handling (middleware, each sync-only method of which is a hop to a
worker thread under ASGI, URL resolution, ``HttpRequest``/``HttpResponse``) costs 2.5-4
ms of CPU per request here, more than a batched model row; this door costs ~0.5 ms.
Routed in the project's ``ProtocolTypeRouter`` ahead of Django, this consumer answers
the same URLs with the same JSON and the same permission setting (``scope["user"]``,
from ``AuthMiddlewareStack``), through the same protocol module, at a fraction of the
cost. It refuses a host that ``ALLOWED_HOSTS`` does not allow (as Django would), and an
oversized body as soon as its length is known, before buffering it.

``ProtocolConsumer.as_asgi(protocol=...)`` serves one protocol (``routing.fast_door``);
``RestConsumer`` is TensorFlow Serving's REST API.

A client that disconnects before its answer cancels its request, like the WebSocket
consumer's: the request is served as a task of its own, so the ``http.disconnect`` that
daphne sends can arrive (Channels otherwise handles one message at a time) and cancel it,
and the batcher drops the request's rows if its batch has not started.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer

from . import auth, core, tfserving
from .channels_base import LeanDispatch, host_refusal, scope_context
from .errors import ServingError, too_large
from .options import serving_options

__all__ = ["ProtocolConsumer", "RestConsumer"]


class ProtocolConsumer(LeanDispatch, AsyncHttpConsumer):  # type: ignore[misc]
    protocol: core.HttpProtocol

    def __init__(self, *args: Any, protocol: core.HttpProtocol | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if protocol is not None:
            self.protocol = protocol
        self._size = 0
        self._limit = 0
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Refuse a bad host or a declared oversized body before reading any of the body.

        Channels' consumer waits for the first ``http.request`` message, which a server
        that streams bodies (uvicorn) sends only once body bytes arrive: a client that
        announces 10 GiB and sends nothing would wait forever. Checked from the scope,
        the answer goes out at once. (daphne calls the application only after the whole
        body has arrived: see README, "Oversized bodies".)
        """
        self._limit = serving_options().max_request_bytes
        refusal = _early_refusal(scope, self._limit)
        if refusal is None:
            await super().__call__(scope, receive, send)
            return
        response = self.protocol.error(refusal)
        await send({"type": "http.response.start", "status": response.status, "headers": _headers(response)})
        await send({"type": "http.response.body", "body": response.body})

    async def http_request(self, message: dict[str, Any]) -> None:
        chunk = message.get("body", b"")
        self._size += len(chunk)
        if self._size > self._limit:
            await self._too_large(self._size)
        self.body.append(chunk)
        if not message.get("more_body"):
            # daphne sends http.disconnect once the answer is out, or when the client goes.
            self._task = asyncio.ensure_future(self.handle(b"".join(self.body)))

    async def http_disconnect(self, message: dict[str, Any]) -> None:
        task = self._task
        if task is not None and not task.done():
            task.cancel()  # the client is gone: its queued rows are not computed
            with contextlib.suppress(asyncio.CancelledError):
                await task
        raise StopConsumer()

    async def _too_large(self, size: int) -> None:
        await self._refuse(too_large(size, self._limit))

    async def _refuse(self, error: ServingError) -> None:
        """Answer before the body is read (or read further), and stop."""
        await self._respond(self.protocol.error(error))
        raise StopConsumer()

    async def handle(self, body: bytes) -> None:
        scope = self.scope
        try:
            context = await scope_context(scope, "fast")
            if _session_user(context) and scope["method"] not in auth.SAFE_METHODS:
                refusal = await auth.csrf_refusal_for_scope_async(scope, body)
                if refusal is not None:
                    raise ServingError("forbidden", refusal)
        except ServingError as exc:
            await self._respond(self.protocol.error(exc))
            return
        query = scope.get("query_string", b"").decode("latin-1")
        request = core.Request(scope["method"], scope["url_route"]["kwargs"], body, context, query)
        await self._respond(await core.serve(self.protocol, request))

    async def _respond(self, response: core.Response) -> None:
        await self.send_response(response.status, response.body, headers=_headers(response))


class RestConsumer(ProtocolConsumer):
    """TensorFlow Serving's REST API."""

    protocol = tfserving.PROTOCOL


def _session_user(context: core.Context) -> bool:
    """Whether the request runs as a user from the session cookie (CSRF applies)."""
    return auth.presented_key(context.headers) is None and bool(getattr(context.user, "is_authenticated", False))


def _headers(response: core.Response) -> list[tuple[bytes, bytes]]:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()]
    if "Content-Length" not in response.headers:  # a HEAD answer carries its GET body's length
        headers.append((b"Content-Length", str(len(response.body)).encode()))
    return headers


def _early_refusal(scope: dict[str, Any], limit: int) -> ServingError | None:
    host = host_refusal(scope)
    if host is not None:
        return ServingError("bad_request", host)
    length = _content_length(scope)
    if length is not None and length > limit:
        return too_large(length, limit)
    return None


def _content_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
