"""The demo's ASGI routing plus no-model endpoints: each path's ceiling.

``/ws/const/`` and ``/const/fast/`` are the WebSocket consumer and the fast door with
the model call replaced by a constant reply: everything else (transport, Channels,
parsing the request) is the real path's.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path, re_path  # noqa: E402

from tfbatch_django import warmup  # noqa: E402
from tfbatch_django.routing import http_urlpatterns, websocket_urlpatterns  # noqa: E402
from tfbatch_django.serving.http_consumer import RestConsumer  # noqa: E402
from tfbatch_django.serving.messages import Message  # noqa: E402
from tfbatch_django.serving.websocket import PredictConsumer  # noqa: E402

from .urls import CONSTANT  # noqa: E402

# Load the models before serving (each load ends with gc.freeze(): GC_FREEZE).
warmup()


class ConstantConsumer(PredictConsumer):
    async def _serve(self, message: Message) -> None:
        await self.send(f'{{"id": {message.id}, "outputs": [[0.1]], "batch": {{"size": 0}}}}')


class ConstantRest(RestConsumer):
    async def handle(self, body: bytes) -> None:
        await self.send_response(200, CONSTANT, headers=[(b"Content-Type", b"application/json")])


application = ProtocolTypeRouter(
    {
        "http": URLRouter(
            [*http_urlpatterns("fast/"), path("const/fast/", ConstantRest.as_asgi()), re_path(r"", django_asgi_app)]  # type: ignore[arg-type]
        ),
        "websocket": AllowedHostsOriginValidator(
            URLRouter([*websocket_urlpatterns, path("ws/const/", ConstantConsumer.as_asgi())])
        ),
    }
)
