"""Channels routes: the WebSocket consumer and the fast door for TensorFlow Serving's REST
API and the Open Inference Protocol (needs ``channels``).

Compose them in the project's ``asgi.py``::

    from tfbatch_django.routing import http_urlpatterns, v2_urlpatterns, websocket_urlpatterns

    application = ProtocolTypeRouter({
        "http": AuthMiddlewareStack(
            URLRouter([*http_urlpatterns(), *v2_urlpatterns(), re_path(r"", django_asgi_app)])
        ),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    })
"""

from __future__ import annotations

import re
from typing import Any

from django.urls import URLPattern, path, re_path

from .serving import kserve_v2, tfserving
from .serving.core import HttpProtocol
from .serving.http_consumer import ProtocolConsumer
from .serving.websocket import PredictConsumer

__all__ = ["fast_door", "http_urlpatterns", "v2_urlpatterns", "websocket_urlpatterns"]

websocket_urlpatterns: list[Any] = [path("ws/tfbatch/", PredictConsumer.as_asgi())]


def http_urlpatterns(prefix: str = "tfbatch/") -> list[URLPattern]:
    """The fast door's routes under ``prefix``: ahead of Django, they answer those URLs
    instead of the views in ``tfbatch_django.urls``, with the same JSON (every other URL
    under ``<prefix>v1`` included: the API's JSON 404)."""
    return [fast_door(tfserving.PROTOCOL, prefix), fast_door(tfserving.NOT_FOUND, prefix)]


def v2_urlpatterns() -> list[URLPattern]:
    """The Open Inference Protocol (KServe v2) through the fast door, at the root (``/v2/...``):
    the same answers as the views in ``tfbatch_django.urls_v2``."""
    return [fast_door(kserve_v2.PROTOCOL, "")]


def fast_door(protocol: HttpProtocol, prefix: str = "") -> URLPattern:
    """One route serving ``protocol`` below ``prefix`` through the fast door."""
    pattern: URLPattern = re_path(
        "^" + re.escape(prefix.lstrip("/")) + protocol.route, ProtocolConsumer.as_asgi(protocol=protocol)
    )
    return pattern
