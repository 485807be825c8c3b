"""Keras 3 runner: .keras archives through Keras' own API."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tfbatch_django.batching import BatchConfig, Batcher
from tfbatch_django.exceptions import ModelLoadError
from tfbatch_django.runners.keras import KerasRunner
from tfbatch_django.runners.tensorflow import SavedModelRunner


def test_keras_archive_matches_direct_calls(classifier, images):
    runner = KerasRunner(classifier.keras_path)
    assert runner.input_specs["image"].shape == (None, 8, 8, 1)
    assert runner.output_names == ["probs"]
    assert runner.describe()["backend"] == "tensorflow"
    assert not runner.thread_safe
    batcher = Batcher(runner, BatchConfig(max_batch_size=16), name="k").start()
    try:
        result = batcher.predict_sync(images)
        np.testing.assert_allclose(result.outputs["probs"], classifier.direct(images).numpy(), rtol=1e-5, atol=1e-6)
        assert result.batch.batches == 3
    finally:
        batcher.close()


def test_dict_inputs_and_outputs(two_headed):
    runner = KerasRunner(two_headed.keras_path, device="cpu")
    a = np.ones((2, 3), np.float32)
    b = np.array([[1, 2], [3, 4]], np.int32)
    out = runner.run({"a": a, "b": b})
    direct = two_headed.direct({"a": a, "b": b})
    assert set(out) == {"total", "scores"}
    np.testing.assert_allclose(out["scores"], direct["scores"].numpy(), rtol=1e-5, atol=1e-6)
    assert runner.describe()["device"] == "cpu:0"


def test_jit_compile_follows_keras_default_unless_set(tf, classifier):
    default = KerasRunner(classifier.keras_path)
    # Keras' own default on TensorFlow: XLA only where there is a GPU (JAX: tests/runners/test_keras_jax.py).
    expected = bool(tf.config.list_physical_devices("GPU"))
    assert (default.describe()["jit_compile"], default.describe()["jit_compile_source"]) == (expected, "Keras default")
    for forced in (False, True):
        runner = KerasRunner(classifier.keras_path, jit_compile=forced)
        assert (runner.describe()["jit_compile"], runner.describe()["jit_compile_source"]) == (forced, "JIT_COMPILE")
        assert runner.model.jit_compile is forced


def test_unnamed_inputs_get_a_note(tf, tmp_path):
    import keras

    inp = keras.Input((2,))
    model = keras.Model(inp, keras.layers.Dense(1)(inp))
    model.save(tmp_path / "unnamed.keras")
    model.export(str(tmp_path / "unnamed"), verbose=False)
    runner = KerasRunner(tmp_path / "unnamed.keras")
    [note] = runner.notes
    assert re.fullmatch(
        r"inputs have generated names \['input_layer(_\d+)?'\], which change when the model is rebuilt; "
        r"name them with keras.Input\(name=...\) before saving or exporting",
        note,
    )
    exported = SavedModelRunner(tmp_path / "unnamed")
    assert re.search(r"generated names \['keras_tensor(_\d+)?'\]", exported.describe()["notes"][0])


def test_missing_or_corrupt_archive(tmp_path):
    with pytest.raises(ModelLoadError, match="no Keras archive at"):
        KerasRunner(tmp_path / "nope.keras")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ModelLoadError, match=r"Keras 3\.\d+\.\d+ could not load .*bad\.keras"):
        KerasRunner(bad)


def test_keras_on_tensorflow_stages_batches_as_tensors(classifier, images, tf):
    runner = KerasRunner(classifier.keras_path)
    staged = runner.stage({"image": images[:4]})
    assert isinstance(staged["image"], tf.Tensor)
    np.testing.assert_allclose(runner.run(staged)["probs"], classifier.direct(images[:4]).numpy(), rtol=1e-5, atol=1e-6)
    batcher = Batcher(runner, BatchConfig(max_batch_size=4), name="k").start()
    try:
        assert batcher.staging
        result = batcher.predict_sync(images[:6])  # two batches, each staged before it runs
        np.testing.assert_allclose(result.outputs["probs"], classifier.direct(images[:6]).numpy(), rtol=1e-5, atol=1e-6)
    finally:
        batcher.close()
