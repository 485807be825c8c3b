"""The Open Inference Protocol (KServe v2) through every front door (Django async and sync
views, the Channels fast door): every endpoint, on fake models and TF Serving's own test
SavedModels (every error status: ``test_kserve_v2_errors.py``). ``tests/e2e/
test_tritonclient.py`` drives the same protocol with the real ``tritonclient`` over daphne."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from django.test import override_settings

from tfbatch_django import __version__

from .doors import EVERY_DOOR, V2_PREFIX, Reply, call
from .fakes import until
from .test_tfserving import MODELS

#: The first fast-door test imports the demo's asgi.py, which starts publishing stats unless told not to.
QUIET = {"STATS_PUBLISH_INTERVAL": None}
SETTINGS = {"MODELS": MODELS, "PERMISSION": "any", **QUIET}

pytestmark = EVERY_DOOR


async def v2(door: str, method: str, path: str, body: object = None, headers: dict[str, str] | None = None) -> Reply:
    return await call(door, method, path, body, headers=headers, prefixes=V2_PREFIX)


def binary_body(header: dict, *blobs: bytes) -> tuple[bytes, dict[str, str]]:
    """A request with binary tensors after its JSON, as tritonclient sends it."""
    head = json.dumps(header).encode()
    return head + b"".join(blobs), {"Inference-Header-Content-Length": str(len(head))}


def split(reply: Reply) -> tuple[dict, bytes]:
    """The JSON and the binary part of an answer with binary outputs."""
    length = int(reply.headers["inference-header-content-length"])
    return json.loads(reply.body[:length]), reply.body[length:]


# ---------------------------------------------------------------- health and metadata


async def test_live_is_200_with_an_empty_body(door):
    reply = await v2(door, "GET", "v2/health/live")
    assert (reply.status, reply.body) == (200, b"")


async def test_a_probe_by_pod_ip_needs_an_allowed_host_header(door):
    # A kubelet probes http://<pod IP>:<port>/v2/health/live with that address as the Host:
    # refused like any host outside ALLOWED_HOSTS, served once the probe sends an allowed
    # Host header (the README's Deployment section: httpHeaders).
    by_ip = await v2(door, "GET", "v2/health/live", headers={"host": "10.1.2.3:8000"})
    assert by_ip.status == 400
    named = await v2(door, "GET", "v2/health/live", headers={"host": "localhost:8000"})
    assert (named.status, named.body) == (200, b"")


async def test_ready_once_every_model_is_loaded_and_warm(door):
    with override_settings(TFBATCH={**QUIET, "MODELS": {"double": MODELS["double"], "pair": MODELS["pair"]}}):
        # Models load lazily; the probe starts their loads, so polling it brings readiness.
        first = await v2(door, "GET", "v2/health/ready")
        assert (first.status, first.body) in ((400, b""), (200, b""))
        statuses: list[int] = []

        async def ready() -> bool:
            statuses.append((await v2(door, "GET", "v2/health/ready")).status)
            return statuses[-1] == 200

        for _ in range(500):
            if await ready():
                break
        assert statuses[-1] == 200


async def test_not_ready_while_a_configured_model_failed_to_load(door):
    models = {"double": MODELS["double"], "half_plus_three": MODELS["half_plus_three"]}
    with override_settings(TFBATCH={**QUIET, "MODELS": models, "PERMISSION": "any"}):
        assert (await v2(door, "GET", "v2/health/ready")).status == 400
        await until_model_settled(door, "half_plus_three")
        assert (await v2(door, "GET", "v2/models/double/ready")).status == 200
        assert (await v2(door, "GET", "v2/models/half_plus_three/ready")).status == 400
        assert (await v2(door, "GET", "v2/health/ready")).status == 400


async def until_model_settled(door: str, model: str) -> None:
    from tfbatch_django import get_stats

    await until(lambda: get_stats(model)[model]["status"] in ("ready", "failed"), f"{model} loaded or failed")


async def test_health_needs_no_permission_and_reveals_nothing(door):
    with override_settings(TFBATCH={**QUIET, "MODELS": {"double": MODELS["double"]}}):  # anonymous refused
        live = await v2(door, "GET", "v2/health/live")
        ready = await v2(door, "GET", "v2/health/ready")
        assert (live.status, live.body) == (200, b"")
        assert ready.status in (200, 400) and ready.body == b""
        for path in ["v2/models/double", "v2/models/double/ready", "v2/models/nope", "v2/models/nope/ready"]:
            reply = await v2(door, "GET", path)
            assert reply.status == 403
            assert "double" not in reply.json()["error"] or "nope" not in path
        reply = await v2(door, "POST", "v2/models/nope/infer", {"inputs": []})
        assert reply.status == 403 and "double" not in reply.json()["error"]


async def test_server_metadata(door):
    reply = await v2(door, "GET", "v2")
    assert (reply.status, reply.json()) == (
        200,
        {"name": "tfbatch-django", "version": __version__, "extensions": ["binary_tensor_data"]},
    )
    assert reply.headers["content-type"] == "application/json"


async def test_model_metadata_of_a_savedmodel(door):
    reply = await v2(door, "GET", "v2/models/half_plus_two")
    assert (reply.status, reply.json()) == (
        200,
        {
            "name": "half_plus_two",
            "versions": ["123"],
            "platform": "tensorflow_savedmodel",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}],
        },
    )
    assert (await v2(door, "GET", "v2/models/half_plus_two/versions/123")).json() == reply.json()
    tf2 = (await v2(door, "GET", "v2/models/half_plus_two_tf2")).json()
    assert tf2["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [1]}]


async def test_model_metadata_of_a_custom_runner_loads_it(door):
    reply = await v2(door, "GET", "v2/models/text")
    assert (reply.status, reply.json()) == (
        200,
        {
            "name": "text",
            "versions": ["0"],
            "platform": "tfbatch_custom",
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
            "outputs": [
                {"name": "upper", "datatype": "BYTES", "shape": [-1]},
                {"name": "length", "datatype": "INT32", "shape": [-1]},
            ],
        },
    )


async def test_model_ready(door):
    await v2(door, "POST", "v2/models/half_plus_two/infer", infer_x([1.0]))
    reply = await v2(door, "GET", "v2/models/half_plus_two/ready")
    assert (reply.status, reply.body) == (200, b"")
    assert (await v2(door, "GET", "v2/models/half_plus_two/versions/123/ready")).status == 200
    await v2(door, "POST", "v2/models/half_plus_three/infer", infer_x([1.0]))
    assert (await v2(door, "GET", "v2/models/half_plus_three/ready")).status == 400


# ---------------------------------------------------------------- infer


def infer_x(values: list[float], **extra: object) -> dict:
    return {"inputs": [{"name": "x", "shape": [len(values), 1], "datatype": "FP32", "data": values}], **extra}


async def test_infer_json_answers_like_the_model(door):
    reply = await v2(door, "POST", "v2/models/half_plus_two/infer", infer_x([1.0, 2.0, 5.0], id="req-7"))
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == {
        "model_name": "half_plus_two",
        "model_version": "123",
        "id": "req-7",
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [3, 1], "data": [2.5, 3.0, 4.5]}],
    }
    assert int(reply.headers["x-tfbatch-batch-size"]) >= 3
    assert "inference-header-content-length" not in reply.headers


async def test_infer_nested_data_and_a_version_in_the_url(door):
    body = {"inputs": [{"name": "x", "shape": [2, 1], "datatype": "FP32", "data": [[3.0], [4.0]]}]}
    reply = await v2(door, "POST", "v2/models/half_plus_two/versions/123/infer", body)
    assert reply.json()["outputs"][0]["data"] == [3.5, 4.0]
    assert "id" not in reply.json()


async def test_infer_a_tf2_export_with_a_fixed_batch_of_one(door):
    body = {"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1.0, 2.0, 5.0]}]}
    reply = await v2(door, "POST", "v2/models/half_plus_two_tf2/infer", body)
    assert reply.json()["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [3], "data": [2.5, 3.0, 4.5]}]


async def test_infer_binary_inputs_and_outputs(door):
    x = np.array([[1.0], [2.0], [5.0]], dtype=np.float32)
    header = {
        "inputs": [{"name": "x", "shape": [3, 1], "datatype": "FP32", "parameters": {"binary_data_size": 12}}],
        "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
    }
    body, headers = binary_body(header, x.tobytes())
    reply = await v2(door, "POST", "v2/models/half_plus_two/infer", body, headers)
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/octet-stream"
    doc, blob = split(reply)
    assert doc["outputs"] == [
        {"name": "y", "datatype": "FP32", "shape": [3, 1], "parameters": {"binary_data_size": 12}}
    ]
    np.testing.assert_array_equal(np.frombuffer(blob, "<f4").reshape(3, 1), x / 2 + 2)


async def test_binary_data_output_makes_every_output_binary_unless_one_asks_otherwise(door):
    a = np.array([[1, 2], [3, 4]], dtype=np.float32)
    b = np.array([[5, 6], [7, 8]], dtype=np.float32)
    header = {
        "parameters": {"binary_data_output": True},
        "inputs": [
            {"name": "a", "shape": [2, 2], "datatype": "FP32", "parameters": {"binary_data_size": 16}},
            {"name": "b", "shape": [2, 2], "datatype": "FP32", "data": b.tolist()},
        ],
        "outputs": [{"name": "product"}, {"name": "sum", "parameters": {"binary_data": False}}],
    }
    body, headers = binary_body(header, a.tobytes())
    doc, blob = split(await v2(door, "POST", "v2/models/pair/infer", body, headers))
    assert [o["name"] for o in doc["outputs"]] == ["product", "sum"]  # the requested ones, in that order
    assert doc["outputs"][0]["parameters"] == {"binary_data_size": 16}
    np.testing.assert_array_equal(np.frombuffer(blob, "<f4").reshape(2, 2), a * b)
    assert doc["outputs"][1]["data"] == (a + b).reshape(-1).tolist()


async def test_outputs_selection(door):
    body = {
        "inputs": [
            {"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]},
            {"name": "b", "shape": [1, 2], "datatype": "FP32", "data": [3, 4]},
        ],
        "outputs": [{"name": "sum"}],
    }
    reply = await v2(door, "POST", "v2/models/pair/infer", body)
    assert reply.json()["outputs"] == [{"name": "sum", "datatype": "FP32", "shape": [1, 2], "data": [4.0, 6.0]}]
    del body["outputs"]
    assert [o["name"] for o in (await v2(door, "POST", "v2/models/pair/infer", body)).json()["outputs"]] == [
        "sum",
        "product",
    ]


async def test_bytes_tensors_as_json_and_as_binary(door):
    body = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["ab", "été"]}]}
    reply = await v2(door, "POST", "v2/models/text/infer", body)
    assert reply.json()["outputs"] == [
        {"name": "upper", "datatype": "BYTES", "shape": [2], "data": ["AB", "éTé"]},
        {"name": "length", "datatype": "INT32", "shape": [2], "data": [2, 5]},
    ]
    items = [b"x\xff", b"hello"]
    blob = b"".join(struct.pack("<I", len(i)) + i for i in items)
    header = {
        "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(blob)}}],
        "outputs": [{"name": "upper", "parameters": {"binary_data": True}}],
    }
    body, headers = binary_body(header, blob)
    doc, out = split(await v2(door, "POST", "v2/models/text/infer", body, headers))
    assert doc["outputs"][0]["parameters"] == {"binary_data_size": len(out)}
    assert out == b"".join(struct.pack("<I", len(i)) + i.upper() for i in items)
    # Bytes that are not text cannot go back as JSON: the answer says how to get them.
    header["outputs"] = [{"name": "upper"}]
    body, headers = binary_body(header, blob)
    reply = await v2(door, "POST", "v2/models/text/infer", body, headers)
    assert reply.status == 400
    assert "not UTF-8" in reply.json()["error"] and "binary_data" in reply.json()["error"]


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_requests_and_answers(door, encoding):
    import gzip
    import zlib

    compress = gzip.compress if encoding == "gzip" else zlib.compress
    decompress = gzip.decompress if encoding == "gzip" else zlib.decompress
    body = compress(json.dumps(infer_x([1.0, 2.0])).encode())
    headers = {"Content-Encoding": encoding, "Accept-Encoding": f"{encoding};q=1.0, identity;q=0.5"}
    reply = await v2(door, "POST", "v2/models/half_plus_two/infer", body, headers)
    assert (reply.status, reply.headers["content-encoding"]) == (200, encoding)
    assert json.loads(decompress(reply.body))["outputs"][0]["data"] == [2.5, 3.0]
    plain = await v2(door, "POST", "v2/models/half_plus_two/infer", body, {"Content-Encoding": encoding})
    assert "content-encoding" not in plain.headers and plain.json()["outputs"][0]["data"] == [2.5, 3.0]


async def test_head_answers_like_get_without_a_body(door):
    get = await v2(door, "GET", "v2/models/half_plus_two")
    head = await v2(door, "HEAD", "v2/models/half_plus_two")
    assert (head.status, head.body, head.headers["content-length"]) == (200, b"", str(len(get.body)))


GATED = {
    "MODELS": {
        "gated": {"RUNNER": "tests.serving.fakes.gated_runner", "MAX_QUEUE_SIZE": 2, "WARMUP": False},
        "gated_timeout": {"RUNNER": "tests.serving.fakes.gated_runner", "TIMEOUT_MS": 50, "WARMUP": False},
    },
    "PERMISSION": "any",
    **QUIET,
}


def gated_input(value: float) -> dict:
    return {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [value, value]}]}


async def test_v2_and_tf_serving_requests_share_one_batch(door, gate):
    import asyncio

    from tfbatch_django import get_stats

    with override_settings(TFBATCH=GATED):
        gate.hold()
        first = asyncio.create_task(v2(door, "POST", "v2/models/gated/infer", gated_input(1)))
        await until(gate.entered.is_set, "the first request runs")
        v2_queued = asyncio.create_task(v2(door, "POST", "v2/models/gated/infer", gated_input(2)))
        tfs_queued = asyncio.create_task(call(door, "POST", "v1/models/gated:predict", {"instances": [[3, 3]]}))
        await until(lambda: get_stats("gated")["gated"]["queue_depth"] == 2, "both requests queue")
        gate.release()
        replies = [await first, await v2_queued, await tfs_queued]
    assert [r.status for r in replies] == [200, 200, 200]
    assert [b.tolist() for b in gate.batches] == [[[1, 1]], [[2, 2], [3, 3]]]  # one batch, both protocols
    assert replies[1].headers["x-tfbatch-batch-size"] == replies[2].headers["x-tfbatch-batch-size"] == "2"
    assert replies[1].json()["outputs"][0] == {"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [4.0, 4.0]}
    assert replies[2].json() == {"predictions": [{"y": [6.0, 6.0], "sum": 6.0}]}
