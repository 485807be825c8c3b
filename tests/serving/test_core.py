"""The serving core's extension point: a second HTTP protocol (tests/serving/protocol_example.py)
added as one module plus a route per door, with no edit to the core, served alike by the
async and sync Django views and the fast door."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import HttpCommunicator
from django.test import AsyncClient, Client, override_settings

from tfbatch_django.routing import fast_door

from .protocol_example import PROTOCOL as ECHO

MODELS = {"double": {"RUNNER": "tests.fakes.double_runner"}}

pytestmark = [pytest.mark.urls("tests.serving.urls"), pytest.mark.django_db(transaction=True)]


async def echo(door: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None):
    headers = headers or {}
    if door == "fast":
        app = URLRouter([fast_door(ECHO, "fast/")])
        raw = [(b"content-length", str(len(body)).encode()), (b"host", b"localhost")]
        raw += [(k.encode(), v.encode()) for k, v in headers.items()]
        path, _, query = path.partition("?")
        communicator = HttpCommunicator(app, method, "/fast/" + path, body=body, headers=raw)
        communicator.scope["query_string"] = query.encode()
        response = await communicator.get_response(timeout=10)
        return response["status"], json.loads(response["body"])
    prefix = "/tfbatch/" if door == "view" else "/sync/"
    if door == "view":
        response = await AsyncClient().generic(method, prefix + path, body, headers=headers)
    else:
        response = await sync_to_async(Client().generic, thread_sensitive=False)(
            method, prefix + path, body, headers=headers
        )
    return response.status_code, json.loads(response.content)


DOOR_NAMES = {"view": "django", "sync": "django-sync", "fast": "fast"}


@pytest.mark.parametrize("door", list(DOOR_NAMES))
async def test_a_second_protocol_is_served_by_every_door(door):
    with override_settings(TFBATCH={"MODELS": MODELS, "PERMISSION": "any"}):
        status, reply = await echo(door, "POST", "echo/double:double", b"[[1, 2, 3]]")
        assert (status, reply) == (200, {"echo": [[4.0, 8.0, 12.0]]})
        status, reply = await echo(door, "GET", "echo?x=1", headers={"x-echo": "hello"})
        assert (status, reply["door"], reply["header"], reply["query"]) == (200, DOOR_NAMES[door], "hello", "x=1")
        assert reply["host"] in ("testserver", "localhost")
        status, reply = await echo(door, "GET", "echo/double")  # the protocol's own error shape
        assert (status, reply) == (405, {"problem": {"code": "method_not_allowed", "text": "echo takes POST, not GET"}})


@pytest.mark.parametrize("door", list(DOOR_NAMES))
async def test_the_core_checks_permission_before_the_model_for_every_protocol(door):
    with override_settings(TFBATCH={"MODELS": MODELS}):  # anonymous callers are refused
        status, reply = await echo(door, "POST", "echo/nope", b"[[1, 2, 3]]")
        assert status == 403
        assert reply["problem"]["code"] == "forbidden" and "double" not in reply["problem"]["text"]
        status, _ = await echo(door, "GET", "echo")  # an endpoint that asks no permission
        assert status == 200
