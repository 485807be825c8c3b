"""End to end with a GPU-style worker: one ``tfbatch_worker`` process serves the demo model
over a real Redis to (a) daphne with WebSocket and HTTP clients and (b) gunicorn with 4
sync workers. Answers equal the model's own; batches hold rows of several callers, and
under gunicorn's sync workers (one request per process at a time) a batch larger than 1
can only hold rows from several processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets

from tests.remote.redis import redis_server
from tests.servers import ROOT, Server, free_port, start, stop

REQUESTS = 200


@pytest.fixture(scope="module")
def env(demo_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield {
            "DJANGO_SETTINGS_MODULE": "tests.e2e.worker_settings",
            "TFBATCH_DEMO_MODEL_DIR": str(demo_model),
            "TFBATCH_TEST_REDIS": url,
            # Django 6's system checks (which tfbatch_worker runs) open the database: one
            # of the test's own, not the demo's var/, which a fresh clone does not have.
            "TFBATCH_TEST_DB": str(tmp_path_factory.mktemp("db") / "db.sqlite3"),
        }


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "django", "tfbatch_worker", "gpu-e2e", "--no-publish"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture(scope="module")
def worker(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[bytes]]:
    process = start_worker(env, tmp_path_factory.mktemp("worker") / "worker.log")
    yield process
    stop(process)


def available(r: httpx.Response) -> bool:
    return r.status_code == 200 and r.json()["model_version_status"][0]["state"] == "AVAILABLE"


@pytest.fixture(scope="module")
def daphne_web(env, worker, tmp_path_factory) -> Iterator[Server]:
    port = free_port()
    server = Server("127.0.0.1", port, tmp_path_factory.mktemp("daphne-w") / "daphne.log")
    argv = [sys.executable, "-m", "daphne", "-b", server.host, "-p", str(port), "demo_project.asgi:application"]
    process = start(argv, env, server.log, f"{server.http}/tfbatch/v1/models/digits", available)
    yield server
    stop(process)


@pytest.fixture(scope="module")
def gunicorn(env, worker, tmp_path_factory) -> Iterator[Server]:
    port = free_port()
    server = Server("127.0.0.1", port, tmp_path_factory.mktemp("gunicorn") / "gunicorn.log")
    argv = [sys.executable, "-m", "gunicorn", "-w", "4", "-b", f"127.0.0.1:{port}", "demo_project.wsgi:application"]
    process = start(argv, env, server.log, f"{server.http}/sync/v1/models/digits", available)
    yield server
    stop(process)


def assert_same(answers: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_allclose(answers, expected, rtol=1e-5, atol=1e-6)


async def test_daphne_websocket_clients_batch_in_the_worker(daphne_web, digit_images, direct_model):
    images = digit_images[:REQUESTS]

    async def client(ids: range) -> list[dict]:
        async with websockets.connect(f"{daphne_web.ws}/ws/tfbatch/", origin=daphne_web.http) as ws:
            for i in ids:
                await ws.send(json.dumps({"id": i, "model": "digits", "inputs": [images[i].tolist()]}))
            return [json.loads(await ws.recv()) for _ in ids]

    results = await asyncio.gather(*(client(range(s * 10, s * 10 + 10)) for s in range(REQUESTS // 10)))
    answers = {a["id"]: a for batch in results for a in batch}
    assert sorted(answers) == list(range(REQUESTS)), [a for a in answers.values() if "error" in a][:3]
    assert_same(np.array([answers[i]["outputs"][0] for i in range(REQUESTS)]), direct_model(images))
    assert max(a["batch"]["size"] for a in answers.values()) > 1


@pytest.mark.parametrize("prefix", ["tfbatch", "fast"])
async def test_daphne_http_clients_batch_in_the_worker(daphne_web, digit_images, direct_model, prefix):
    images = digit_images[:REQUESTS]
    url = f"{daphne_web.http}/{prefix}/v1/models/digits:predict"
    limits = httpx.Limits(max_connections=REQUESTS, max_keepalive_connections=REQUESTS)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        replies = await asyncio.gather(*(client.post(url, json={"instances": [image.tolist()]}) for image in images))
    assert [r.status_code for r in replies] == [200] * REQUESTS, replies[0].text
    assert_same(np.array([r.json()["predictions"][0] for r in replies]), direct_model(images))
    assert max(int(r.headers["x-tfbatch-batch-size"]) for r in replies) > 1


async def test_status_and_metadata_describe_the_worker_served_model(daphne_web):
    async with httpx.AsyncClient(timeout=10) as client:
        status = (await client.get(f"{daphne_web.http}/fast/v1/models/digits")).json()
        metadata = (await client.get(f"{daphne_web.http}/fast/v1/models/digits/metadata")).json()
        bad = await client.post(f"{daphne_web.http}/fast/v1/models/digits:predict", json={"instances": [[1, 2]]})
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    inputs = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
    assert list(inputs) == ["pixels"]
    assert bad.status_code == 400 and "input 'pixels' has shape" in bad.json()["error"]


def test_gunicorn_sync_workers_share_the_workers_batches(gunicorn, digit_images, direct_model):
    images = digit_images[:REQUESTS]
    url = f"{gunicorn.http}/sync/v1/models/digits:predict"

    def post(i: int) -> httpx.Response:
        return httpx.post(url, json={"instances": [images[i].tolist()]}, timeout=60)

    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(post, range(REQUESTS)))
    assert [r.status_code for r in replies] == [200] * REQUESTS, replies[0].text
    assert_same(np.array([r.json()["predictions"][0] for r in replies]), direct_model(images))
    # A sync worker holds one request at a time: a batch of several rows mixes processes.
    assert max(int(r.headers["x-tfbatch-batch-size"]) for r in replies) > 1
    assert "Booting worker" in gunicorn.log.read_text()


def test_a_killed_worker_answers_503_and_a_restarted_one_serves(env, worker, gunicorn, digit_images, tmp_path):
    url = f"{gunicorn.http}/sync/v1/models/digits:predict"
    body = {"instances": [digit_images[0].tolist()]}
    assert httpx.post(url, json=body, timeout=30).status_code == 200
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    replies = [httpx.post(url, json=body, timeout=30) for _ in range(3)]  # httpx raises if one hangs
    assert [r.status_code for r in replies] == [503] * 3
    assert "no worker 'gpu-e2e' is running" in replies[-1].json()["error"]
    restarted = start_worker(env, tmp_path / "worker-2.log")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            reply = httpx.post(url, json=body, timeout=30)
            if reply.status_code == 200:
                break
            time.sleep(0.2)
        assert reply.status_code == 200, reply.text
    finally:
        stop(restarted)
