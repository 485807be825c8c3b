"""Models served by a TF Serving REST endpoint (``"URL": ".../v1/models/<m>"``).

The endpoint is this project's own TF Serving REST API in a daphne process (TensorFlow
Serving itself is not on PyPI), serving TF Serving's test SavedModel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from django.test import override_settings

from tests.servers import stop
from tfbatch_django import ModelError, PredictTimeout, get_stats, model_info, predict_sync, warmup

from .engines import ROOT, unused_port


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = unused_port()
    log = tmp_path_factory.mktemp("tfs") / "daphne.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "demo_project.asgi:application"],
            cwd=ROOT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.runners.tfserving_settings"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}/tfbatch/v1/models"
    try:
        for _ in range(600):
            if process.poll() is not None:
                raise RuntimeError(f"daphne exited: {log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/half_plus_two", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"daphne never answered: {log.read_text()[-3000:]}")
        yield base
    finally:
        stop(process)


def serve(**models: dict[str, Any]) -> Any:
    return override_settings(TFBATCH={"STATS_PUBLISH_INTERVAL": None, "MODELS": models})


def test_predictions_and_specs_come_from_the_endpoint(endpoint: str) -> None:
    with serve(hp2={"URL": f"{endpoint}/half_plus_two", "MAX_BATCH_SIZE": 8}):
        assert warmup(["hp2"]) == {"hp2": "ready"}
        info = model_info("hp2")["runner"]
        assert info["inputs"] == [{"name": "x", "dtype": "float32", "shape": [-1, 1]}]
        assert info["outputs"] == [{"name": "y", "dtype": "float32", "shape": [-1, 1]}]
        assert info["runner"] == "remote_tfserving"
        y = predict_sync("hp2", np.array([[1.0], [2.0], [5.0]], np.float32))
        assert y.dtype == np.float32 and y.tolist() == [[2.5], [3.0], [4.5]]


def test_endpoint_failures_reach_callers(endpoint: str) -> None:
    with serve(
        failing={"URL": f"{endpoint}/failing", "WARMUP": False},
        slow={"URL": f"{endpoint}/slow", "WARMUP": False, "REMOTE_TIMEOUT_MS": 300},
        nope={"URL": f"{endpoint}/nope"},
    ):
        with pytest.raises(ModelError, match=r"answered 500: .*this model always fails"):
            predict_sync("failing", [[1.0, 2.0]])
        with pytest.raises(PredictTimeout, match=r"did not answer within 300 ms \(REMOTE_TIMEOUT_MS\)"):
            predict_sync("slow", [[1.0, 2.0]])
        assert warmup(["nope"]) == {"nope": "failed"}
        assert f"the engine answered 404 to GET {endpoint}/nope/metadata" in get_stats("nope")["nope"]["error"]


def test_strings_cross_as_tf_serving_writes_them() -> None:
    from tfbatch_django.batching import TensorSpec
    from tfbatch_django.runners.remote_tfserving import _from_json, _to_json

    text = np.array([[b"a\xff", b""]], dtype=object)
    assert _to_json(text) == [[{"b64": "Yf8="}, {"b64": ""}]]
    spec = TensorSpec.of("s", "string", (None, 2))
    assert _from_json([[{"b64": "Yf8="}, "h\u00e9"]], spec).tolist() == [[b"a\xff", "h\u00e9".encode()]]
    assert _from_json([["x", "y"]], None).tolist() == [[b"x", b"y"]]
    assert _from_json([[1.5, 2]], TensorSpec.of("f", "float32", (None, 2))).dtype == np.float32
