"""ASGI entry point of the demo project (served by daphne).

* WebSocket ``/ws/tfbatch/``: the prediction consumer, behind the origin check and
  Django's session authentication.
* HTTP ``/fast/v1/models/...``: the REST fast door (a Channels consumer, ahead of
  Django); ``/tfbatch/v1/models/...`` is the same API through Django's views. A project
  that wants only the fast door routes it at the views' prefix (``http_urlpatterns()``
  defaults to ``tfbatch/``), and clients see no difference.
* HTTP ``/v2/...``: the Open Inference Protocol (KServe v2) through the fast door, at
  the root where ``tritonclient`` and Kubernetes probes look (``/v2/health/ready``).
  ``urls.py`` mounts the same protocol's Django views at the root too: they answer
  when the project runs without this ASGI application (``runserver --noasgi``).
* Everything else: Django, with static files served from the app directories (the
  demo page's script and styles, the admin's and the batching dashboard's; daphne
  serves no static files itself, and nothing comes from a CDN).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402 - Django must be set up first
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import re_path  # noqa: E402

from tfbatch_django import start_publishing, warmup  # noqa: E402
from tfbatch_django.routing import http_urlpatterns, v2_urlpatterns, websocket_urlpatterns  # noqa: E402

# Load the models before serving, so the first request finds them warm (each load ends
# with gc.freeze(): see GC_FREEZE in the README), then publish this process's batch
# statistics for the admin dashboard.
warmup()
start_publishing()

application = ProtocolTypeRouter(
    {
        "http": AuthMiddlewareStack(
            URLRouter(
                [
                    *http_urlpatterns("fast/"),
                    *v2_urlpatterns(),
                    re_path(r"", ASGIStaticFilesHandler(django_asgi_app)),  # type: ignore[arg-type]
                ]
            )
        ),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
