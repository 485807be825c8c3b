"""The real ``tritonclient`` (HTTP), unchanged, against daphne serving the Open Inference
Protocol: TF Serving's test SavedModels, a Keras file, and the demo project itself."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from tests.servers import Server, daphne_argv, running

pytest.importorskip("tritonclient.http")

import tritonclient.http as triton
from tritonclient.utils import InferenceServerException


@pytest.fixture(scope="module")
def v2_server(classifier: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(
        daphne_argv("demo_project.asgi:application"),
        {"DJANGO_SETTINGS_MODULE": "tests.e2e.v2_settings", "TFBATCH_TEST_KERAS_MODEL": str(classifier.keras_path)},
        tmp_path_factory,
        "v2/health/live",  # asgi.py warms every model up before daphne listens
    ) as server:
        yield server


@pytest.fixture
def client(v2_server: Server) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(url=f"{v2_server.host}:{v2_server.port}") as c:
        yield c


def x_input(x: np.ndarray, binary: bool) -> triton.InferInput:
    item = triton.InferInput("x", list(x.shape), "FP32")
    item.set_data_from_numpy(x, binary_data=binary)
    return item


def test_health_and_readiness(client):
    assert client.is_server_live()
    # half_plus_three cannot load, so the server is not ready (Triton's strict readiness)...
    assert not client.is_server_ready()
    # ...while the models that loaded are, each on its own.
    assert client.is_model_ready("half_plus_two")
    assert client.is_model_ready("half_plus_two", "123")
    assert client.is_model_ready("classifier")
    assert not client.is_model_ready("half_plus_three")
    assert not client.is_model_ready("half_plus_two", "7")


def test_metadata(client):
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    meta = client.get_model_metadata("half_plus_two")
    assert meta["versions"] == ["123"]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}]
    keras = client.get_model_metadata("classifier", "0")
    assert keras["platform"] == "keras"
    assert keras["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 8, 8, 1]}]


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False, None])  # None: no outputs named (all binary)
def test_infer_half_plus_two(client, binary_in, binary_out):
    x = np.array([[1.0], [2.0], [5.0]], dtype=np.float32)
    outputs = None if binary_out is None else [triton.InferRequestedOutput("y", binary_data=binary_out)]
    result = client.infer("half_plus_two", [x_input(x, binary_in)], outputs=outputs, request_id="r-1")
    np.testing.assert_array_equal(result.as_numpy("y"), np.array([[2.5], [3.0], [4.5]], dtype=np.float32))
    response = result.get_response()
    assert (response["id"], response["model_name"], response["model_version"]) == ("r-1", "half_plus_two", "123")
    assert ("parameters" in response["outputs"][0]) == (binary_out is not False)


@pytest.mark.parametrize(("request_encoding", "response_encoding"), [("gzip", "deflate"), ("deflate", "gzip")])
def test_infer_compressed(client, request_encoding, response_encoding):
    x = np.array([[1.0], [2.0]], dtype=np.float32)
    result = client.infer(
        "half_plus_two",
        [x_input(x, True)],
        request_compression_algorithm=request_encoding,
        response_compression_algorithm=response_encoding,
    )
    np.testing.assert_array_equal(result.as_numpy("y"), [[2.5], [3.0]])


def test_infer_tf2_export_and_keras_model(client, classifier, images):
    x = np.array([1.0, 2.0, 5.0], dtype=np.float32)
    result = client.infer("half_plus_two_tf2", [x_input(x, True)], model_version="123")
    np.testing.assert_array_equal(result.as_numpy("y"), [2.5, 3.0, 4.5])
    image = triton.InferInput("image", list(images.shape), "FP32")
    image.set_data_from_numpy(images, binary_data=True)
    probs = client.infer("classifier", [image]).as_numpy("probs")
    np.testing.assert_allclose(probs, np.asarray(classifier.direct(images)), rtol=1e-5, atol=1e-6)


def test_errors_reach_the_client_with_their_status_and_message(client):
    x = np.ones((1, 1), dtype=np.float32)
    cases = [
        ("nope", [x_input(x, True)], "404", "no model named 'nope'"),
        ("half_plus_three", [x_input(x, True)], "500", "could not load the SavedModel"),
        ("half_plus_two", [triton.InferInput("z", [1, 1], "FP32").set_data_from_numpy(x)], "400", "'x'"),
    ]
    for model, inputs, status, message in cases:
        with pytest.raises(InferenceServerException) as info:
            client.infer(model, inputs)
        assert info.value.status() == status
        assert message in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        client.get_model_metadata("half_plus_two", "7")
    assert info.value.status() == "404"


def test_the_demo_answers_v2_and_batches_v2_with_tf_serving_requests(daphne, digit_images, direct_model):
    with triton.InferenceServerClient(url=f"{daphne.host}:{daphne.port}") as client:
        assert client.is_server_ready()
        pixels = triton.InferInput("pixels", list(digit_images[:5].shape), "FP32")
        pixels.set_data_from_numpy(digit_images[:5].astype(np.float32))
        answer = client.infer("digits", [pixels]).as_numpy("probabilities")
    np.testing.assert_allclose(answer, direct_model(digit_images[:5]), rtol=1e-5, atol=1e-6)
    assert httpx.get(f"{daphne.http}/v2/health/ready").status_code == 200

    async def mixed() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        async with httpx.AsyncClient(limits=limits, timeout=60) as http:
            calls = []
            for i, image in enumerate(digit_images[:100]):
                if i % 2:
                    calls.append(
                        http.post(f"{daphne.http}/fast/v1/models/digits:predict", json={"instances": [image.tolist()]})
                    )
                else:
                    tensor = {"name": "pixels", "shape": [1, *image.shape], "datatype": "FP32", "data": image.tolist()}
                    calls.append(http.post(f"{daphne.http}/v2/models/digits/infer", json={"inputs": [tensor]}))
            return await asyncio.gather(*calls)

    replies = asyncio.run(mixed())
    assert [r.status_code for r in replies] == [200] * 100
    # One batcher per model whatever the protocol: concurrent requests of both share batches.
    assert max(int(r.headers["x-tfbatch-batch-size"]) for r in replies) > 1
