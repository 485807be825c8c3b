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

from .conftest import Server, free_port, start, stop

CLIENTS = 16


@pytest.fixture(scope="module")
def runserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port = free_port()
    server = Server("127.0.0.1", port, tmp_path_factory.mktemp("wsgi") / "runserver.log")
    process = start(
        [sys.executable, "manage.py", "runserver", "--noasgi", "--noreload", f"127.0.0.1:{port}"],
        {"DJANGO_SETTINGS_MODULE": "tests.e2e.wsgi_settings"},
        server.log,
        f"{server.http}/sync/v1/models/slow",
        lambda r: r.status_code == 200,
    )
    yield server
    stop(process)


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
