"""A model computed by a real KServe v2 engine, through every front door: the doors, the
permission and the batching stay in Django; the engine's answers and failures come back
as TF Serving's REST API answers them for local models."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from django.test import override_settings

from tests.runners.engines import Engine

from .doors import DOORS, call

pytestmark = [
    pytest.mark.urls("tests.serving.urls"),
    pytest.mark.parametrize("door", DOORS),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    server = Engine(tmp_path_factory.mktemp("engine") / "engine.log")
    with override_settings(
        TFBATCH={
            "PERMISSION": "any",
            "STATS_PUBLISH_INTERVAL": None,
            "MODELS": {
                "dense": {"URL": server.url("dense"), "MAX_BATCH_SIZE": 8},
                "slow": {"URL": server.url("dense"), "REMOTE_TIMEOUT_MS": 300},
                "misconfigured": {"URL": 8000},
            },
        }
    ):
        yield server
    server.stop()


async def test_predict_answers_what_the_engine_answers(door: str, engine: Engine) -> None:
    x = np.random.default_rng(11).normal(size=(3, 4)).astype(np.float32)
    reply = await call(door, "POST", "v1/models/dense:predict", {"inputs": {"x": x.tolist()}})
    assert reply.status == 200, reply.body
    outputs = reply.json()["outputs"]
    expected = engine.infer_json("dense", [{"name": "x", "shape": [3, 4], "datatype": "FP32", "data": x.tolist()}])
    np.testing.assert_array_equal(
        np.asarray(outputs["probs"], np.float32), np.reshape(expected["probs"]["data"], (3, 3))
    )
    assert outputs["label"] == expected["label"]["data"]
    metadata = (await call(door, "GET", "v1/models/dense/metadata")).json()
    assert "probs" in str(metadata) and "x" in str(metadata)


async def test_engine_failures_answer_with_the_engines_words(door: str, engine: Engine) -> None:
    reply = await call(door, "POST", "v1/models/dense:predict", {"instances": [[-999.0, 0, 0, 0]]})
    assert reply.status == 500
    assert "answered 500: RuntimeError : row 0 holds the poison value -999" in reply.json()["error"]
    reply = await call(door, "POST", "v1/models/slow:predict", {"instances": [[777.0, 0, 0, 0]]})
    assert reply.status == 504
    assert "did not answer within 300 ms (REMOTE_TIMEOUT_MS)" in reply.json()["error"]


async def test_a_misconfigured_url_fails_that_model_alone(door: str, engine: Engine) -> None:
    status = (await call(door, "GET", "v1/models/misconfigured")).json()
    assert "URL must be a string, got int" in str(status)
    reason = "model 'misconfigured' cannot load: TFBATCH['MODELS']['misconfigured']: URL must be a string, got int."
    meta = await call(door, "GET", "v1/models/misconfigured/metadata")
    assert (meta.status, meta.json()) == (500, {"error": reason})
    reply = await call(door, "POST", "v1/models/misconfigured:predict", {"instances": [[0.0, 0, 0, 0]]})
    assert reply.status == 500 and "URL must be a string, got int" in reply.json()["error"]
    assert (await call(door, "POST", "v1/models/dense:predict", {"instances": [[0.0, 0, 0, 0]]})).status == 200
