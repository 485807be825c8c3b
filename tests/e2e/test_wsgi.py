"""Under WSGI (``runserver --noasgi``): sync views calling ``predict_sync()`` from the
server's request threads batch together; the async views work there too."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.servers import Server, running

CLIENTS = 16


@pytest.fixture(scope="module")
def runserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(
        [sys.executable, "manage.py", "runserver", "--noasgi", "--noreload", "127.0.0.1:{port}"],
        {"DJANGO_SETTINGS_MODULE": "tests.e2e.wsgi_settings"},
        tmp_path_factory,
        "sync/v1/models/slow",
    ) as server:
        yield server


def post_all(url: str) -> list[Any]:
    def post(i: int) -> httpx.Response:
        return httpx.post(url, json={"instances": [[i, i]]}, timeout=30)

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(post, range(CLIENTS)))


@pytest.mark.parametrize("prefix", ["sync", "tfbatch"])
def test_concurrent_requests_under_wsgi(runserver, prefix):
    replies = post_all(f"{runserver.http}/{prefix}/v1/models/slow:predict")
    log = runserver.log.read_text()
    # Django's WSGI server ("Starting WSGI development server" since Django 6), not "Starting ASGI/Daphne"
    assert re.search(r"Starting (WSGI )?development server", log)
    assert "ASGI/Daphne" not in log
    assert [r.json() for r in replies] == [{"predictions": [[i + 1, i + 1]]} for i in range(CLIENTS)]
    if prefix == "sync":  # threads blocked in predict_sync() share batches
        assert max(int(r.headers["x-tfbatch-batch-size"]) for r in replies) > 1


@pytest.mark.parametrize("prefix", ["sync", ""])  # urls_v2_sync's views, urls_v2's async views
def test_tritonclient_under_wsgi(runserver, prefix):
    """The Open Inference Protocol's views under WSGI, found by ``tritonclient`` at a base
    path (``host:port/sync``) or at the root, from concurrent threads, JSON and binary."""
    import numpy as np
    import tritonclient.http as triton

    url = f"{runserver.host}:{runserver.port}" + (f"/{prefix}" if prefix else "")

    def infer(i: int) -> Any:
        with triton.InferenceServerClient(url=url) as client:
            x = triton.InferInput("x", [1, 2], "FP32")
            x.set_data_from_numpy(np.full((1, 2), i, np.float32), binary_data=bool(i % 2))
            return client.infer("slow", [x], request_id=str(i)).as_numpy("y")

    with triton.InferenceServerClient(url=url) as client:
        assert client.is_server_live()
    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(infer, range(CLIENTS)))
    assert [a.tolist() for a in answers] == [[[i + 1, i + 1]] for i in range(CLIENTS)]
    with triton.InferenceServerClient(url=url) as client:  # loaded by the requests above
        assert client.is_model_ready("slow") and client.is_server_ready()
