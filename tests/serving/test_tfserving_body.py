"""Parsing a ``:predict`` body into ``predict()``'s inputs, without a front door."""

from __future__ import annotations

import numpy as np
import pytest

from tfbatch_django.conf.parse import parse
from tfbatch_django.serving.errors import ServingError
from tfbatch_django.serving.tfserving_body import parse_predict

CONFIG = parse({"MODELS": {"m": {"RUNNER": "tests.fakes.double_runner"}}})[0].models["m"]


def parsed(body: bytes):
    return parse_predict(body, CONFIG)


def test_rows_become_columns_by_input_name():
    inputs, columnar = parsed(b'{"instances": [{"a": 1, "b": [2, 3]}, {"a": 4, "b": [5, 6]}]}')
    assert columnar is False
    assert {name: np.asarray(value).tolist() for name, value in inputs.items()} == {"a": [1, 4], "b": [[2, 3], [5, 6]]}


def test_columnar_is_taken_as_it_is():
    inputs, columnar = parsed(b'{"inputs": [[1.5], [2.5]]}')
    assert columnar is True
    assert np.asarray(inputs).tolist() == [[1.5], [2.5]]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[1, 2]", "must be a JSON object with 'instances' or 'inputs', got a list"),
        (b'{"instances": [[1]], "inputs": [[1]]}', "this request has both"),
        (b'{"instances": []}', "'instances' is empty"),
        (b'{"instances": "x"}', "'instances' must be a list with one item per row, got a string"),
        (b'{"instances": [[2], {"a": 1}]}', "mixes objects and plain values"),
        (b'{"instances": [{"a": 1}, {"b": 2}]}', "instance 1 does not have the inputs of instance 0 ('a')"),
        (b'{"signature_name": "other", "instances": [[1]]}', "serves signature 'serving_default', not 'other'"),
    ],
)
def test_bad_bodies_say_what_was_expected(body, message):
    with pytest.raises(ServingError) as caught:
        parsed(body)
    assert caught.value.code == "bad_request"
    assert message in str(caught.value)
