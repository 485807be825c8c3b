"""Every documented per-model setting reaches what it controls.

Each test goes settings -> parser -> registry -> runner or batcher and checks the effect
(a behaviour, or what the runner says it runs with), so a value lost or mangled on the
way — hard-coded, or converted with the wrong unit — fails here. The framework keys
(INTRA_OP_THREADS, INTER_OP_THREADS, GPU_MEMORY_GROWTH, QUIET_TENSORFLOW) are checked in
fresh processes in ``tests/runners/test_tf_setup.py``; GC_FREEZE and
GIL_SWITCH_INTERVAL_MS in ``tests/test_api.py``; the serving and monitoring keys in
``tests/serving/`` and ``tests/monitoring/test_settings.py``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest
from django.test import override_settings

from tests.fakes import GatedModel
from tests.tf_models import TFSERVING
from tfbatch_django import ModelLoadError, Overloaded, PredictTimeout, get_stats, predict, predict_detailed
from tfbatch_django import predict_sync as predict_sync_
from tfbatch_django.registry import registry

HALF_PLUS_TWO = TFSERVING / "saved_model_half_plus_two_cpu"
MODELS: list[GatedModel] = []


def gated(width: int = 3, thread_safe: bool = False) -> GatedModel:
    """A ``RUNNER`` factory: ``OPTIONS`` arrive as its keyword arguments."""
    model = GatedModel(width)
    model.thread_safe = thread_safe
    MODELS.append(model)
    return model


def settings(**keys: Any) -> dict[str, Any]:
    return {"MODELS": {"m": {"RUNNER": "tests.test_settings_effects.gated", "WARMUP": False, **keys}}}


@pytest.fixture(autouse=True)
def fresh_models():
    MODELS.clear()
    yield
    for model in MODELS:
        model.release()


def rows(*values: float) -> np.ndarray:
    return np.array([[v] * 3 for v in values], np.float32)


async def wait_for(predicate: Any, what: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.002)


async def occupy() -> tuple[GatedModel, asyncio.Future[Any]]:
    """Load model "m", and hold it inside a batch of one row: what comes next queues."""
    await asyncio.to_thread(registry.get("m").load, 30)
    [model] = MODELS
    model.hold()
    first = asyncio.ensure_future(predict("m", rows(-1)))
    await asyncio.to_thread(model.entered.wait, 20)
    return model, first


def queued() -> int:
    batcher = registry.get("m").batcher
    assert batcher is not None
    return batcher.queue_depth()


def test_runner_and_options_reach_the_factory():
    with override_settings(TFBATCH=settings(OPTIONS={"width": 5})):
        assert predict_sync_("m", np.ones((1, 5), np.float32))["y"].tolist() == [[2.0] * 5]
        assert get_stats("m")["m"]["runner"]["inputs"][0]["shape"] == [-1, 5]


def test_signature_selects_what_runs():
    for signature, output in (("serving_default", [[2.5]]), ("regress_x2_to_y3", [[3.5]])):  # x/2 + 2, x/2 + 3
        with override_settings(TFBATCH={"MODELS": {"hp2": {"PATH": HALF_PLUS_TWO, "SIGNATURE": signature}}}):
            assert predict_sync_("hp2", [[1.0]]).tolist() == output
            assert get_stats("hp2")["hp2"]["runner"]["signature"] == signature


async def test_max_batch_size_caps_each_model_call():
    with override_settings(TFBATCH=settings(MAX_BATCH_SIZE=4, MAX_LATENCY_MS=60_000)):
        model, first = await occupy()
        rest = [asyncio.ensure_future(predict("m", rows(i))) for i in range(10)]
        await wait_for(lambda: get_stats("m")["m"]["requests"] == 11, "11 accepted requests")
        model.release()
        await asyncio.gather(first, *rest)
        assert model.sizes == [1, 4, 4, 2]


def test_max_latency_ms_is_milliseconds():
    with override_settings(TFBATCH=settings(MAX_LATENCY_MS=5)):
        batcher = registry.get("m").load(30)
        assert batcher.config.max_latency == pytest.approx(0.005)
        assert get_stats("m")["m"]["settings"]["MAX_LATENCY_MS"] == 5
    with override_settings(TFBATCH=settings()):  # the documented default, 5 ms
        assert registry.get("m").load(30).config.max_latency == pytest.approx(0.005)


async def test_allowed_batch_sizes_pad_each_batch():
    with override_settings(TFBATCH=settings(MAX_BATCH_SIZE=8, ALLOWED_BATCH_SIZES=[4, 8])):
        result = await predict_detailed("m", rows(1, 2, 3))
        [model] = MODELS
        assert model.sizes == [4]
        assert (result.batch.size, result.batch.padded_size) == (3, 4)


async def test_max_queue_size_refuses_beyond_it():
    with override_settings(TFBATCH=settings(MAX_QUEUE_SIZE=2)):
        model, first = await occupy()
        waiting = [asyncio.ensure_future(predict("m", rows(i))) for i in range(2)]
        await wait_for(lambda: queued() == 2, "2 queued requests")
        with pytest.raises(Overloaded, match=r"MAX_QUEUE_SIZE=2"):
            await asyncio.wait_for(predict("m", rows(9)), 20)
        model.release()
        await asyncio.gather(first, *waiting)


async def test_timeout_ms_is_the_default_deadline():
    with override_settings(TFBATCH=settings(TIMEOUT_MS=50)):
        model, first = await occupy()
        # The model is held until released: only the 50 ms default deadline can end this.
        with pytest.raises(PredictTimeout):
            await asyncio.wait_for(predict("m", rows(1)), 30)
        assert registry.get("m").load().config.default_timeout == pytest.approx(0.05)
        model.release()
        with pytest.raises(PredictTimeout):  # its deadline passed too, while its batch ran
            await first


def test_warmup_runs_every_batch_size_at_load():
    with override_settings(TFBATCH=settings(WARMUP=True, MAX_BATCH_SIZE=8)):
        registry.get("m").load(30)
        [model] = MODELS
        assert model.sizes == [1, 8]
        assert [w["size"] for w in get_stats("m")["m"]["warmup"]] == [1, 8]
    MODELS.clear()
    with override_settings(TFBATCH=settings(WARMUP=False, MAX_BATCH_SIZE=8)):
        registry.get("m").load(30)
        [model] = MODELS
        assert model.sizes == []


async def test_max_concurrent_batches_run_at_once():
    with override_settings(TFBATCH=settings(OPTIONS={"thread_safe": True}, MAX_CONCURRENT_BATCHES=2, MAX_BATCH_SIZE=1)):
        await asyncio.to_thread(registry.get("m").load, 30)
        [model] = MODELS
        model.hold()
        tasks = [asyncio.ensure_future(predict("m", rows(i))) for i in range(2)]
        # Both batches are inside the held model at once: only possible on two threads.
        await wait_for(lambda: len(model.batches) == 2, "two batches inside the model at once")
        model.release()
        await asyncio.gather(*tasks)


@pytest.mark.parametrize("path", ["savedmodel", "keras"])
def test_device_reaches_the_runner(classifier, path):
    model_path = classifier.savedmodel_path if path == "savedmodel" else classifier.keras_path
    with override_settings(TFBATCH={"MODELS": {"cpu": {"PATH": model_path, "DEVICE": "cpu"}}}):
        predict_sync_("cpu", np.zeros((1, 8, 8, 1), np.float32))
        device = get_stats("cpu")["cpu"]["runner"]["device"]
    assert device == ("/device:CPU:0" if path == "savedmodel" else "cpu:0")


def test_device_naming_a_gpu_this_process_lacks_fails_that_model():
    from tfbatch_django.runners.tf_setup import import_tensorflow

    if len(import_tensorflow().config.list_logical_devices("GPU")) > 7:
        pytest.skip("this machine has a GPU 7")
    with override_settings(TFBATCH={"MODELS": {"hp2": {"PATH": HALF_PLUS_TWO, "DEVICE": "gpu:7"}}}):
        with pytest.raises(ModelLoadError, match=r"DEVICE 'gpu:7' requested but this process sees \d+ GPU"):
            predict_sync_("hp2", [[1.0]])
        assert get_stats("hp2")["hp2"]["status"] == "failed"


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("path", ["savedmodel", "keras"])
def test_jit_compile_reaches_the_runner(classifier, images, path, jit):
    model_path = classifier.savedmodel_path if path == "savedmodel" else classifier.keras_path
    model = {"PATH": model_path, "JIT_COMPILE": jit, "MAX_BATCH_SIZE": 4, "ALLOWED_BATCH_SIZES": [4]}
    with override_settings(TFBATCH={"MODELS": {"cnn": model}}):
        got = predict_sync_("cnn", images[:3])
        assert get_stats("cnn")["cnn"]["runner"]["jit_compile"] is jit
        if path == "keras":
            assert registry.get("cnn").load().runner.model.jit_compile is jit  # what Keras itself will do
    np.testing.assert_allclose(got, classifier.direct(images[:3]).numpy(), rtol=1e-4, atol=1e-5)
