"""Who may predict: the ``TFBATCH["PERMISSION"]`` setting, turned into one check.

The library's default is ``"authenticated"``: a model is compute someone pays for,
and often a thing someone wants to keep to themselves, so an app that mounts the
endpoints without thinking about it must not open them to the world. A project that
wants public predictions says so with ``"any"`` (the demo does, in its settings).

A dotted path names a callable ``(user, model_name) -> bool`` (or a coroutine
function). A plain function may touch the database, which async code must not do
directly, so it runs in Django's thread-sensitive executor; the shortcuts only read
attributes of an already-loaded user and run inline.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from ..conf import PERMISSION_SHORTCUTS

__all__ = ["Permission", "database_sync_to_async"]

T = TypeVar("T")
PermissionFunc = Callable[[Any, str], "bool | Awaitable[bool]"]


def _authenticated(user: Any, model: str) -> bool:
    return bool(getattr(user, "is_authenticated", False))


def _staff(user: Any, model: str) -> bool:
    return bool(getattr(user, "is_active", False) and getattr(user, "is_staff", False))


def _any(user: Any, model: str) -> bool:
    return True


_SHORTCUTS: dict[str, Callable[[Any, str], bool]] = {"authenticated": _authenticated, "staff": _staff, "any": _any}
assert set(_SHORTCUTS) == set(PERMISSION_SHORTCUTS)

_REFUSALS = {
    "authenticated": "requires an authenticated user (TFBATCH['PERMISSION'] = 'authenticated')",
    "staff": "requires an active staff user (TFBATCH['PERMISSION'] = 'staff')",
}


class Permission:
    """The configured check, callable from sync and async code alike."""

    def __init__(self, setting: str) -> None:
        from ..runners.custom import import_dotted

        self.setting = setting
        shortcut = _SHORTCUTS.get(setting)
        self._inline = shortcut is not None
        self._func: Callable[..., Any] = shortcut if shortcut is not None else import_dotted(setting)
        self._is_async = inspect.iscoroutinefunction(self._func)
        #: False when the verdict does not depend on the user ("any"): the views then
        #: skip loading the user from the session.
        self.needs_user = setting != "any"
        self._threaded = None if self._inline or self._is_async else database_sync_to_async(self._func)

    def refusal(self, model: str) -> str:
        """The message a refused user gets: which rule refused them."""
        rule = _REFUSALS.get(self.setting, f"is not allowed by TFBATCH['PERMISSION'] = {self.setting!r}")
        return f"predicting with model {model!r} {rule}"

    def check_sync(self, user: Any, model: str) -> bool:
        """For sync views (WSGI, or Django's thread pool under ASGI)."""
        if self._is_async:
            from asgiref.sync import async_to_sync

            return bool(async_to_sync(self._func)(user, model))
        return bool(self._func(user, model))

    async def check(self, user: Any, model: str) -> bool:
        """For async views and consumers; never blocks the event loop."""
        if self._inline:
            return bool(self._func(user, model))
        if self._is_async:
            return bool(await self._func(user, model))
        assert self._threaded is not None
        return bool(await self._threaded(user, model))


def database_sync_to_async(func: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """``func`` for async callers, run as Django runs a request: in the thread-sensitive
    executor, stale database connections closed before and after. What Channels'
    ``database_sync_to_async`` does, written here so that the Django views (a permission
    callable, an API key, a CSRF check) work without Channels installed."""

    def call(*args: Any) -> T:
        close_old_connections()
        try:
            return func(*args)
        finally:
            close_old_connections()

    return sync_to_async(call, thread_sensitive=True)
