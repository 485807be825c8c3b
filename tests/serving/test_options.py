"""The serving settings: their checks (E011, E012), defaults, and the permission rules."""

from __future__ import annotations

import asyncio

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from tfbatch_django.conf import parse
from tfbatch_django.serving.options import serving_options
from tfbatch_django.serving.permissions import Permission

MODELS = {"double": {"RUNNER": "tests.fakes.double_runner"}}


def problems(**top):
    return [(p.id, p.msg) for p in parse({"MODELS": MODELS, **top})[1]]


def test_defaults_are_safe_and_valid():
    assert problems() == []
    with override_settings(TFBATCH={"MODELS": MODELS}):
        options = serving_options()
    assert options.permission.setting == "authenticated"
    assert (options.max_request_bytes, options.max_in_flight_per_socket) == (2_621_440, 64)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (3, "TFBATCH['PERMISSION'] must be a string, got int."),
        ("anyone", "TFBATCH['PERMISSION'] 'anyone' cannot be imported"),
        ("tests.serving.fakes.missing", "has no attribute 'missing'"),
        ("tests.serving.fakes.NOT_CALLABLE", "is a str, not a callable."),
    ],
)
def test_bad_permission_is_e011(value, message):
    [(id_, msg)] = problems(PERMISSION=value)
    assert id_ == "E011"
    assert message in msg


@pytest.mark.parametrize("key", ["MAX_REQUEST_BYTES", "MAX_IN_FLIGHT_PER_SOCKET", "MAX_BYTES_PER_SOCKET"])
@pytest.mark.parametrize("value", [0, -1, 1.5, "10", True])
def test_bad_limits_are_e012(key, value):
    assert problems(**{key: value}) == [("E012", f"TFBATCH[{key!r}] must be a positive integer, got {value!r}.")]


@pytest.mark.parametrize("value", [-1, float("inf"), float("nan"), "5", True, None])
def test_bad_recheck_interval_is_e012(value):
    assert problems(PERMISSION_RECHECK_SECONDS=value) == [
        ("E012", f"TFBATCH['PERMISSION_RECHECK_SECONDS'] must be a number of seconds >= 0, got {value!r}.")
    ]


def test_a_socket_budget_below_one_request_is_e012():
    assert problems(MAX_REQUEST_BYTES=1000, MAX_BYTES_PER_SOCKET=999) == [
        (
            "E012",
            "TFBATCH['MAX_BYTES_PER_SOCKET'] (999) is smaller than TFBATCH['MAX_REQUEST_BYTES'] (1000): "
            "a socket could not send the largest request allowed.",
        )
    ]


def test_serving_options_carry_every_serving_setting():
    settings = {
        "MODELS": MODELS,
        "PERMISSION": "staff",
        "MAX_REQUEST_BYTES": 11,
        "MAX_IN_FLIGHT_PER_SOCKET": 3,
        "MAX_BYTES_PER_SOCKET": 1234,
        "PERMISSION_RECHECK_SECONDS": 0,
    }
    with override_settings(TFBATCH=settings):
        options = serving_options()
    assert (options.permission.setting, options.max_request_bytes, options.max_in_flight_per_socket) == ("staff", 11, 3)
    assert (options.max_bytes_per_socket, options.permission_recheck_seconds) == (1234, 0.0)


def test_checks_report_them_with_a_hint():
    with override_settings(TFBATCH={"MODELS": MODELS, "PERMISSION": "nope", "MAX_REQUEST_BYTES": 0}):
        messages = run_checks(tags=["tfbatch_django"])  # all checks would query the database on Django 6
        with pytest.raises(ImproperlyConfigured, match=r"tfbatch_django\.E011"):
            serving_options()
    assert [m.id for m in messages] == ["tfbatch_django.E011", "tfbatch_django.E012"]
    assert "'authenticated', 'staff', 'any', or a dotted path" in messages[0].hint


def test_options_follow_settings_changes():
    with override_settings(TFBATCH={"MODELS": MODELS, "PERMISSION": "any", "MAX_IN_FLIGHT_PER_SOCKET": 3}):
        first = serving_options()
        assert serving_options() is first  # cached while the settings stand
        assert (first.permission.setting, first.max_in_flight_per_socket) == ("any", 3)
    with override_settings(TFBATCH={"MODELS": MODELS, "PERMISSION": "staff"}):
        assert serving_options().permission.setting == "staff"


def staff(active=True):
    return User(username="s", is_staff=True, is_active=active)


@pytest.mark.parametrize(
    ("setting", "user", "allowed"),
    [
        ("authenticated", AnonymousUser(), False),
        ("authenticated", None, False),
        ("authenticated", User(username="u"), True),
        ("staff", User(username="u"), False),
        ("staff", staff(active=False), False),
        ("staff", staff(), True),
        ("any", None, True),
        ("tests.serving.fakes.only_double", None, True),
    ],
)
@pytest.mark.django_db(transaction=True)  # a callable runs as Django runs requests: connections tidied
async def test_shortcuts_and_callables(setting, user, allowed):
    permission = Permission(setting)
    assert await permission.check(user, "double") is allowed
    assert permission.check_sync(user, "double") is allowed


@pytest.mark.django_db(transaction=True)  # a callable runs as Django runs requests: connections tidied
async def test_a_callable_decides_per_model():
    permission = Permission("tests.serving.fakes.only_double")
    assert await permission.check(None, "other") is False
    assert permission.refusal("other") == (
        "predicting with model 'other' is not allowed by TFBATCH['PERMISSION'] = 'tests.serving.fakes.only_double'"
    )


async def test_async_callables_are_awaited():
    permission = Permission("tests.serving.fakes.only_staff_async")
    assert await permission.check(staff(), "m") is True
    assert await permission.check(AnonymousUser(), "m") is False
    assert await asyncio.to_thread(permission.check_sync, staff(), "m") is True  # as a sync view would


@pytest.mark.django_db(transaction=True)
async def test_sync_callables_may_query_the_database_from_async_code():
    from asgiref.sync import sync_to_async

    user = await sync_to_async(User.objects.create_user)("alice")
    permission = Permission("tests.serving.fakes.user_in_database")
    assert await permission.check(user, "m") is True
    assert await permission.check(AnonymousUser(), "m") is False


def test_only_any_skips_loading_the_user():
    assert [Permission(s).needs_user for s in ("any", "authenticated", "tests.serving.fakes.only_double")] == [
        False,
        True,
        True,
    ]
