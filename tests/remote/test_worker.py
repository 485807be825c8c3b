"""The same calls, the same answers and the same errors, through a real worker process and Redis."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tfbatch_django import (
    InvalidInput,
    ModelError,
    Overloaded,
    PredictTimeout,
    WorkerUnavailable,
    get_stats,
    model_info,
    predict,
    predict_detailed_sync,
    predict_sync,
)


@pytest.mark.parametrize("deployment", ["auto", "layer"], indirect=True)  # Redis itself, channels_redis API
def test_answers_equal_the_models_and_travel_as_bytes(deployment):
    deployment.start_worker()
    deployment.wait_ready()
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    prediction = predict_detailed_sync("remote", x)
    np.testing.assert_array_equal(prediction.outputs["y"], x * 2)
    assert prediction.outputs["y"].dtype == np.float32
    assert prediction.batch.size == 2

    async def many():
        return await asyncio.gather(*(predict("remote", [[i, i, i]]) for i in range(50)))

    answers = asyncio.run(many())
    assert [a.tolist() for a in answers] == [[[2 * i] * 3] for i in range(50)]


def test_model_info_and_stats_describe_the_worker_served_model(deployment):
    worker = deployment.start_worker()
    deployment.wait_ready()
    info = model_info("remote")
    assert info["ready"] and info["status"] == "ready" and info["settings"]["WORKER"] == deployment.name
    assert info["runner"]["inputs"] == [{"name": "x", "dtype": "float32", "shape": [-1, 3]}]
    stats = get_stats("remote")["remote"]
    assert stats["remote"] is True and stats["pid"] == worker.process.pid
    (process,) = stats["served_by"]["processes"]
    assert process["pid"] == worker.process.pid and process["models"]["remote"] == "ready"
    assert get_stats("local")["local"].get("remote") is None  # served in this process


def _held(deployment, what: str, count: int, model: str = "remote") -> None:
    from tests.remote.conftest import wait_for

    wait_for(lambda: get_stats(model)[model].get(what, 0) >= count, 30, f"worker {what} >= {count}")


def _count(stats: dict, what: str) -> int:
    # An expired request is dropped by the worker's deadline (timeouts) or, when the
    # caller's withdrawal arrives first, by its cancellation: either way, never computed.
    return stats["timeouts"] + stats["cancelled"] if what == "dropped" else stats.get(what, 0)


def _dropped(deployment) -> None:
    from tests.remote.conftest import wait_for

    wait_for(lambda: _count(get_stats("remote")["remote"], "dropped") >= 1, 30, "the worker dropped it")


async def _aheld(what: str, count: int, model: str = "remote") -> None:
    """``_held`` for coroutines: polls without blocking the loop the callers run on."""
    for _ in range(1500):
        if _count(get_stats(model)[model], what) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"worker {what} >= {count} not met within 30 s")


def test_invalid_input_has_the_local_message(deployment):
    deployment.start_worker()
    deployment.wait_ready()
    for bad in ([[1.0, 2.0]], [["a", "b", "c"]], {"z": [[1, 2, 3]]}, 5.0, [[[1, 2, 3]]]):
        with pytest.raises(InvalidInput) as remote:
            predict_sync("remote", bad)
        with pytest.raises(InvalidInput) as local:
            predict_sync("local", bad)  # the same spec, served in this process
        assert remote.value.message == local.value.message.replace("'local'", "'remote'")
        assert remote.value.input == local.value.input
    assert get_stats("remote")["remote"]["requests"] == 0  # refused here, never sent


def test_model_error_spares_batch_mates(deployment):
    deployment.start_worker()
    deployment.wait_ready()
    deployment.gate.touch()

    async def both():
        first = asyncio.ensure_future(predict("remote", [[0, 0, 0]]))
        await _aheld("in_flight_batches", 1)  # the first batch runs: the next two share one
        rest = [asyncio.ensure_future(predict("remote", x)) for x in ([[-1, 0, 0]], [[3, 3, 3]])]
        await asyncio.sleep(0.3)
        deployment.gate.unlink()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    ok, poisoned, mate = asyncio.run(both())
    assert ok.tolist() == [[0, 0, 0]]
    assert isinstance(poisoned, ModelError) and "poisoned row" in poisoned.message
    assert mate.tolist() == [[6, 6, 6]]


def test_overloaded_when_the_workers_queue_is_full(deployment):
    deployment.start_worker()
    deployment.wait_ready(model="tiny_queue")
    deployment.gate.touch()
    import concurrent.futures

    def seen(stats):
        return stats["requests"] + stats["rejected"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        calls = []
        for i in range(8):  # one at a time, until the worker's batcher refuses one
            calls.append(pool.submit(predict_sync, "tiny_queue", [[i, i, i]], timeout=60))
            from tests.remote.conftest import wait_for

            wait_for(lambda n=i + 1: seen(get_stats("tiny_queue")["tiny_queue"]) >= n, 30, "the worker saw it")
            if get_stats("tiny_queue")["tiny_queue"]["rejected"]:
                break
        refused = calls[-1].exception(30)
        assert isinstance(refused, Overloaded) and not isinstance(refused, WorkerUnavailable), refused
        assert "MAX_QUEUE_SIZE=1" in refused.message
        deployment.gate.unlink()
        for i, call in enumerate(calls[:-1]):
            assert call.result(30).tolist() == [[2 * i] * 3]


def test_deadline_travels_and_the_worker_drops_the_expired_row(deployment):
    deployment.start_worker()
    deployment.wait_ready()
    deployment.gate.touch()

    async def run():
        first = asyncio.ensure_future(predict("remote", [[1, 1, 1]]))
        await _aheld("in_flight_batches", 1)
        with pytest.raises(PredictTimeout, match="deadline of 300 ms"):
            await predict("remote", [[2, 2, 2]], timeout=0.3)
        await _aheld("dropped", 1)  # the worker's batcher dropped it from its queue
        deployment.gate.unlink()
        return await first

    assert asyncio.run(run()).tolist() == [[2, 2, 2]]
    _held(deployment, "completed", 1)  # the next heartbeat
    stats = get_stats("remote")["remote"]
    assert stats["rows"] == 1 and stats["timeouts"] + stats["cancelled"] == 1  # never computed


@pytest.mark.parametrize("deployment", ["auto", "layer"], indirect=True)  # Redis itself, channels_redis API
def test_a_cancelled_caller_withdraws_its_request(deployment):
    deployment.start_worker()
    deployment.wait_ready()
    deployment.gate.touch()

    async def run():
        first = asyncio.ensure_future(predict("remote", [[1, 1, 1]]))
        await _aheld("in_flight_batches", 1)
        second = asyncio.ensure_future(predict("remote", [[2, 2, 2]]))
        await asyncio.sleep(0)
        await _aheld("queue_depth", 1)
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        await _aheld("cancelled", 1)
        deployment.gate.unlink()
        return await first

    assert asyncio.run(run()).tolist() == [[2, 2, 2]]
    _held(deployment, "completed", 1)  # the next heartbeat
    assert get_stats("remote")["remote"]["rows"] == 1


def test_no_worker_running_fails_fast_with_a_clear_error(deployment):
    with pytest.raises(WorkerUnavailable, match=r"no worker 'nobody' is running.*tfbatch_worker nobody"):
        predict_sync("nowhere", [[1, 2, 3]], timeout=30)
    stats = get_stats("nowhere")["nowhere"]
    assert stats["status"] == "unavailable" and "tfbatch_worker nobody" in stats["error"]


@pytest.mark.parametrize("deployment", ["auto", "layer"], indirect=True)  # Redis itself, channels_redis API
def test_a_killed_worker_fails_its_callers_and_a_restarted_one_serves(deployment):
    import signal

    worker = deployment.start_worker()
    deployment.wait_ready()
    deployment.gate.touch()

    async def run():
        calls = [asyncio.ensure_future(predict("remote", [[i, i, i]])) for i in range(5)]
        await _aheld("requests", 5)
        worker.stop(signal.SIGKILL)
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(run())
    assert all(isinstance(r, WorkerUnavailable) for r in results), results
    assert "stopped while it held this request" in results[0].message
    deployment.gate.unlink()
    deployment.start_worker()
    deployment.wait_ready()
    assert predict_sync("remote", [[1, 2, 3]], timeout=30).tolist() == [[2, 4, 6]]


@pytest.mark.parametrize("deployment", ["auto", "layer"], indirect=True)  # Redis itself, channels_redis API
def test_two_workers_share_the_load(deployment):
    deployment.start_worker()
    deployment.start_worker()
    deployment.wait_ready(count=2)
    for i in range(10):  # one message each: idle workers take turns on the channel
        assert predict_sync("remote", [[i, 0, 0]]).tolist() == [[2 * i, 0, 0]]
    from tests.remote.conftest import wait_for

    def counts():
        return [p["requests"]["remote"] for p in get_stats("remote")["remote"]["served_by"]["processes"]]

    wait_for(lambda: sum(counts()) == 10, 10, "both heartbeats after the requests")
    assert len(counts()) == 2 and min(counts()) > 0, counts()


def test_a_sync_caller_that_times_out_withdraws_its_request(deployment):
    import concurrent.futures

    deployment.start_worker()
    deployment.wait_ready()
    deployment.gate.touch()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(predict_sync, "remote", [[1, 1, 1]])
        _held(deployment, "in_flight_batches", 1)
        with pytest.raises(PredictTimeout, match="deadline of 500 ms passed"):
            predict_sync("remote", [[2, 2, 2]], timeout=0.5)
        _dropped(deployment)
        deployment.gate.unlink()
        assert first.result(30).tolist() == [[2, 2, 2]]
    _held(deployment, "completed", 1)
    assert get_stats("remote")["remote"]["rows"] == 1
