"""TensorFlow Serving's REST API beyond :predict, through every front door: version labels,
JSON 404s, every signature in the metadata, :classify and :regress on TF Serving's own
TF1 export, InvalidArgument from inside the model, and ``*_bytes`` outputs in base64."""

from __future__ import annotations

import base64

import pytest

from tests.tf_models import TFSERVING
from tfbatch_django.serving.tf_example import serialize_example

from .doors import EVERY_DOOR, call

HALF_PLUS_TWO = TFSERVING / "saved_model_half_plus_two_cpu"
MODELS = {
    "half_plus_two": {"PATH": HALF_PLUS_TWO, "VERSION_LABELS": {"stable": 123, "canary": 124}},
    "half_plus_two_tf2": {"PATH": TFSERVING / "saved_model_half_plus_two_tf2_cpu"},
    "regress": {"PATH": HALF_PLUS_TWO, "SIGNATURE": "regress_x_to_y"},
    "regress_y2": {"PATH": HALF_PLUS_TWO, "SIGNATURE": "regress_x_to_y2"},
    "classify": {"PATH": HALF_PLUS_TWO, "SIGNATURE": "classify_x_to_y"},
    "tf2_regress": {"PATH": TFSERVING / "saved_model_half_plus_two_tf2_cpu", "SIGNATURE": "regress_x_to_y"},
    "bytes": {"RUNNER": "tests.serving.fakes.bytes_runner"},
}
SETTINGS = {"MODELS": MODELS, "PERMISSION": "any", "STATS_PUBLISH_INTERVAL": None}

pytestmark = EVERY_DOOR


async def test_a_label_names_the_served_version(door):
    reply = await call(door, "POST", "v1/models/half_plus_two/labels/stable:predict", {"instances": [[1.0], [2.0]]})
    assert (reply.status, reply.body) == (200, b'{"predictions":[[2.5],[3.0]]}')
    status = await call(door, "GET", "v1/models/half_plus_two/labels/stable")
    assert status.json()["model_version_status"][0]["version"] == "123"
    metadata = await call(door, "GET", "v1/models/half_plus_two/labels/stable/metadata")
    assert metadata.json()["model_spec"]["version"] == "123"


async def test_labels_of_other_versions_and_unknown_labels(door):
    reply = await call(door, "POST", "v1/models/half_plus_two/labels/canary:predict", {"instances": [[1.0]]})
    assert (reply.status, reply.json()) == (
        404,
        {"error": "model 'half_plus_two' has no version 124; it serves version 123"},
    )
    reply = await call(door, "GET", "v1/models/half_plus_two/labels/nope")
    # TensorFlow Serving's status and words for a label it does not know.
    assert (reply.status, reply.json()) == (400, {"error": "Unrecognized servable version label: nope"})
    assert (await call(door, "GET", "v1/models/half_plus_two_tf2/labels/stable")).status == 400


@pytest.mark.parametrize(
    "path", ["v1", "v1/", "v1/models", "v1/models/", "v1/foo", "v1/models/half_plus_two/versions/x", "v1/models/a/b/c"]
)
async def test_every_unknown_url_under_v1_is_a_json_404(door, path):
    reply = await call(door, "GET", path)
    assert (reply.status, reply.headers["content-type"]) == (404, "application/json")
    assert reply.json()["error"].startswith("no endpoint GET ")


async def test_metadata_of_a_tf2_export_lists_every_signature_with_the_init_op(door):
    reply = await call(door, "GET", "v1/models/half_plus_two_tf2/metadata")
    signatures = reply.json()["metadata"]["signature_def"]["signature_def"]
    assert set(signatures) == {
        "__saved_model_init_op",
        "serving_default",
        "classify_x_to_y",
        "classify_x2_to_y3",
        "regress_x_to_y",
        "regress_x_to_y2",
        "regress_x2_to_y3",
    }
    # As TF Serving shows TensorFlow's own init op.
    assert signatures["__saved_model_init_op"] == {
        "inputs": {},
        "outputs": {
            "__saved_model_init_op": {
                "dtype": "DT_INVALID",
                "tensor_shape": {"dim": [], "unknown_rank": True},
                "name": "NoOp",
            }
        },
        "method_name": "",
    }


async def test_regress_answers_as_tf_serving(door):
    body = {"examples": [{"x": 1.0}, {"x": 2.0}, {"x": 5.0}]}
    reply = await call(door, "POST", "v1/models/regress:regress", body)
    assert (reply.status, reply.body) == (200, b'{"results":[2.5,3.0,4.5]}')
    assert int(reply.headers["x-tfbatch-batch-size"]) >= 3
    # context features go into every example; the signature may be named.
    body = {"signature_name": "regress_x_to_y2", "context": {"x": 4.0}, "examples": [{}, {"x": 2.0}]}
    reply = await call(door, "POST", "v1/models/regress_y2:regress", body)
    assert (reply.status, reply.json()) == (200, {"results": [5.0, 4.0]})  # y2 = x / 2 + 3


async def test_classify_answers_as_tf_serving(door):
    reply = await call(door, "POST", "v1/models/classify:classify", {"examples": [{"x": 1.0}, {"x": 3.0}]})
    # The signature has scores and no classes: labels are empty strings, as TF Serving writes them.
    assert (reply.status, reply.json()) == (200, {"results": [[["", 2.5]], [["", 3.5]]]})


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        (
            "half_plus_two:regress",
            {"examples": [{"x": 1.0}]},
            "Expected regression signature method_name to be tensorflow/serving/regress. "
            "Was: tensorflow/serving/predict",
        ),
        (
            "regress:classify",
            {"examples": [{"x": 1.0}]},
            "Expected classification signature method_name to be tensorflow/serving/classify. "
            "Was: tensorflow/serving/regress",
        ),
        (
            "tf2_regress:regress",
            {"examples": [{"x": 1.0}]},
            "Expected regression signature method_name to be tensorflow/serving/regress. "
            "Was: tensorflow/serving/predict",
        ),
        ("regress:regress", {"examples": []}, "'examples' must be a non-empty list"),
        ("regress:regress", {"examples": [{"x": [1.0, "a"]}]}, "feature 'x' must hold numbers or strings"),
        ("regress:regress", {"examples": [{"x": 1.0}], "context": [1]}, "'context' must be an object"),
        ("regress:regress", {"signature_name": "other", "examples": [{"x": 1.0}]}, "not 'other'"),
        (
            "half_plus_two:explain",
            {"examples": [{"x": 1.0}]},
            "Malformed request: POST v1/models/half_plus_two:explain",
        ),
    ],
)
async def test_classify_and_regress_refusals_are_400(door, path, body, error):
    reply = await call(door, "POST", "v1/models/" + path, body)
    assert reply.status == 400
    assert error in reply.json()["error"]


async def test_invalid_argument_inside_the_model_is_400_with_its_message(door):
    # An integer feature where the graph parses a float: TensorFlow's ParseExample refuses it.
    reply = await call(door, "POST", "v1/models/regress:regress", {"examples": [{"x": 1}]})
    assert (reply.status, reply.json()) == (
        400,
        {
            "error": "Name: <unknown>, Key: x, Index: 0.  Data types don't match. "
            "Data type: int64 but expected type: float\n\t [[{{node ParseExample/ParseExample}}]]"
        },
    )
    # Its batch-mates and later requests are not harmed.
    reply = await call(door, "POST", "v1/models/regress:regress", {"examples": [{"x": 1.0}]})
    assert (reply.status, reply.json()) == (200, {"results": [2.5]})


async def test_outputs_named_bytes_are_base64_whatever_their_content(door):
    body = {"instances": ["plain text", {"b64": base64.b64encode(b"\xff\x00").decode()}]}
    reply = await call(door, "POST", "v1/models/bytes:predict", body)
    assert reply.json() == {
        "predictions": [
            {"raw_bytes": {"b64": base64.b64encode(b"plain text").decode()}, "echo": "plain text"},
            {"raw_bytes": {"b64": "/wA="}, "echo": {"b64": "/wA="}},
        ]
    }
    reply = await call(door, "POST", "v1/models/bytes:predict", {"inputs": ["hi"]})
    assert reply.json() == {"outputs": {"raw_bytes": [{"b64": "aGk="}], "echo": ["hi"]}}


def test_examples_serialize_as_tensorflow_does(door, tf):
    features = {"f": 1.5, "i": [1, -2], "s": "text", "b": [b"\xff", b"x"], "floats": [1, 2.5]}
    expected = tf.train.Example(
        features=tf.train.Features(
            feature={
                "f": tf.train.Feature(float_list=tf.train.FloatList(value=[1.5])),
                "i": tf.train.Feature(int64_list=tf.train.Int64List(value=[1, -2])),
                "s": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"text"])),
                "b": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"\xff", b"x"])),
                "floats": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0, 2.5])),
            }
        )
    )
    assert tf.train.Example.FromString(serialize_example(features)) == expected
    assert (
        serialize_example({"x": 1.0})
        == tf.train.Example(
            features=tf.train.Features(feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0]))})
        ).SerializeToString()
    )
