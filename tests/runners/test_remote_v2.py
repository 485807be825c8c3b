"""Models served by a real KServe v2 engine (KServe's Python model server, own venv).

Through the public API, with Django settings: the engine's metadata gives the specs,
each batch crosses with the binary tensor extension, and the engine's failures reach
callers as ``ModelError`` / ``PredictTimeout`` / a failed model status. Batch
composition is made deterministic with the engine's gate (see ``v2_engine.py``), never
with timing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.test import override_settings

from tfbatch_django import (
    ModelError,
    ModelLoadError,
    PredictTimeout,
    get_stats,
    model_info,
    predict,
    predict_detailed,
    predict_detailed_sync,
    predict_sync,
    warmup,
)

from .engines import Engine, unused_port

POISON, SLOW, PARTNER, HOLD, RELEASE = -999.0, 777.0, 555.0, 444.0, 333.0


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    server = Engine(tmp_path_factory.mktemp("engine") / "engine.log")
    yield server
    server.stop()


def serve(**models: dict[str, Any]) -> Any:
    return override_settings(TFBATCH={"STATS_PUBLISH_INTERVAL": None, "MODELS": models})


def rows(n: int, first: float | None = None, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, 4)).astype(np.float32)
    if first is not None:
        x[:, 0] = first
    return x


def direct(engine: Engine, x: np.ndarray) -> dict[str, np.ndarray]:
    """The engine's answer to a plain JSON request, as arrays."""
    answer = engine.infer_json("dense", [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.tolist()}])
    return {
        "probs": np.asarray(answer["probs"]["data"], np.float32).reshape(answer["probs"]["shape"]),
        "label": np.asarray(answer["label"]["data"], np.int64),
    }


def wait_for_queue(model: str, depth: int) -> None:
    """Bounded wait until ``depth`` requests wait behind the held batch.

    Queued, or already assembled into the next batch (the scheduler assembles a full
    batch ahead of time while the executor is busy).
    """
    for _ in range(600):
        stats = get_stats(model)[model]
        if stats["queue_depth"] >= depth or stats["in_flight_batches"] >= 2:
            return
        threading.Event().wait(0.05)
    raise AssertionError(f"the queue never reached {depth}: {get_stats(model)[model]}")


async def held_batch(engine: Engine, model: str, queued: list[np.ndarray]) -> list[Any]:
    """Hold the only executor on the engine's gate, queue ``queued``, release, gather."""
    first = asyncio.ensure_future(predict_detailed(model, rows(1, HOLD)))
    for _ in range(600):
        if get_stats(model)[model]["in_flight_batches"] or first.done():
            break
        await asyncio.sleep(0.05)
    assert not first.done(), first.exception()
    rest = [asyncio.ensure_future(predict_detailed(model, x)) for x in queued]
    await asyncio.to_thread(wait_for_queue, model, len(queued))
    await asyncio.to_thread(
        engine.infer_json, "dense", [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [RELEASE, 0, 0, 0]}]
    )
    return await asyncio.gather(first, *rest, return_exceptions=True)


def test_specs_come_from_the_engines_metadata(engine: Engine) -> None:
    url = engine.url("dense").replace("http://", "http://user:secret@")
    with serve(dense={"URL": url}):
        assert warmup(["dense"]) == {"dense": "ready"}
        info = model_info("dense")
        assert info["runner"]["inputs"] == [{"name": "x", "dtype": "float32", "shape": [-1, 4]}]
        assert info["runner"]["outputs"] == [
            {"name": "probs", "dtype": "float32", "shape": [-1, 3]},
            {"name": "label", "dtype": "int64", "shape": [-1]},
            {"name": "rows", "dtype": "int32", "shape": [-1]},
        ]
        assert info["runner"]["runner"] == "remote_v2"
        assert info["runner"]["url"] == engine.url("dense").replace("http://", "http://user:***@")
        assert "secret" not in repr(get_stats())


def test_predictions_equal_the_engines_own_answer(engine: Engine) -> None:
    x = rows(5, seed=1)
    expected = direct(engine, x)
    with serve(dense={"URL": engine.url("dense")}):
        result = predict_detailed_sync("dense", x, timeout=30)
        np.testing.assert_array_equal(result.outputs["probs"], expected["probs"])
        np.testing.assert_array_equal(result.outputs["label"], expected["label"])
        assert result.outputs["rows"].tolist() == [5] * 5  # the engine got the 5 rows in one call
        assert result.outputs["probs"].flags.writeable

        async def both() -> list[Any]:
            return await asyncio.gather(predict("dense", x[:2]), predict("dense", {"x": x[2:]}))

        first, second = asyncio.run(both())
        np.testing.assert_array_equal(np.concatenate([first["probs"], second["probs"]]), expected["probs"])


def test_concurrent_callers_reach_the_engine_as_one_batch(engine: Engine) -> None:
    x = rows(8, seed=2)
    expected = direct(engine, x)
    with serve(dense={"URL": engine.url("dense"), "MAX_BATCH_SIZE": 8, "MAX_LATENCY_MS": 0}):
        warmup(["dense"])
        first, *rest = asyncio.run(held_batch(engine, "dense", [x[i : i + 1] for i in range(8)]))
        assert first.outputs["rows"].tolist() == [1]
        assert [r.batch.size for r in rest] == [8] * 8
        assert [int(r.outputs["rows"][0]) for r in rest] == [8] * 8  # what the engine saw
        np.testing.assert_array_equal(np.concatenate([r.outputs["probs"] for r in rest]), expected["probs"])


def test_an_engine_error_fails_only_the_request_that_caused_it(engine: Engine) -> None:
    with serve(dense={"URL": engine.url("dense"), "MAX_BATCH_SIZE": 8}):
        with pytest.raises(ModelError) as info:
            predict_sync("dense", rows(1, POISON), timeout=30)
        assert str(info.value) == (
            f"model 'dense' failed on this request: RemoteError: the engine at {engine.url('dense')} answered 500: "
            "RuntimeError : row 0 holds the poison value -999"
        )
        good = [rows(1, seed=3), rows(2, seed=4)]
        _first, poisoned, *answered = asyncio.run(held_batch(engine, "dense", [rows(1, POISON), *good]))
        assert isinstance(poisoned, ModelError) and "poison value -999" in str(poisoned)
        for x, result in zip(good, answered, strict=True):
            np.testing.assert_array_equal(result.outputs["probs"], direct(engine, x)["probs"])
        assert get_stats("dense")["dense"]["status"] == "ready"


def test_a_slow_engine_hits_the_per_call_timeout(engine: Engine) -> None:
    with serve(dense={"URL": engine.url("dense"), "REMOTE_TIMEOUT_MS": 300, "MAX_BATCH_SIZE": 4}):
        with pytest.raises(PredictTimeout) as info:
            predict_sync("dense", rows(2, SLOW))
        assert str(info.value) == (
            f"model 'dense': the engine at {engine.url('dense')} did not answer within 300 ms (REMOTE_TIMEOUT_MS)"
        )
        assert info.value.model == "dense"
        counters = get_stats("dense")["dense"]
        assert (counters["timeouts"], counters["failed_batches"]) == (1, 1)
        assert counters["bisect_calls"] == 0  # the whole batch failed at once
        x = rows(3, seed=5)
        np.testing.assert_array_equal(predict_sync("dense", x)["probs"], direct(engine, x)["probs"])


def test_concurrent_batches_are_in_flight_at_the_engine_together(engine: Engine) -> None:
    with serve(dense={"URL": engine.url("dense"), "MAX_BATCH_SIZE": 1, "MAX_CONCURRENT_BATCHES": 2}):
        warmup(["dense"])

        async def pair() -> list[Any]:
            return await asyncio.gather(predict("dense", rows(1, PARTNER, 6)), predict("dense", rows(1, PARTNER, 7)))

        first, second = asyncio.run(pair())
        # Each call waited at the engine until the other one was in flight too.
        assert first["rows"].tolist() == [2] and second["rows"].tolist() == [2]
        assert model_info("dense")["runner"]["runner"] == "remote_v2"


def test_datatypes_cross_both_ways(engine: Engine) -> None:
    text = np.array([b"abc", "h\u00e9".encode(), b""], dtype=object)
    ids = np.array([[1, 2], [3, -4], [2**31 - 1, 0]], np.int32)
    flag = np.array([True, False, True])
    answer = engine.infer_json(
        "typed",
        [
            {"name": "text", "shape": [3], "datatype": "BYTES", "data": [t.decode() for t in text]},
            {"name": "ids", "shape": [3, 2], "datatype": "INT32", "data": ids.tolist()},
            {"name": "flag", "shape": [3], "datatype": "BOOL", "data": flag.tolist()},
        ],
    )
    with serve(typed={"URL": engine.url("typed")}):
        out = predict_sync("typed", {"text": ["abc", "h\u00e9", ""], "ids": ids, "flag": flag})
        assert (
            out["upper"].tolist() == [b"ABC", "H\u00e9".encode(), b""] == [s.encode() for s in answer["upper"]["data"]]
        )
        assert out["length"].dtype == np.int64 and out["length"].tolist() == answer["length"]["data"] == [3, 3, 0]
        assert out["total"].dtype == np.float64 and out["total"].tolist() == answer["total"]["data"]
        assert out["negated"].dtype == np.bool_ and out["negated"].tolist() == answer["negated"]["data"]


def test_an_engine_that_is_down_at_load_fails_the_model(engine: Engine) -> None:
    down = f"http://127.0.0.1:{unused_port()}/v2/models/dense"
    with serve(down={"URL": down}, unknown={"URL": engine.url("nope")}, dense={"URL": engine.url("dense")}):
        assert warmup() == {"down": "failed", "unknown": "failed", "dense": "ready"}
        stats = get_stats()
        assert stats["down"]["error"].startswith(f"model 'down': the engine at {down.split('/v2')[0]} is unreachable: ")
        assert "Connection refused" in stats["down"]["error"]
        assert stats["unknown"]["error"] == (
            f"model 'unknown': the engine answered 404 to GET {engine.url('nope')}: "
            "Model with name nope does not exist."
        )
        with pytest.raises(ModelLoadError, match="is unreachable"):
            predict_sync("down", rows(1))
        assert predict_sync("dense", rows(1))["probs"].shape == (1, 3)


def test_an_engine_that_goes_down_mid_run(tmp_path: Path) -> None:
    own = Engine(tmp_path / "engine.log")
    try:
        with serve(dense={"URL": own.url("dense")}):
            x = rows(2, seed=8)
            np.testing.assert_array_equal(predict_sync("dense", x)["probs"], direct(own, x)["probs"])
            own.stop()
            with pytest.raises(ModelError) as info:
                predict_sync("dense", x, timeout=30)
            message = str(info.value)
            assert message.startswith(f"model 'dense': the engine at {own.origin} is unreachable: "), message
            assert get_stats("dense")["dense"]["status"] == "ready"  # it serves again once the engine is back
    finally:
        own.stop()
