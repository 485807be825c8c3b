"""What both Channels consumers (the fast door, the WebSocket) share: a lean dispatch, and
who and where the caller is (Django's host validation; an API key's user or the scope's,
reloadable for long-lived sockets)."""

from __future__ import annotations

import functools
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from channels.consumer import get_handler_name
from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest

from . import auth
from .core import Context
from .errors import ServingError
from .options import serving_options
from .permissions import database_sync_to_async

__all__ = ["LeanDispatch", "host_refusal", "scope_context", "scope_headers"]


class LeanDispatch:
    """Per-message dispatch without Channels' database housekeeping or channel layer.

    Channels' ``dispatch`` closes stale database connections before every message: a
    hop to a worker thread per frame or request. Nothing in these consumers touches the
    database on the event loop (a permission callable that does runs in a worker thread,
    which ``permissions.py`` wraps in ``close_old_connections``), so messages go straight to
    their handler. And they take no channel-layer messages: an alias no project
    configures means no channel is created per connection, nor polled.
    """

    channel_layer_alias = "tfbatch_django:none"

    async def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)


def scope_headers(scope: dict[str, Any]) -> dict[str, str]:
    """Every header of an ASGI connection (lower-case names; repeated ones joined by ", ")."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


async def scope_context(scope: dict[str, Any], door: str, *, refreshable: bool = False) -> Context:
    """The caller of an ASGI connection: an API key's user, else ``scope["user"]`` (from
    ``AuthMiddlewareStack``); ``unauthorized`` for a key that is not valid.

    ``refreshable`` (a WebSocket, which lives on): the context can reload its user the
    same way later, so permission is re-checked during the socket's life.
    """
    headers = scope_headers(scope)
    key = auth.presented_key(headers) if serving_options().permission.needs_user else None
    user = scope.get("user") if key is None else await auth.user_for_key(key)
    context = Context(user=user, door=door, host=headers.get("host", ""), headers=headers, raw=scope)
    if refreshable:
        context.refresh = functools.partial(_reload_user, scope, key)
    return context


async def _reload_user(scope: dict[str, Any], key: str | None) -> Any:
    if key is not None:
        try:
            return await auth.user_for_key(key, fresh=True)
        except ServingError:
            return AnonymousUser()  # revoked: PERMISSION decides as for anyone
    session = scope.get("session")
    if session is None or not getattr(session, "session_key", None):
        return scope.get("user")  # no session to reload from (no AuthMiddlewareStack)
    return await _session_user(session.session_key)


@database_sync_to_async
def _session_user(session_key: str) -> Any:
    """The session's user now, read afresh from the session store: anonymous once the
    session is gone (logout), the user inactive, or the password changed."""
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return get_user(SimpleNamespace(session=store))  # type: ignore[arg-type]


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
