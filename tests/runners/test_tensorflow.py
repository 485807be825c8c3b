"""SavedModel runner with real exports: our own Keras exports and TF Serving's test models."""

from __future__ import annotations

import asyncio
import shutil
import threading

import numpy as np
import pytest

from tests.tf_models import TFSERVING, unloadable_savedmodel
from tfbatch_django.batching import BatchConfig, Batcher, Runner
from tfbatch_django.exceptions import ModelLoadError
from tfbatch_django.runners import RunnerConfig, load_runner
from tfbatch_django.runners.tensorflow import TF1_NOTE, SavedModelRunner
from tfbatch_django.runners.tf_setup import import_tensorflow

HALF_PLUS_TWO = TFSERVING / "saved_model_half_plus_two_cpu"
HALF_PLUS_TWO_TF2 = TFSERVING / "saved_model_half_plus_two_tf2_cpu"


def serve(runner, **config) -> Batcher:
    return Batcher(runner, BatchConfig(**config), name="t").start()


def test_keras_export_matches_direct_calls_through_the_batcher(classifier, images):
    runner = SavedModelRunner(classifier.savedmodel_path)
    assert list(runner.input_specs) == ["image"]
    assert runner.input_specs["image"].shape == (None, 8, 8, 1)
    assert list(runner.output_specs) == ["output_0"]  # Keras exports name the output so
    batcher = serve(runner, max_batch_size=16, allowed_batch_sizes=(1, 8, 16))
    try:

        async def main():
            return await asyncio.gather(*(batcher.predict(images[i : i + 1]) for i in range(len(images))))

        results = asyncio.run(main())
        expected = classifier.direct(images).numpy()
        got = np.concatenate([r.outputs["output_0"] for r in results])
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        assert max(r.batch.size for r in results) > 1
        assert {r.batch.padded_size for r in results} <= {1, 8, 16}
        assert [w["size"] for w in batcher.warmup_report] == [1, 8, 16]
    finally:
        batcher.close()


def test_multi_input_multi_output_export(two_headed):
    runner = SavedModelRunner(two_headed.savedmodel_path)
    assert runner.input_specs["b"].dtype == np.int32
    a = np.random.default_rng(0).random((5, 3), dtype=np.float32)
    b = np.array([[1, 2], [3, 4], [5, 6], [7, 8], [9, 0]], dtype=np.int32)
    batcher = serve(runner, max_batch_size=4)
    try:
        result = batcher.predict_sync({"a": a, "b": b.tolist()})  # lists are cast to the input's int32
        direct = two_headed.direct({"a": a, "b": b})
        assert set(result.outputs) == {"total", "scores"}
        for name in ("total", "scores"):
            np.testing.assert_allclose(result.outputs[name], direct[name].numpy(), rtol=1e-5, atol=1e-6)
        assert result.batch.batches == 2  # 5 rows over batches of at most 4
    finally:
        batcher.close()


def test_tf1_half_plus_two_answers_like_tf_serving():
    runner = SavedModelRunner(HALF_PLUS_TWO)
    assert runner.version == 123  # TF Serving's numbered version directory
    assert runner.describe()["notes"] == [TF1_NOTE]  # the same on every load in the process
    assert SavedModelRunner(HALF_PLUS_TWO).describe()["notes"] == [TF1_NOTE]
    batcher = serve(runner)
    try:
        assert batcher.predict_sync([[1.0], [2.0], [5.0]]).outputs == {
            "y": pytest.approx(np.array([[2.5], [3.0], [4.5]]))
        }
    finally:
        batcher.close()


def test_tf1_classify_signature_takes_serialized_examples(tf):
    runner = SavedModelRunner(HALF_PLUS_TWO, signature="classify_x_to_y")
    spec = runner.input_specs["inputs"]
    assert spec.is_string and spec.shape is None  # unknown rank: no warm-up possible
    examples = [
        tf.train.Example(
            features=tf.train.Features(feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=[v]))})
        ).SerializeToString()
        for v in (1.0, 4.0)
    ]
    batcher = serve(runner)
    try:
        assert batcher.warmup_report == [{"skipped": "inputs with unknown dimensions: inputs"}]
        result = batcher.predict_sync(np.array(examples, dtype=object))
        np.testing.assert_allclose(result.outputs["scores"], [[2.5], [4.0]])
    finally:
        batcher.close()


def test_tf2_fixed_batch_of_one_runs_rows_one_at_a_time(caplog):
    with caplog.at_level("WARNING", logger="tfbatch_django.runners"):
        runner = SavedModelRunner(HALF_PLUS_TWO_TF2)
    assert runner.fixed_batch == 1
    note = "signature 'serving_default' has a fixed batch dimension of 1: rows run 1 at a time, one model call each"
    assert note in caplog.text
    assert runner.describe()["notes"] == [note]
    assert runner.describe()["fixed_batch_size"] == 1
    batcher = serve(runner, max_batch_size=8)
    try:

        async def main():
            return await asyncio.gather(*(batcher.predict([float(v), float(v) + 1]) for v in range(20)))

        results = asyncio.run(main())
        for v, r in enumerate(results):
            np.testing.assert_allclose(r.outputs["y"], [v / 2 + 2, (v + 1) / 2 + 2])
        assert max(r.batch.size for r in results) > 2
    finally:
        batcher.close()


def test_savedmodel_that_tensorflow_cannot_load_raises_a_clear_error():
    with pytest.raises(ModelLoadError) as info:
        SavedModelRunner(unloadable_savedmodel())
    version = import_tensorflow().__version__
    prefix = f"TensorFlow {version} could not load the SavedModel at {unloadable_savedmodel() / '00000123'}: "
    assert str(info.value).startswith(prefix)


def test_unknown_signature_lists_the_available_ones():
    with pytest.raises(
        ModelLoadError, match=r"has no signature 'predict'; available: classify_x_to_y, .*serving_default"
    ):
        SavedModelRunner(HALF_PLUS_TWO, signature="predict")


def test_highest_version_directory_is_served(tmp_path):
    shutil.copytree(HALF_PLUS_TWO / "00000123", tmp_path / "1")
    shutil.copytree(HALF_PLUS_TWO / "00000123", tmp_path / "7")
    (tmp_path / "notes").mkdir()
    runner = SavedModelRunner(tmp_path)
    assert runner.version == 7
    assert runner.path == tmp_path / "7"


def test_devices():
    assert SavedModelRunner(HALF_PLUS_TWO, device="cpu").describe()["device"] == "/device:CPU:0"
    with pytest.raises(RuntimeError, match=r"DEVICE 'gpu:0' requested but this process sees 0 GPU\(s\)"):
        SavedModelRunner(HALF_PLUS_TWO, device="gpu:0")


def test_xla_compiled_with_padding_matches_plain(classifier, images):
    plain = SavedModelRunner(classifier.savedmodel_path)
    compiled = SavedModelRunner(classifier.savedmodel_path, jit_compile=True)
    batcher = serve(compiled, max_batch_size=8, allowed_batch_sizes=(4, 8))
    try:
        got = batcher.predict_sync(images[:11])
        want = plain.run({"image": images[:11]})
        np.testing.assert_allclose(got.outputs["output_0"], want["output_0"], rtol=1e-4, atol=1e-5)
        assert compiled.describe()["jit_compile"] is True
    finally:
        batcher.close()


def test_a_savedmodel_runs_as_a_graph_unless_jit_compile_is_set(classifier):
    # JIT_COMPILE's default (None, the framework's default) keeps a SavedModel as it was: no XLA.
    assert load_runner(RunnerConfig(path=classifier.savedmodel_path)).describe()["jit_compile"] is False
    assert (
        load_runner(RunnerConfig(path=classifier.savedmodel_path, jit_compile=False)).describe()["jit_compile"] is False
    )


class MeetInside(Runner):
    """Delegates to a real runner; once armed, its first two calls wait for each other
    inside ``run`` (a barrier, 20 s at most), then both call the model at once."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.input_specs = runner.input_specs
        self.output_specs = runner.output_specs
        self.thread_safe = runner.thread_safe
        self.barrier = threading.Barrier(2, timeout=20)
        self.armed = False
        self.met = 0
        self.lock = threading.Lock()

    def run(self, inputs):
        with self.lock:
            meet = self.armed and self.met < 2
            self.met += meet
        if meet:
            self.barrier.wait()  # raises BrokenBarrierError if no second batch comes
        return self.runner.run(inputs)


def test_concurrent_batches_on_a_thread_safe_savedmodel(classifier, images):
    runner = MeetInside(load_runner(RunnerConfig(path=classifier.savedmodel_path)))
    assert runner.thread_safe
    batcher = serve(runner, max_batch_size=4, max_concurrent_batches=2)
    runner.armed = True  # after warm-up, which runs one batch at a time
    try:

        async def main():
            return await asyncio.gather(*(batcher.predict(images[i : i + 2]) for i in range(0, 36, 2)))

        results = asyncio.run(main())
        got = np.concatenate([r.outputs["output_0"] for r in results])
        np.testing.assert_allclose(got, classifier.direct(images[:36]).numpy(), rtol=1e-5, atol=1e-6)
        # Two batches were inside the SavedModel at the same time (they met at the barrier).
        assert runner.met == 2
        assert not runner.barrier.broken
    finally:
        batcher.close()


def test_invalid_argument_inside_the_graph_is_invalid_input_in_tensorflows_words(tf):
    from tfbatch_django.exceptions import InvalidInput
    from tfbatch_django.serving.tf_example import serialize_example

    runner = SavedModelRunner(HALF_PLUS_TWO, signature="regress_x_to_y")
    wrong = np.array([serialize_example({"x": 1})], dtype=object)  # int64 where a float is parsed
    with pytest.raises(InvalidInput) as info:
        runner.run({"inputs": wrong})
    assert info.value.message == (
        "Name: <unknown>, Key: x, Index: 0.  Data types don't match. Data type: int64 but expected type: float"
        "\n\t [[{{node ParseExample/ParseExample}}]]"
    )
    assert isinstance(info.value.__cause__, tf.errors.InvalidArgumentError)


def test_op_error_message_keeps_the_ops_words_only():
    from tfbatch_django.runners.tensorflow import op_error_message

    raw = (
        "Graph execution error:\n\nDetected at node ParseExample defined at (most recent call last):\n"
        '  File "/srv/app/x.py", line 4, in <module>\n\n  File "/srv/y.py", line 9, in f\n\n'
        "Key: x.  Data types don't match\n\t [[{{node ParseExample}}]] [Op:__inference_pruned_171]"
    )
    assert op_error_message(raw) == "Key: x.  Data types don't match\n\t [[{{node ParseExample}}]]"
    assert op_error_message("plain message") == "plain message"


def test_batches_are_staged_on_the_device_before_they_run(classifier, images, tf):
    runner = SavedModelRunner(classifier.savedmodel_path)
    staged = runner.stage({"image": images[:3]})
    assert isinstance(staged["image"], tf.Tensor)
    assert staged["image"].device.endswith(runner.device.split("device:")[-1])
    np.testing.assert_array_equal(staged["image"].numpy(), images[:3])
    np.testing.assert_allclose(
        runner.run(staged)["output_0"], runner.run({"image": images[:3]})["output_0"], rtol=1e-6, atol=1e-7
    )
    batcher = serve(runner, max_batch_size=8)
    try:
        assert batcher.staging
        result = batcher.predict_sync(images[:5])
        np.testing.assert_allclose(
            result.outputs["output_0"], classifier.direct(images[:5]).numpy(), rtol=1e-5, atol=1e-6
        )
    finally:
        batcher.close()
