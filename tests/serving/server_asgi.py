"""The ASGI application tests/serving/test_servers.py serves with real servers: the fast
door under fast/, Django's views (tests.serving.urls) for the rest, and the WebSocket."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.serving.server_settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from tfbatch_django.routing import http_urlpatterns, websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": AuthMiddlewareStack(URLRouter([*http_urlpatterns("fast/"), re_path(r"", django_asgi_app)])),
        "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)
