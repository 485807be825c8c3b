"""Parsing an Open Inference Protocol ``infer`` body and writing its answer, directly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfbatch_django.batching import BatchInfo, Prediction
from tfbatch_django.serving.errors import ServingError
from tfbatch_django.serving.kserve_v2_body import InferRequest, parse_infer, render_infer

BATCH = BatchInfo(4, 4, 0.5, 1.25)


def test_json_and_binary_inputs_in_one_request():
    header = {
        "id": "a",
        "inputs": [
            {"name": "x", "shape": [2, 2], "datatype": "INT64", "data": [[1, 2], [3, 4]]},
            {"name": "y", "shape": [2], "datatype": "FP16", "parameters": {"binary_data_size": 4}},
            {"name": "z", "shape": [1], "datatype": "BOOL", "parameters": {"binary_data_size": 1}},
        ],
        "outputs": [{"name": "o", "parameters": {"binary_data": True}}, {"name": "p"}],
    }
    head = json.dumps(header).encode()
    blob = np.array([1.5, -2], dtype="<f2").tobytes() + b"\x01"
    request = parse_infer(head + blob, {"inference-header-content-length": str(len(head))})
    assert request.id == "a"
    np.testing.assert_array_equal(request.inputs["x"], np.array([[1, 2], [3, 4]], dtype=np.int64))
    assert request.inputs["x"].dtype == np.int64
    np.testing.assert_array_equal(request.inputs["y"], np.array([1.5, -2], dtype=np.float16))
    assert request.inputs["z"].tolist() == [True]
    assert request.outputs == [("o", True), ("p", None)]
    assert request.binary_output is False


def test_a_repeated_input_is_refused():
    body = json.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}] * 2}).encode()
    with pytest.raises(ServingError, match="input 'x' appears twice"):
        parse_infer(body, {})


def test_answer_with_json_and_binary_outputs():
    outputs = {"o": np.array([[1.0, 2.0]], dtype=np.float32), "p": np.array([b"hi"], dtype=object)}
    request = InferRequest("r", {}, [("p", None), ("o", None)], binary_output=True)
    response = render_infer("m", 3, request, Prediction(outputs, BATCH))
    length = int(response.headers["Inference-Header-Content-Length"])
    doc = json.loads(response.body[:length])
    assert doc == {
        "model_name": "m",
        "model_version": "3",
        "id": "r",
        "outputs": [
            {"name": "p", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}},
            {"name": "o", "datatype": "FP32", "shape": [1, 2], "parameters": {"binary_data_size": 8}},
        ],
    }
    assert response.body[length:] == b"\x02\x00\x00\x00hi" + np.array([1, 2], "<f4").tobytes()
    assert response.headers["X-TFBatch-Batch-Size"] == "4"


def test_json_data_accepts_and_writes_nan_and_infinity_as_tf_serving_does():
    # Not JSON, but what TF Serving's parser and Python's json module accept; never null.
    body = b'{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[NaN,Infinity,-Infinity]}]}'
    x = parse_infer(body, {}).inputs["x"]
    assert x.dtype == np.float32 and np.isnan(x[0]) and x[1:].tolist() == [np.inf, -np.inf]
    outputs = {"o": np.array([np.nan, np.inf, -np.inf, 0.5], dtype=np.float32)}
    response = render_infer("m", 0, InferRequest(None, {}, None, False), Prediction(outputs, BATCH))
    assert b'"data":[NaN,Infinity,-Infinity,0.5]' in response.body


def test_answer_in_json_only_has_no_header_length():
    outputs = {"o": np.array([[True, False]])}
    response = render_infer("m", 0, InferRequest(None, {}, None, False), Prediction(outputs, BATCH))
    assert "Inference-Header-Content-Length" not in response.headers
    assert response.body == (
        b'{"model_name":"m","model_version":"0","outputs":'
        b'[{"name":"o","datatype":"BOOL","shape":[1,2],"data":[true,false]}]}'
    )
