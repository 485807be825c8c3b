"""The worker keys: WORKER per model, the WORKER_* top-level keys, and their checks."""

from __future__ import annotations

from tfbatch_django.conf import parse

MODEL = {"RUNNER": "tests.fakes.double_runner"}


def ids(raw):
    return [p.id for p in parse(raw)[1]]


def test_worker_defaults_to_this_process():
    config, problems = parse({"MODELS": {"m": MODEL}})
    assert problems == [] and config.models["m"].worker is None
    assert config.workers.channel_layer == "default" and config.workers.coalesce is True
    assert config.workers.heartbeat == 0.5 and config.workers.dead_after == 3.0


def test_worker_name_is_parsed_and_shown_in_the_settings():
    config, problems = parse({"MODELS": {"m": {**MODEL, "WORKER": "gpu-0"}}, "WORKER_HEARTBEAT_MS": 200})
    assert problems == []
    assert config.models["m"].worker == "gpu-0" and config.models["m"].describe()["WORKER"] == "gpu-0"
    assert config.workers.heartbeat == 0.2


def test_bad_worker_names_are_e030():
    for bad in ("", "has space", "ü", 3, "x" * 81):
        assert ids({"MODELS": {"m": {**MODEL, "WORKER": bad}}}) == ["E030"], bad


def test_bad_worker_keys_are_e031_and_fall_back():
    config, problems = parse({"WORKER_HEARTBEAT_MS": 0, "WORKER_CHANNEL_LAYER": 5})
    assert [p.id for p in problems] == ["E031", "E031"]
    assert config.workers.heartbeat == 0.5 and config.workers.channel_layer == "default"
    config, problems = parse({"WORKER_HEARTBEAT_MS": 500, "WORKER_DEAD_AFTER_MS": 900})
    assert [p.id for p in problems] == ["E031"] and "twice" in problems[0].msg


def test_a_worker_needs_a_channel_layer_that_reaches_other_processes(settings):
    from tfbatch_django.checks import check_settings

    settings.TFBATCH = {"MODELS": {"m": {**MODEL, "WORKER": "gpu"}}}
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    assert [e.id for e in check_settings()] == ["tfbatch_django.E032"]
    settings.CHANNEL_LAYERS = {}
    assert [e.id for e in check_settings()] == ["tfbatch_django.E032"]
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer"}}
    assert check_settings() == []
    settings.TFBATCH = {"MODELS": {"m": MODEL}}
    settings.CHANNEL_LAYERS = {}
    assert check_settings() == []


def test_worker_transport_is_auto_or_layer():
    assert parse({})[0].workers.transport == "auto"
    assert parse({"WORKER_TRANSPORT": "layer"})[0].workers.transport == "layer"
    config, problems = parse({"WORKER_TRANSPORT": "redis"})
    assert [p.id for p in problems] == ["E031"] and "'auto' or 'layer'" in problems[0].msg
    assert config.workers.transport == "auto"
