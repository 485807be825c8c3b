"""What both Channels consumers do differently from Channels' defaults, once."""

from __future__ import annotations

from typing import Any

from channels.consumer import get_handler_name

__all__ = ["LeanDispatch"]


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
