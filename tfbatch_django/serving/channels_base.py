"""What both Channels consumers do differently from Channels' defaults, once."""

from __future__ import annotations

from typing import Any

from channels.consumer import get_handler_name

from .core import Context

__all__ = ["LeanDispatch", "scope_context"]


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
