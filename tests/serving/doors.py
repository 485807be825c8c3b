"""One way for tests to call the REST API through each of its front doors.

* ``view``: the async Django views (``tfbatch_django.urls``), through Django's ASGI handler;
* ``sync``: the sync Django views (``tfbatch_django.urls_sync``) through Django's test
  client, the WSGI path, in a thread of its own as a WSGI server would run it;
* ``fast``: the Channels fast door, through the demo project's full ASGI application.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator
from django.test import AsyncClient, Client

DOORS = ["view", "sync", "fast"]
PREFIX = {"view": "/tfbatch/", "sync": "/sync/", "fast": "/fast/"}
#: The Open Inference Protocol sits at the root (the sync views under sync/, beside TF Serving's).
V2_PREFIX = {"view": "/", "sync": "/sync/", "fast": "/"}

#: A module's ``pytestmark`` when each of its tests runs through every door, under the
#: module's ``SETTINGS`` (``module_settings`` in conftest.py: one registry for the module,
#: so SavedModels load once). django_db: the fast door runs behind the demo's
#: AuthMiddlewareStack, whose user lookup may touch the database (whatever earlier tests
#: left open in Django's executor thread).
EVERY_DOOR = [
    pytest.mark.urls("tests.serving.urls"),
    pytest.mark.parametrize("door", DOORS),
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("module_settings"),
]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def call(
    door: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    prefixes: dict[str, str] = PREFIX,
) -> Reply:
    data = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    url = prefixes[door] + path
    if door == "fast" or (door == "view" and headers and "host" in headers):
        # The test client would send its own Host header as well: a Host of our choosing
        # goes through Django's ASGI handler as a server would hand it over.
        from django.core.asgi import get_asgi_application

        from demo_project.asgi import application as demo

        application = demo if door == "fast" else get_asgi_application()
        raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        communicator = HttpCommunicator(application, method, url, body=data, headers=raw_headers)
        response = await communicator.get_response(timeout=30)
        return Reply(
            response["status"], {k.decode().lower(): v.decode() for k, v in response["headers"]}, response["body"]
        )
    headers = dict(headers or {})
    extra = {"HTTP_HOST": headers.pop("host")} if "host" in headers else {}  # replaces "testserver"
    if door == "view":
        client = AsyncClient(enforce_csrf_checks=True)
        if "cookie" in headers:  # the client sends its jar as one more Cookie header: use the jar
            client.cookies.load(headers.pop("cookie"))
        response = await client.generic(method, url, data, content_type="application/json", headers=headers)
    else:
        client = Client(enforce_csrf_checks=True)  # as a browser meets the views
        response = await sync_to_async(client.generic, thread_sensitive=False)(
            method, url, data, content_type="application/json", headers=headers, **extra
        )
    return Reply(response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content)
