"""The whole stack (settings -> registry -> batcher -> TensorFlow) with real SavedModels."""

from __future__ import annotations

import asyncio
import re

import numpy as np
import pytest
from django.test import override_settings

from tests.tf_models import TFSERVING, unloadable_savedmodel
from tfbatch_django import ModelLoadError, get_stats, predict, predict_detailed, predict_sync, warmup

SETTINGS = {
    "MODELS": {
        "half_plus_two": {"PATH": TFSERVING / "saved_model_half_plus_two_cpu", "MAX_BATCH_SIZE": 16},
        "half_plus_two_tf2": {"PATH": TFSERVING / "saved_model_half_plus_two_tf2_cpu", "MAX_BATCH_SIZE": 8},
        "unloadable": {"PATH": unloadable_savedmodel()},
    }
}


@pytest.fixture(autouse=True)
def models():
    with override_settings(TFBATCH=SETTINGS):
        yield


async def test_concurrent_async_callers_share_tensorflow_batches():
    results = await asyncio.gather(*(predict_detailed("half_plus_two", [[float(i)]]) for i in range(40)))
    for i, r in enumerate(results):
        assert r.outputs["y"].tolist() == [[i / 2 + 2]]
    assert max(r.batch.size for r in results) > 1
    stats = get_stats("half_plus_two")["half_plus_two"]
    assert stats["runner"]["signature"] == "serving_default"
    assert stats["runner"]["inputs"] == [{"name": "x", "dtype": "float32", "shape": [-1, 1]}]
    assert stats["requests"] == 40
    assert stats["rows"] == 40


def test_sync_callers_and_the_fixed_batch_model():
    assert predict_sync("half_plus_two_tf2", [1.0, 2.0, 5.0]).tolist() == [2.5, 3.0, 4.5]
    stats = get_stats("half_plus_two_tf2")["half_plus_two_tf2"]
    assert stats["runner"]["fixed_batch_size"] == 1
    assert "fixed batch dimension of 1" in stats["runner"]["notes"][0]


async def test_a_model_tensorflow_cannot_load_fails_alone():
    statuses = await asyncio.to_thread(warmup)
    assert statuses == {"half_plus_two": "ready", "half_plus_two_tf2": "ready", "unloadable": "failed"}
    with pytest.raises(ModelLoadError) as info:
        await predict("unloadable", [[1.0]])
    assert re.match(r"model 'unloadable': TensorFlow \S+ could not load the SavedModel at ", str(info.value))
    assert info.value.model == "unloadable"
    assert (await predict("half_plus_two", [[2.0]])).tolist() == [[3.0]]
    stats = get_stats()
    assert stats["unloadable"]["status"] == "failed"
    assert "could not load the SavedModel" in stats["unloadable"]["error"]


def test_outputs_equal_direct_model_calls(classifier, images):
    with override_settings(
        TFBATCH={"MODELS": {"cnn": {"PATH": classifier.savedmodel_path}, "cnn_keras": {"PATH": classifier.keras_path}}}
    ):
        expected = classifier.direct(images).numpy()
        np.testing.assert_allclose(predict_sync("cnn", images), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(predict_sync("cnn_keras", images), expected, rtol=1e-5, atol=1e-6)
