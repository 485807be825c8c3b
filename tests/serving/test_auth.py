"""Who is asking, on every door: API keys, the session, CSRF for the session's users, and
permission re-checked during a WebSocket's life (issue 9: Security; defect 7)."""

from __future__ import annotations

import datetime
import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.utils import timezone

from demo_project.asgi import application
from tfbatch_django.apikeys import ApiKey, digest

from .doors import DOORS, call

MODELS = {"double": {"RUNNER": "tests.fakes.double_runner"}}
PREDICT = "v1/models/double:predict"
BODY = {"instances": [[1, 2, 3]]}
CSRF_SECRET = "k" * 32  # a CSRF cookie value of the right form; the header repeats it

pytestmark = [pytest.mark.urls("tests.serving.urls"), pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def serving_settings():
    with override_settings(TFBATCH={"MODELS": MODELS}):  # the default: authenticated users only
        yield


@sync_to_async
def new_user(name="alice", **fields):
    return User.objects.create_user(name, **fields)


@sync_to_async
def issue_key(user, **fields):
    return ApiKey.issue(user, "test client", **fields)[1]


@sync_to_async
def update(model, pk, **fields):
    type(model).objects.filter(pk=pk).update(**fields)


@sync_to_async
def session_cookie(user):
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


# ---------------------------------------------------------------- API keys


@pytest.mark.parametrize("door", DOORS)
async def test_an_api_key_authenticates_a_client_without_a_session(door):
    key = await issue_key(await new_user())
    assert (await call(door, "POST", PREDICT, BODY)).status == 403
    for headers in ({"authorization": f"Bearer {key}"}, {"x-api-key": key}):
        reply = await call(door, "POST", PREDICT, BODY, headers=headers)  # no CSRF token: none is needed
        assert (reply.status, reply.json()) == (200, {"predictions": [[2.0, 4.0, 6.0]]})


@pytest.mark.parametrize("door", DOORS)
async def test_a_key_that_is_not_valid_is_401(door):
    user = await new_user()
    revoked, expired, inactive_user = (
        await issue_key(user),
        await issue_key(user),
        await issue_key(await new_user("bob")),
    )
    await update(ApiKey(), (await sync_to_async(ApiKey.objects.get)(hashed=digest(revoked))).pk, is_active=False)
    past = timezone.now() - datetime.timedelta(seconds=1)
    await update(ApiKey(), (await sync_to_async(ApiKey.objects.get)(hashed=digest(expired))).pk, expires=past)
    await sync_to_async(User.objects.filter(username="bob").update)(is_active=False)
    for key in ("tfb_nonsense", "not even the prefix", revoked, expired, inactive_user):
        reply = await call(door, "POST", PREDICT, BODY, headers={"authorization": f"Bearer {key}"})
        assert reply.status == 401, key
        assert reply.headers["www-authenticate"] == 'Bearer realm="tfbatch"'
        assert reply.json() == {
            "error": "the API key is not valid (unknown, revoked, expired, or its user is inactive)"
        }


@pytest.mark.parametrize("door", DOORS)
async def test_a_keys_user_is_remembered_for_the_recheck_interval(door):
    headers = {"x-api-key": await issue_key(await new_user())}
    for recheck, after_revoking in ((3600, 200), (0, 401)):
        with override_settings(TFBATCH={"MODELS": MODELS, "PERMISSION_RECHECK_SECONDS": recheck}):
            await sync_to_async(ApiKey.objects.update)(is_active=True)
            assert (await call(door, "POST", PREDICT, BODY, headers=headers)).status == 200
            await sync_to_async(ApiKey.objects.update)(is_active=False)  # revoked
            assert (await call(door, "POST", PREDICT, BODY, headers=headers)).status == after_revoking


async def test_only_a_digest_of_the_key_is_stored():
    user = await new_user()
    key = await issue_key(user)
    row = await sync_to_async(ApiKey.objects.get)(user=user)
    assert key.startswith("tfb_") and len(key) > 40
    assert row.hashed == digest(key) and key not in (row.hashed, row.prefix, row.name)
    assert row.prefix == key[:12]


# ---------------------------------------------------------------- CSRF


@pytest.mark.parametrize("door", DOORS)
async def test_csrf_is_enforced_for_the_sessions_users(door):
    cookie = f"sessionid={await session_cookie(await new_user())}; csrftoken={CSRF_SECRET}"
    reply = await call(door, "POST", PREDICT, BODY, headers={"cookie": cookie})
    assert reply.status == 403
    assert reply.json()["error"].startswith("CSRF Failed: CSRF token missing")
    reply = await call(door, "POST", PREDICT, BODY, headers={"cookie": cookie, "x-csrftoken": CSRF_SECRET})
    assert reply.status == 200
    assert (await call(door, "GET", "v1/models/double", headers={"cookie": cookie})).status == 200  # safe method


@pytest.mark.parametrize("door", DOORS)
async def test_anonymous_clients_need_no_csrf_token(door):
    with override_settings(TFBATCH={"MODELS": MODELS, "PERMISSION": "any"}):
        assert (await call(door, "POST", PREDICT, BODY)).status == 200


# ---------------------------------------------------------------- WebSocket


async def connect(*headers):
    communicator = WebsocketCommunicator(
        application, "/ws/tfbatch/", headers=[(b"origin", b"http://127.0.0.1:8000"), *headers]
    )
    connected, _ = await communicator.connect(timeout=5)
    return communicator if connected else None


async def ask(ws, request_id=1):
    await ws.send_to(text_data=json.dumps({"id": request_id, "model": "double", "inputs": [[1, 2, 3]]}))
    return json.loads(await ws.receive_from(timeout=10))


async def test_websocket_api_keys():
    key = await issue_key(await new_user())
    ws = await connect((b"authorization", f"Bearer {key}".encode()))
    assert (await ask(ws))["outputs"] == [[2, 4, 6]]
    await ws.disconnect()
    assert await connect((b"x-api-key", b"tfb_wrong")) is None  # the handshake is refused


async def test_websocket_rechecks_permission_during_the_sockets_life():
    with override_settings(TFBATCH={"MODELS": MODELS, "PERMISSION_RECHECK_SECONDS": 0}):
        alice, bob = await new_user(), await new_user("bob")
        session = await connect((b"cookie", f"sessionid={await session_cookie(alice)}".encode()))
        key = await issue_key(bob)
        keyed = await connect((b"x-api-key", key.encode()))
        assert "outputs" in await ask(session) and "outputs" in await ask(keyed)

        await update(alice, alice.pk, is_active=False)  # deactivated while connected
        await update(ApiKey(), (await sync_to_async(ApiKey.objects.get)(user=bob)).pk, is_active=False)  # revoked
        assert (await ask(session, 2))["error"]["code"] == "forbidden"
        assert (await ask(keyed, 2))["error"]["code"] == "forbidden"
        await session.disconnect()
        await keyed.disconnect()


async def test_websocket_notices_a_logout():
    with override_settings(TFBATCH={"MODELS": MODELS, "PERMISSION_RECHECK_SECONDS": 0}):
        session_key = await session_cookie(await new_user())
        ws = await connect((b"cookie", f"sessionid={session_key}".encode()))
        assert "outputs" in await ask(ws)
        from django.contrib.sessions.models import Session

        await sync_to_async(Session.objects.filter(session_key=session_key).delete)()  # logged out elsewhere
        assert (await ask(ws, 2))["error"]["code"] == "forbidden"
        await ws.disconnect()


async def test_websocket_verdicts_are_kept_within_the_recheck_interval():
    with override_settings(TFBATCH={"MODELS": MODELS, "PERMISSION_RECHECK_SECONDS": 3600}):
        alice = await new_user()
        ws = await connect((b"cookie", f"sessionid={await session_cookie(alice)}".encode()))
        assert "outputs" in await ask(ws)
        await update(alice, alice.pk, is_active=False)
        assert "outputs" in await ask(ws, 2)  # within the hour: the verdict given at first use
        await ws.disconnect()
