"""The public API through Django settings: predict, predict_sync, stats, warm-up, errors."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from django.test import override_settings

import tfbatch_django
from tfbatch_django import (
    InvalidInput,
    ModelError,
    ModelLoadError,
    ModelNotFound,
    get_stats,
    model_info,
    predict,
    predict_detailed,
    predict_sync,
    warmup,
)
from tfbatch_django.registry import registry

FAKES = {
    "MODELS": {
        "double": {"RUNNER": "tests.fakes.double_runner", "MAX_BATCH_SIZE": 8},
        "slow": {"RUNNER": "tests.fakes.slow_runner", "OPTIONS": {"delay_ms": 20}, "MAX_BATCH_SIZE": 4},
        "failing": {"RUNNER": "tests.fakes.failing_runner", "WARMUP": False},
        "broken": {"RUNNER": "tests.fakes.broken_factory"},
        "slow_load": {"RUNNER": "tests.fakes.slow_loading_runner"},
    }
}


@pytest.fixture(autouse=True)
def fake_models():
    with override_settings(TFBATCH=FAKES):
        yield


def test_public_surface_is_explicit():
    assert set(tfbatch_django.__all__) >= {"predict", "predict_sync", "get_stats", "TFBatchError", "ModelNotFound"}
    for name in tfbatch_django.__all__:
        assert hasattr(tfbatch_django, name), name


async def test_predict_returns_the_single_output():
    y = await predict("double", [[1, 2, 3]])
    assert isinstance(y, np.ndarray)
    assert y.tolist() == [[2, 4, 6]]


async def test_predict_detailed_has_batch_info():
    result = await predict_detailed("double", np.ones((2, 3), np.float32))
    assert result.outputs["y"].shape == (2, 3)
    assert result.batch.size >= 2


def test_predict_sync_from_plain_code():
    assert predict_sync("double", [[1, 1, 1]], timeout=5).tolist() == [[2, 2, 2]]


async def test_predict_sync_refuses_to_block_an_event_loop():
    with pytest.raises(RuntimeError, match="use 'await predict"):
        predict_sync("double", [[1, 1, 1]])


async def test_unknown_model_lists_configured_ones():
    expected = "no model named 'nope'; configured models: 'double', 'slow', 'failing', 'broken', 'slow_load'"
    with pytest.raises(ModelNotFound) as info:
        await predict("nope", [[1]])
    assert str(info.value) == expected


async def test_invalid_input_names_model_and_input():
    with pytest.raises(InvalidInput, match="input 'x' has shape") as info:
        await predict("double", [[1, 2]])
    assert (info.value.model, info.value.input) == ("double", "x")


async def test_model_that_fails_to_load_fails_alone():
    with pytest.raises(ModelLoadError, match="weights file is corrupt"):
        await predict("broken", [[1]])
    with pytest.raises(ModelLoadError, match="weights file is corrupt"):
        predict_sync_in_thread("broken", [[1]])
    assert (await predict("double", [[1, 1, 1]])).tolist() == [[2, 2, 2]]
    stats = get_stats()
    assert stats["broken"]["status"] == "failed"
    assert "OSError: weights file is corrupt" in stats["broken"]["error"]
    assert stats["double"]["status"] == "ready"


async def test_model_errors_reach_the_caller():
    with pytest.raises(ModelError, match="this model always fails"):
        await predict("failing", [[1, 2]])


def predict_sync_in_thread(model, x):
    box = {}

    def run():
        try:
            box["value"] = predict_sync(model, x)
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    if "error" in box:
        raise box["error"]
    return box["value"]


def test_stats_before_and_after_load():
    stats = get_stats()
    assert set(stats) == {"double", "slow", "failing", "broken", "slow_load"}
    before = stats["slow"]
    assert before["status"] == "not_loaded"
    assert before["requests"] == 0
    assert before["settings"]["MAX_BATCH_SIZE"] == 4
    predict_sync("slow", [[1, 2]])
    after = get_stats("slow")["slow"]
    assert after["status"] == "ready"
    assert after["requests"] == 1
    assert after["runner"]["inputs"] == [{"name": "x", "dtype": "float32", "shape": [-1, 2]}]
    assert [w["size"] for w in after["warmup"]] == [1, 4]


def test_warmup_reports_statuses():
    assert warmup(["double", "broken"]) == {"double": "ready", "broken": "failed"}
    info = model_info("double")
    assert info["ready"] is True
    assert info["runner"]["runner"] == "callable"


async def test_concurrent_async_callers_batch_together():
    results = await asyncio.gather(*(predict_detailed("slow", [[i, i]]) for i in range(12)))
    assert [r.outputs["y"].tolist() for r in results] == [[[i + 1, i + 1]] for i in range(12)]
    assert max(r.batch.size for r in results) == 4


async def test_a_predict_cancelled_in_the_queue_is_dropped_and_counted():
    # predict() awaits the batcher's future itself (one coroutine per call): cancelling
    # it must still reach the scheduler, which drops the request and counts it once.
    with override_settings(
        TFBATCH={
            "MODELS": {"slow": {"RUNNER": "tests.fakes.slow_runner", "OPTIONS": {"delay_ms": 300}, "MAX_BATCH_SIZE": 4}}
        }
    ):
        await predict("slow", [[0, 0]])  # loaded and warm
        batch = [asyncio.ensure_future(predict("slow", [[i, i]])) for i in range(4)]
        queued = asyncio.ensure_future(predict("slow", [[9, 9]]))
        await asyncio.sleep(0)  # every task has submitted; the first four are a full batch
        queued.cancel()
        assert [(await t).tolist() for t in batch] == [[[i + 1, i + 1]] for i in range(4)]
        assert queued.cancelled()
        for _ in range(200):  # the scheduler drops it once the runner is free again
            stats = get_stats("slow")["slow"]
            if stats["cancelled"]:
                break
            await asyncio.sleep(0.01)
        assert stats["cancelled"] == 1
        assert stats["completed"] == 5
        assert stats["requests"] == 6


def test_settings_change_rebuilds_the_registry():
    first = registry.get("double").load()
    with override_settings(
        TFBATCH={"MODELS": {"double": {"RUNNER": "tests.fakes.double_runner", "MAX_BATCH_SIZE": 2}}}
    ):
        second = registry.get("double").load()
        assert second is not first
        assert second.config.max_batch_size == 2
        assert set(get_stats()) == {"double"}
    assert not first.alive  # closed when the settings changed


async def test_a_caller_cancelled_while_the_model_loads_does_not_cancel_the_load():
    first = asyncio.ensure_future(predict("slow_load", [[1, 1, 1]]))
    second = asyncio.ensure_future(predict("slow_load", [[2, 2, 2]]))
    await asyncio.sleep(0.05)
    first.cancel()
    assert (await second).tolist() == [[4, 4, 4]]
    assert (await predict("slow_load", [[3, 3, 3]])).tolist() == [[6, 6, 6]]
    assert first.cancelled()


def test_loading_a_model_freezes_the_objects_alive_then():
    import gc

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    predict_sync("double", [[1, 1, 1]])
    assert gc.get_freeze_count() > 0
    gc.unfreeze()
    with override_settings(TFBATCH={**FAKES, "GC_FREEZE": False}):
        predict_sync("double", [[1, 1, 1]])
        assert gc.get_freeze_count() == 0


def test_gil_switch_interval_is_applied_when_a_model_loads():
    import sys

    before = sys.getswitchinterval()
    try:
        with override_settings(TFBATCH={**FAKES, "GIL_SWITCH_INTERVAL_MS": 1}):
            predict_sync("double", [[1, 1, 1]])
            assert sys.getswitchinterval() == pytest.approx(0.001)
    finally:
        sys.setswitchinterval(before)


def test_settings_in_stats_are_json_and_keep_runner_options_private():
    import json

    secret = {"MODELS": {"m": {"RUNNER": "tests.fakes.slow_runner", "OPTIONS": {"delay_ms": object()}}}}
    with override_settings(TFBATCH=secret):
        settings = get_stats()["m"]["settings"]
    json.dumps(settings)
    assert settings["OPTIONS"] == ["delay_ms"]  # the key, never the value


def test_a_listener_added_after_the_models_were_configured_gets_their_events():
    events = []

    class Listener:
        def on_request(self, model, outcome, queue_wait, latency):
            events.append((model, outcome))

        def on_batch(self, model, rows, padded, run_time, queue_depth):
            pass

    registry.handles()  # the handles exist before the listener does (e.g. Prometheus switched on later)
    listener = Listener()
    registry.add_listener(listener)
    try:
        predict_sync("double", [[1, 1, 1]])
    finally:
        registry.remove_listener(listener)
    assert events == [("double", "ok")]
