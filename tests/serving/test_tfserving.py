"""TensorFlow Serving's REST API, through every front door (Django async and sync views,
the Channels fast door), with TF Serving's own test SavedModels answering as TF Serving does."""

from __future__ import annotations

import asyncio
import base64

import pytest
from django.test import override_settings

from tests.tf_models import TFSERVING, unloadable_savedmodel
from tfbatch_django import get_stats

from .doors import EVERY_DOOR, call
from .fakes import until

MODELS = {
    "double": {"RUNNER": "tests.fakes.double_runner", "MAX_BATCH_SIZE": 8},
    "pair": {"RUNNER": "tests.serving.fakes.pair_runner"},
    "text": {"RUNNER": "tests.serving.fakes.text_runner", "WARMUP": False},
    "failing": {"RUNNER": "tests.fakes.failing_runner", "WARMUP": False},
    "half_plus_two": {"PATH": TFSERVING / "saved_model_half_plus_two_cpu"},
    "half_plus_two_tf2": {"PATH": TFSERVING / "saved_model_half_plus_two_tf2_cpu"},
    "half_plus_three": {"PATH": unloadable_savedmodel()},  # the name it had: TF Serving's, unloadable in TF 2.21
}
SETTINGS = {"MODELS": MODELS, "PERMISSION": "any"}

pytestmark = EVERY_DOOR


async def test_row_format_answers_exactly_as_tf_serving(door):
    reply = await call(door, "POST", "v1/models/half_plus_two:predict", {"instances": [[1.0], [2.0], [5.0]]})
    assert (reply.status, reply.body) == (200, b'{"predictions":[[2.5],[3.0],[4.5]]}')
    assert reply.headers["content-type"] == "application/json"
    assert int(reply.headers["x-tfbatch-batch-size"]) >= 3
    assert float(reply.headers["x-tfbatch-run-ms"]) > 0


async def test_columnar_format_answers_exactly_as_tf_serving(door):
    reply = await call(door, "POST", "v1/models/half_plus_two:predict", {"inputs": [[3.0], [4.0]]})
    assert (reply.status, reply.body) == (200, b'{"outputs":[[3.5],[4.0]]}')


async def test_tf2_export_with_a_fixed_batch_of_one(door):
    reply = await call(door, "POST", "v1/models/half_plus_two_tf2:predict", {"instances": [1.0, 2.0, 5.0]})
    assert (reply.status, reply.json()) == (200, {"predictions": [2.5, 3.0, 4.5]})


async def test_signature_name_and_version_in_the_url(door):
    body = {"signature_name": "serving_default", "instances": [[1.0]]}
    reply = await call(door, "POST", "v1/models/half_plus_two/versions/123:predict", body)
    assert (reply.status, reply.json()) == (200, {"predictions": [[2.5]]})
    reply = await call(door, "POST", "v1/models/half_plus_two/versions/7:predict", body)
    assert (reply.status, reply.json()) == (
        404,
        {"error": "model 'half_plus_two' has no version 7; it serves version 123"},
    )


async def test_other_signatures_are_refused_with_how_to_serve_them(door):
    body = {"signature_name": "regress_x_to_y", "instances": [[1.0]]}
    reply = await call(door, "POST", "v1/models/half_plus_two:predict", body)
    assert reply.status == 400
    assert reply.json()["error"] == (
        "model 'half_plus_two' serves signature 'serving_default', not 'regress_x_to_y'; "
        "configure another model on the same PATH with that SIGNATURE to serve it"
    )


async def test_model_status(door):
    await call(door, "POST", "v1/models/half_plus_two:predict", {"instances": [[1.0]]})
    reply = await call(door, "GET", "v1/models/half_plus_two")
    assert (reply.status, reply.json()) == (
        200,
        {
            "model_version_status": [
                {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            ]
        },
    )
    assert (await call(door, "GET", "v1/models/half_plus_two/versions/123")).status == 200


async def test_a_model_that_cannot_load_fails_alone(door):
    reply = await call(door, "POST", "v1/models/half_plus_three:predict", {"instances": [[1.0]]})
    assert reply.status == 500
    assert "could not load the SavedModel" in reply.json()["error"]
    status = (await call(door, "GET", "v1/models/half_plus_three")).json()["model_version_status"][0]
    assert (status["state"], status["status"]["error_code"]) == ("END", "UNKNOWN")
    assert "could not load the SavedModel" in status["status"]["error_message"]
    reply = await call(door, "POST", "v1/models/half_plus_two:predict", {"instances": [[1.0]]})
    assert (reply.status, reply.json()) == (200, {"predictions": [[2.5]]})


async def test_metadata_of_a_savedmodel_is_shaped_like_tf_servings(door):
    reply = await call(door, "GET", "v1/models/half_plus_two/metadata")
    assert reply.status == 200
    shape = {"dim": [{"size": "-1", "name": ""}, {"size": "1", "name": ""}], "unknown_rank": False}
    examples = {"dtype": "DT_STRING", "tensor_shape": {"dim": [], "unknown_rank": True}, "name": "tf_example:0"}
    # As TF Serving answers for this model: every signature, graph tensor names included.
    assert reply.json() == {
        "model_spec": {"name": "half_plus_two", "signature_name": "", "version": "123"},
        "metadata": {
            "signature_def": {
                "signature_def": {
                    "serving_default": {
                        "inputs": {"x": {"dtype": "DT_FLOAT", "tensor_shape": shape, "name": "x:0"}},
                        "outputs": {"y": {"dtype": "DT_FLOAT", "tensor_shape": shape, "name": "y:0"}},
                        "method_name": "tensorflow/serving/predict",
                    },
                    "classify_x_to_y": {
                        "inputs": {"inputs": examples},
                        "outputs": {"scores": {"dtype": "DT_FLOAT", "tensor_shape": shape, "name": "y:0"}},
                        "method_name": "tensorflow/serving/classify",
                    },
                    "regress_x_to_y2": {
                        "inputs": {"inputs": examples},
                        "outputs": {"outputs": {"dtype": "DT_FLOAT", "tensor_shape": shape, "name": "y2:0"}},
                        "method_name": "tensorflow/serving/regress",
                    },
                    "regress_x_to_y": {
                        "inputs": {"inputs": examples},
                        "outputs": {"outputs": {"dtype": "DT_FLOAT", "tensor_shape": shape, "name": "y:0"}},
                        "method_name": "tensorflow/serving/regress",
                    },
                    "regress_x2_to_y3": {
                        "inputs": {"inputs": {"dtype": "DT_FLOAT", "tensor_shape": shape, "name": "x2:0"}},
                        "outputs": {"outputs": {"dtype": "DT_FLOAT", "tensor_shape": shape, "name": "y3:0"}},
                        "method_name": "tensorflow/serving/regress",
                    },
                }
            }
        },
    }


async def test_metadata_of_a_custom_runner_loads_it(door):
    with override_settings(TFBATCH={"MODELS": {"pair": MODELS["pair"]}, "PERMISSION": "any"}):
        assert get_stats("pair")["pair"]["status"] == "not_loaded"
        assert (await call(door, "GET", "v1/models/pair")).json()["model_version_status"][0]["state"] == "START"
        reply = await call(door, "GET", "v1/models/pair/metadata")
    assert reply.status == 200
    signature = reply.json()["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert set(signature["inputs"]) == {"a", "b"}
    assert signature["outputs"]["sum"]["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}, {"size": "2", "name": ""}]


async def test_several_inputs_and_outputs_in_both_formats(door):
    rows = {"instances": [{"a": [1, 2], "b": [3, 4]}, {"a": [0, 1], "b": [5, 5]}]}
    reply = await call(door, "POST", "v1/models/pair:predict", rows)
    assert reply.json() == {
        "predictions": [{"sum": [4.0, 6.0], "product": [3.0, 8.0]}, {"sum": [5.0, 6.0], "product": [0.0, 5.0]}]
    }
    columns = {"inputs": {"a": [[1, 2]], "b": [[3, 4]]}}
    reply = await call(door, "POST", "v1/models/pair:predict", columns)
    assert reply.json() == {"outputs": {"sum": [[4.0, 6.0]], "product": [[3.0, 8.0]]}}


async def test_strings_in_base64_and_out_as_text(door):
    body = {"instances": [{"b64": base64.b64encode(b"abc").decode()}, "hello"]}
    reply = await call(door, "POST", "v1/models/text:predict", body)
    assert (reply.status, reply.json()) == (
        200,
        {"predictions": [{"upper": "ABC", "length": 3}, {"upper": "HELLO", "length": 5}]},
    )


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("double:predict", b"{nope", 400, "the request body is not valid JSON"),
        ("double:predict", [1, 2], 400, "must be a JSON object with 'instances' or 'inputs', got a list"),
        ("double:predict", {"instances": [[1, 2, 3]], "inputs": [[1, 2, 3]]}, 400, "this request has both"),
        ("double:predict", {"signature_name": "serving_default"}, 400, "send exactly one of 'instances'"),
        (
            "double:predict",
            {"instances": {"x": 1}},
            400,
            "'instances' must be a list with one item per row, got an object",
        ),
        ("double:predict", {"instances": []}, 400, "'instances' is empty"),
        ("double:predict", {"instances": [{"x": [1, 2, 3]}, [1, 2, 3]]}, 400, "instance 1 does not have the inputs"),
        ("double:predict", {"instances": [[1, 2, 3], {"x": [1, 2, 3]}]}, 400, "mixes objects and plain values"),
        ("double:predict", {"instances": [[1, 2]]}, 400, "input 'x' has shape (1, 2); expected (None, 3)"),
        ("double:predict", {"instances": [["a", "b", "c"]]}, 400, "input 'x' has dtype string/object"),
        ("pair:predict", {"inputs": {"a": [[1, 2]]}}, 400, "missing 'b'"),
        ("double:predict", {"instances": [{"b64": "%%"}]}, 400, "is not valid base64"),
        ("double:explain", {"examples": []}, 400, "Malformed request: POST v1/models/double:explain"),
        ("nope:predict", {"instances": [[1, 2, 3]]}, 404, "no model named 'nope'; configured models: 'double'"),
        ("nope", None, 404, "no model named 'nope'"),
        ("nope/metadata", None, 404, "no model named 'nope'"),
        ("failing:predict", {"instances": [[1, 2]]}, 500, "this model always fails"),
    ],
)
async def test_errors(door, path, body, status, error):
    reply = await call(door, "GET" if body is None else "POST", "v1/models/" + path, body)
    assert reply.status == status
    assert error in reply.json()["error"]


async def test_wrong_methods_are_405_with_allow(door):
    reply = await call(door, "GET", "v1/models/double:predict")
    assert (reply.status, reply.headers["allow"], reply.json()) == (
        405,
        "POST",
        {"error": ":predict takes POST, not GET"},
    )
    reply = await call(door, "POST", "v1/models/double/metadata", {})
    assert (reply.status, reply.headers["allow"]) == (405, "GET, HEAD")


@pytest.mark.parametrize("path", ["v1/models/half_plus_two", "v1/models/half_plus_two/metadata", "v1/models/nope"])
async def test_head_answers_like_get_without_a_body(door, path):
    get = await call(door, "GET", path)
    head = await call(door, "HEAD", path)
    assert (head.status, head.body) == (get.status, b"")
    assert head.headers["content-type"] == get.headers["content-type"] == "application/json"
    assert int(head.headers["content-length"]) == len(get.body) > 0


async def test_too_large_is_413(door):
    with override_settings(TFBATCH={**SETTINGS, "MAX_REQUEST_BYTES": 100}):
        reply = await call(door, "POST", "v1/models/double:predict", {"instances": [[1.0, 2.0, 3.0]] * 20})
    assert reply.status == 413
    assert reply.json()["error"] == "the request body has 355 bytes; the limit is 100 (TFBATCH['MAX_REQUEST_BYTES'])"


async def test_forbidden_is_403_and_names_the_rule(door):
    with override_settings(TFBATCH={"MODELS": MODELS}):  # the library default: authenticated users only
        reply = await call(door, "POST", "v1/models/double:predict", {"instances": [[1, 2, 3]]})
        assert (reply.status, reply.json()) == (
            403,
            {
                "error": "predicting with model 'double' requires an authenticated user "
                "(TFBATCH['PERMISSION'] = 'authenticated')"
            },
        )
        assert (await call(door, "GET", "v1/models/double/metadata")).status == 403


async def test_permission_comes_before_the_model_so_refused_callers_learn_no_names(door):
    with override_settings(TFBATCH={"MODELS": MODELS}):  # anonymous callers are refused
        for method, path in [
            ("POST", "v1/models/nope:predict"),
            ("GET", "v1/models/nope"),
            ("GET", "v1/models/nope/metadata"),
        ]:
            reply = await call(door, method, path, {"instances": [[1]]} if method == "POST" else None)
            assert reply.status == 403
            assert "double" not in reply.json()["error"]
    with override_settings(TFBATCH={"MODELS": MODELS, "PERMISSION": "any"}):  # permitted: the names help
        reply = await call(door, "POST", "v1/models/nope:predict", {"instances": [[1]]})
        assert reply.status == 404
        assert "double" in reply.json()["error"]


GATED = {
    "MODELS": {
        "gated": {"RUNNER": "tests.serving.fakes.gated_runner", "MAX_QUEUE_SIZE": 1, "WARMUP": False},
        "gated_timeout": {"RUNNER": "tests.serving.fakes.gated_runner", "TIMEOUT_MS": 50, "WARMUP": False},
    },
    "PERMISSION": "any",
}


async def test_overloaded_is_503_with_retry_after(door, gate):
    with override_settings(TFBATCH=GATED):
        gate.hold()
        path = "v1/models/gated:predict"
        running = asyncio.create_task(call(door, "POST", path, {"instances": [[1, 1]]}))
        await until(gate.entered.is_set, "the first request runs")
        queued = asyncio.create_task(call(door, "POST", path, {"instances": [[2, 2]]}))
        await until(lambda: get_stats("gated")["gated"]["queue_depth"] == 1, "the second request queues")
        refused = await call(door, "POST", path, {"instances": [[3, 3]]})
        gate.release()
        answers = [(await running).json(), (await queued).json()]
    assert (refused.status, refused.headers["retry-after"]) == (503, "1")
    assert "overloaded" in refused.json()["error"]
    assert answers == [{"predictions": [{"y": [2, 2], "sum": 2}]}, {"predictions": [{"y": [4, 4], "sum": 4}]}]


async def test_timeout_is_504(door, gate):
    with override_settings(TFBATCH=GATED):
        gate.hold()
        reply = await call(door, "POST", "v1/models/gated_timeout:predict", {"instances": [[1, 1]]})
        gate.release()
    assert reply.status == 504
    assert "gated_timeout" in reply.json()["error"]


async def test_a_new_version_copied_in_is_not_announced_before_it_serves(door, tmp_path):
    import shutil

    shutil.copytree(TFSERVING / "saved_model_half_plus_two_cpu" / "00000123", tmp_path / "1")
    body = {"instances": [[1.0]]}
    with override_settings(TFBATCH={"MODELS": {"rolling": {"PATH": tmp_path}}, "PERMISSION": "any"}):
        assert (await call(door, "POST", "v1/models/rolling/versions/1:predict", body)).status == 200
        shutil.copytree(TFSERVING / "saved_model_half_plus_two_cpu" / "00000123", tmp_path / "2")  # a rollout
        status = (await call(door, "GET", "v1/models/rolling")).json()["model_version_status"][0]
        assert (status["version"], status["state"]) == ("1", "AVAILABLE")  # version 1 still answers
        assert (await call(door, "POST", "v1/models/rolling/versions/1:predict", body)).status == 200
        assert (await call(door, "POST", "v1/models/rolling/versions/2:predict", body)).status == 404
        metadata = (await call(door, "GET", "v1/models/rolling/metadata")).json()
        assert metadata["model_spec"]["version"] == "1"
