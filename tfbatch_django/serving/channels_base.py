"""What both Channels consumers do differently from Channels' defaults, once."""

from __future__ import annotations

from typing import Any

from channels.consumer import get_handler_name
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest

from .core import Context

__all__ = ["LeanDispatch", "host_refusal", "scope_context"]


class LeanDispatch:
    """Per-message dispatch without Channels' database housekeeping or channel layer.

    Channels' ``dispatch`` closes stale database connections before every message: a
    hop to a worker thread per frame or request. Nothing in these consumers touches the
    database on the event loop (a permission callable that does runs in a worker thread,
    which ``permissions.py`` wraps in ``close_old_connections``), so messages go straight to
    their handler. And
    they take no channel-layer messages: an alias no project configures means no
    channel is created per connection, nor polled.
    """

    channel_layer_alias = "tfbatch_django:none"

    async def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)


def scope_context(scope: dict[str, Any], door: str) -> Context:
    """The caller of an ASGI connection: ``scope["user"]`` (from ``AuthMiddlewareStack``),
    the Host header and every header (lower-case names; repeated ones joined by ", ")."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return Context(user=scope.get("user"), door=door, host=headers.get("host", ""), headers=headers, raw=scope)


def host_refusal(scope: dict[str, Any]) -> str | None:
    """Django's host validation (``ALLOWED_HOSTS``) for an ASGI connection: the refusal
    message, or None when the host is allowed.

    Django's own ``HttpRequest.get_host()`` decides (``ALLOWED_HOSTS``, ``DEBUG``'s
    localhost variants, ``USE_X_FORWARDED_HOST``), as it does for the Django views, so
    every door refuses the same hosts: a page on another site whose name was rebound
    to this server's address (DNS rebinding) is refused. A connection with neither a
    Host header nor a server address in its scope (only test harnesses make those)
    has no host to check.
    """
    request = HttpRequest()
    for raw_name, raw_value in scope.get("headers", ()):
        if raw_name in (b"host", b"x-forwarded-host"):
            request.META["HTTP_" + raw_name.decode("latin-1").upper().replace("-", "_")] = raw_value.decode("latin-1")
    server = scope.get("server")
    if "HTTP_HOST" not in request.META:
        if not server:
            return None
        request.META["SERVER_NAME"], request.META["SERVER_PORT"] = str(server[0]), str(server[1])
    request.META.setdefault("SERVER_PORT", str(server[1]) if server else "80")
    try:
        request.get_host()
    except DisallowedHost as exc:
        return str(exc)
    return None
