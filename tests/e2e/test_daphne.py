"""End to end: a real daphne serving the demo project, real WebSocket and HTTP clients,
hundreds of concurrent requests, each answer equal to the model's own output."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest
import websockets

REQUESTS = 200
SOCKETS = 20  # 10 requests in flight on each
#: HTTP connections the client opens at once. Fewer than daphne's listen backlog (50,
#: Twisted's default): the 200 connections this test once opened at once overflowed the
#: kernel's accept queue while a loaded machine kept daphne from accepting, and a
#: connection dropped that way can end in ``httpx.ReadError`` (``ListenOverflows`` and
#: ``SyncookiesSent`` in /proc/net/netstat count such drops). The other requests wait
#: for a connection in the client's pool, then ride a kept-alive one: all 200 are still
#: sent at once, and 40 at a time reach the batcher.
CONNECTIONS = 40


def assert_same(answers: np.ndarray, expected: np.ndarray) -> None:
    # The server ran these rows in batches of other sizes than the direct call: allow
    # float32 rounding, nothing more.
    np.testing.assert_allclose(answers, expected, rtol=1e-5, atol=1e-6)


async def test_websocket_clients_share_batches_and_get_the_models_answers(daphne, digit_images, direct_model):
    images = digit_images[:REQUESTS]
    expected = direct_model(images)

    async def client(ids: range) -> list[dict]:
        async with websockets.connect(f"{daphne.ws}/ws/tfbatch/", origin=daphne.http) as ws:
            for i in ids:  # all of this socket's requests at once, then the answers
                await ws.send(json.dumps({"id": i, "model": "digits", "inputs": [images[i].tolist()]}))
            return [json.loads(await ws.recv()) for _ in ids]

    per_socket = REQUESTS // SOCKETS
    results = await asyncio.gather(*(client(range(s * per_socket, (s + 1) * per_socket)) for s in range(SOCKETS)))
    answers = {a["id"]: a for batch in results for a in batch}
    assert sorted(answers) == list(range(REQUESTS))
    assert_same(np.array([answers[i]["outputs"][0] for i in range(REQUESTS)]), expected)
    sizes = [a["batch"]["size"] for a in answers.values()]
    assert max(sizes) > 1, sizes


# Django's async view, the Channels fast door, and Django's sync view (each request's in a
# thread of its own under ASGI: predict_sync() callers batch together).
@pytest.mark.parametrize("prefix", ["tfbatch", "fast", "sync"])
async def test_http_clients_share_batches_and_get_the_models_answers(daphne, digit_images, direct_model, prefix):
    images = digit_images[:REQUESTS]
    expected = direct_model(images)
    url = f"{daphne.http}/{prefix}/v1/models/digits:predict"
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    # Waiting for a pooled connection is bounded by the per-test timeout, not by httpx's:
    # how long the requests ahead take is the loaded machine's business.
    timeout = httpx.Timeout(60, pool=None)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        replies = await asyncio.gather(*(client.post(url, json={"instances": [image.tolist()]}) for image in images))
    assert [r.status_code for r in replies] == [200] * REQUESTS
    assert_same(np.array([r.json()["predictions"][0] for r in replies]), expected)
    sizes = [int(r.headers["x-tfbatch-batch-size"]) for r in replies]
    assert max(sizes) > 1, sizes


async def test_tf_serving_clients_find_the_metadata(daphne):
    async with httpx.AsyncClient(timeout=10) as client:
        reply = await client.get(f"{daphne.http}/fast/v1/models/digits/metadata")
    signature = reply.json()["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["pixels"]["dtype"] == "DT_FLOAT"
    assert list(signature["outputs"]) == ["probabilities"]


async def test_the_page_and_its_static_files_are_served_locally(daphne):
    async with httpx.AsyncClient(timeout=10) as client:
        page = await client.get(daphne.http + "/")
        script = await client.get(daphne.http + "/static/demo/demo.js")
    assert page.status_code == script.status_code == 200
    assert "/static/demo/demo.js" in page.text
    assert "http://" not in page.text.replace('"http://www.w3.org', "")  # nothing from elsewhere
    assert "new WebSocket" in script.text
