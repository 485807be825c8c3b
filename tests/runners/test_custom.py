from __future__ import annotations

import numpy as np
import pytest

from tfbatch_django.batching import CallableRunner
from tfbatch_django.exceptions import ModelLoadError
from tfbatch_django.runners.custom import import_dotted, load_custom_runner


def test_factory_with_options():
    runner = load_custom_runner("tests.fakes.slow_runner", {"delay_ms": 1})
    assert isinstance(runner, CallableRunner)
    assert runner.run({"x": np.array([[1.0, 2.0]], np.float32)})["y"].tolist() == [[2.0, 3.0]]


def test_colon_form():
    assert import_dotted("tests.fakes:double_runner") is import_dotted("tests.fakes.double_runner")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            "tests.fakes.nope",
            "RUNNER 'tests.fakes.nope' cannot be imported: module 'tests.fakes' has no attribute 'nope'",
        ),
        ("nodots", "RUNNER 'nodots' cannot be imported: 'nodots' is not a dotted path"),
        ("tests.fakes.NOT_CALLABLE", "RUNNER 'tests.fakes.NOT_CALLABLE' is a int, not a callable factory"),
        ("tests.fakes.broken_factory", "raised while building the model: OSError: weights file is corrupt"),
        ("tests.fakes.not_a_runner", "returned object, which is not a runner: it needs 'input_specs' and 'run()'"),
    ],
)
def test_bad_runners_explain_themselves(path, message):
    with pytest.raises(ModelLoadError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_custom_runner(path, {})
