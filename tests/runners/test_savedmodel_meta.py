"""Reading signatures from saved_model.pb without TensorFlow."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.tf_models import TFSERVING
from tfbatch_django.runners.savedmodel_meta import TensorMeta, is_tf1_export, read_signatures, resolve_savedmodel_dir


def test_tf1_export_signatures():
    sigs = read_signatures(TFSERVING / "saved_model_half_plus_two_cpu")
    assert set(sigs) == {"serving_default", "classify_x_to_y", "regress_x_to_y", "regress_x_to_y2", "regress_x2_to_y3"}
    default = sigs["serving_default"]
    assert default.method_name == "tensorflow/serving/predict"
    assert default.inputs == (TensorMeta("x", "float32", (None, 1), "x:0"),)
    assert default.outputs == (TensorMeta("y", "float32", (None, 1), "y:0"),)
    assert sigs["classify_x_to_y"].inputs == (TensorMeta("inputs", "string", None, "tf_example:0"),)


def test_tf2_export_with_fixed_batch_and_no_internal_signatures():
    sigs = read_signatures(TFSERVING / "saved_model_half_plus_two_tf2_cpu")
    assert "__saved_model_init_op" not in sigs
    assert sigs["serving_default"].inputs == (TensorMeta("x", "float32", (1,), "serving_default_x:0"),)


def test_internal_signatures_on_request():
    sigs = read_signatures(TFSERVING / "saved_model_half_plus_two_tf2_cpu", internal=True)
    init = sigs["__saved_model_init_op"]
    assert (init.method_name, init.inputs) == ("", ())
    assert init.outputs == (TensorMeta("__saved_model_init_op", "unknown", None, "NoOp"),)


def test_the_meta_graph_tagged_serve_is_read_not_the_first(tf, tmp_path):
    """A SavedModel may hold several meta graphs (training, serving): TF Serving loads ``serve``."""
    from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

    model = saved_model_pb2.SavedModel()
    for tag, signature in (("train", "training_only"), ("serve", "served")):
        graph = model.meta_graphs.add()
        graph.meta_info_def.tags.append(tag)
        sig = graph.signature_def[signature]
        sig.method_name = "tensorflow/serving/predict"
        sig.inputs["x"].CopyFrom(meta_graph_pb2.TensorInfo(name="x:0", dtype=1))
    (tmp_path / "saved_model.pb").write_bytes(model.SerializeToString())
    assert list(read_signatures(tmp_path)) == ["served"]
    assert is_tf1_export(tmp_path)  # the serve graph has no object graph


def test_agrees_with_tensorflow_on_a_keras_export(classifier, tf):
    ours = read_signatures(classifier.savedmodel_path)["serving_default"]
    fn = tf.saved_model.load(str(classifier.savedmodel_path)).signatures["serving_default"]
    theirs = fn.structured_input_signature[1]
    assert [(t.name, t.dtype, t.shape) for t in ours.inputs] == [
        (name, spec.dtype.name, tuple(spec.shape.as_list())) for name, spec in theirs.items()
    ]


def test_not_a_savedmodel(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a SavedModel"):
        resolve_savedmodel_dir(tmp_path)


def test_does_not_import_tensorflow():
    code = (
        "import sys; from tfbatch_django.runners.savedmodel_meta import read_signatures; "
        f"read_signatures({str(TFSERVING / 'saved_model_half_plus_two_cpu')!r}); "
        "assert 'tensorflow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_tf1_exports_are_told_apart(classifier):
    assert is_tf1_export(TFSERVING / "saved_model_half_plus_two_cpu")
    assert not is_tf1_export(TFSERVING / "saved_model_half_plus_two_tf2_cpu")
    assert not is_tf1_export(classifier.savedmodel_path)
