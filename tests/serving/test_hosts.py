"""Django's host validation on every door (issue 9 defect 6: DNS rebinding).

The fast door and the WebSocket consumer used to serve any ``Host``; a page on
``evil.example`` whose name was rebound to this server's address could then predict
with its visitor's network position. Every door now asks Django (``ALLOWED_HOSTS``,
``DEBUG``'s localhost variants) as Django's own views do.
"""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from demo_project.asgi import application

from .doors import DOORS, call

SETTINGS = {"MODELS": {"double": {"RUNNER": "tests.fakes.double_runner"}}, "PERMISSION": "any"}

pytestmark = [pytest.mark.urls("tests.serving.urls"), pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def serving_settings():
    with override_settings(TFBATCH=SETTINGS):
        yield


@pytest.mark.parametrize("door", DOORS)
async def test_a_host_outside_allowed_hosts_is_a_400_on_every_http_door(door):
    body = {"instances": [[1, 2, 3]]}
    reply = await call(door, "POST", "v1/models/double:predict", body, headers={"host": "evil.example"})
    assert reply.status == 400
    if door == "fast":  # Django's doors: Django's CommonMiddleware answers first, else the view
        assert reply.json() == {
            "error": "Invalid HTTP_HOST header: 'evil.example'. You may need to add 'evil.example' to ALLOWED_HOSTS."
        }
    allowed = await call(door, "POST", "v1/models/double:predict", body, headers={"host": "localhost:8000"})
    assert allowed.status == 200
    with override_settings(ALLOWED_HOSTS=["*"]):
        anything = await call(door, "POST", "v1/models/double:predict", body, headers={"host": "evil.example"})
        assert anything.status == 200


@pytest.mark.parametrize("door", DOORS)
async def test_an_oversized_body_to_a_bad_host_is_refused_for_the_host(door):
    with override_settings(TFBATCH={**SETTINGS, "MAX_REQUEST_BYTES": 10}):
        reply = await call(door, "POST", "v1/models/double:predict", b"x" * 100, headers={"host": "evil.example"})
    assert reply.status == 400


async def websocket(host: bytes, origin: bytes = b"http://127.0.0.1:8000") -> bool:
    communicator = WebsocketCommunicator(application, "/ws/tfbatch/", headers=[(b"origin", origin), (b"host", host)])
    connected, _ = await communicator.connect(timeout=5)
    if connected:
        await communicator.disconnect()
    return connected


async def test_the_websocket_handshake_is_refused_for_a_host_outside_allowed_hosts():
    assert await websocket(b"127.0.0.1:8000")
    assert not await websocket(b"evil.example")
    assert not await websocket(b"evil.example", origin=b"http://evil.example")


async def test_the_websocket_consumer_checks_the_host_by_itself():
    """Without the demo's AllowedHostsOriginValidator (which checks Origin, not Host)."""
    from channels.routing import URLRouter

    from tfbatch_django.routing import websocket_urlpatterns

    bare = URLRouter(websocket_urlpatterns)  # no middleware at all
    for host, expected in [(b"localhost", True), (b"evil.example", False)]:
        communicator = WebsocketCommunicator(bare, "/ws/tfbatch/", headers=[(b"host", host)])
        connected, _ = await communicator.connect(timeout=5)
        assert connected is expected
        if connected:
            await communicator.disconnect()


@pytest.mark.parametrize("door", ["view", "sync"])
async def test_the_views_check_the_host_without_django_middleware(door, settings):
    settings.MIDDLEWARE = []
    reply = await call(
        door, "POST", "v1/models/double:predict", {"instances": [[1, 2, 3]]}, headers={"host": "evil.example"}
    )
    assert (reply.status, reply.json()) == (
        400,
        {"error": "Invalid HTTP_HOST header: 'evil.example'. You may need to add 'evil.example' to ALLOWED_HOSTS."},
    )
