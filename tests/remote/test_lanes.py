"""Coroutine callers on their own loop's lane: sent and answered without the client's thread.

Every test here first opens the running loop's lane (a loop's second request opens it),
then checks a semantic of the thread's path on the lane's: answers, coalescing,
deadlines, withdrawal, a dying worker, loops that end.
"""

from __future__ import annotations

import asyncio
import signal
import threading

import numpy as np
import pytest
from asgiref.sync import async_to_sync

from tfbatch_django import PredictTimeout, WorkerUnavailable, get_stats, predict
from tfbatch_django.registry import registry


def _client():
    return registry.get("remote").batcher.client


async def _open_lane() -> int:
    """Until this loop's lane is connected (its first requests go through the thread); how many it took."""
    client, loop = _client(), asyncio.get_running_loop()
    for n in range(500):
        if client.lane_ready(loop):
            return n
        await predict("remote", [[0, 0, 0]])
        await asyncio.sleep(0.01)
    raise AssertionError("the loop's lane did not open")


async def _stat(what: str, count: int) -> None:
    for _ in range(1500):
        stats = get_stats("remote")["remote"]
        if stats.get(what, 0) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"worker {what} >= {count} not met within 30 s")


def test_a_coroutine_is_answered_on_its_loop_while_the_clients_thread_is_blocked(deployment):
    deployment.start_worker()
    deployment.wait_ready()
    client = _client()

    async def run():
        await _open_lane()
        sent = client.lane_requests
        blocked, release = threading.Event(), threading.Event()

        def block() -> None:
            blocked.set()
            release.wait(30)

        client._loop.call_soon_threadsafe(block)  # the client's thread can do nothing now
        assert blocked.wait(10)
        try:
            one = await asyncio.wait_for(predict("remote", [[1, 2, 3]]), 10)
            many = await asyncio.wait_for(  # sent together: coalesced
                asyncio.gather(*(predict("remote", [[i, i, i]]) for i in range(20))), 10
            )
        finally:
            release.set()
        return one, many, client.lane_requests - sent

    one, many, on_lane = asyncio.run(run())
    np.testing.assert_array_equal(one, [[2, 4, 6]])
    assert [m.tolist() for m in many] == [[[2 * i] * 3] for i in range(20)]
    assert on_lane == 21


def test_a_deadline_on_a_lane_travels_and_the_worker_drops_the_row(deployment):
    deployment.start_worker()
    deployment.wait_ready()

    async def run():
        await _stat("completed", await _open_lane())  # the heartbeats have counted them
        rows = get_stats("remote")["remote"]["rows"]
        deployment.gate.touch()
        first = asyncio.ensure_future(predict("remote", [[1, 1, 1]]))
        await _stat("in_flight_batches", 1)
        with pytest.raises(PredictTimeout, match="deadline of 300 ms"):
            await predict("remote", [[2, 2, 2]], timeout=0.3)
        for _ in range(1500):  # dropped by the worker's deadline or by the withdrawal
            stats = get_stats("remote")["remote"]
            if stats["timeouts"] + stats["cancelled"] >= 1:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the worker did not drop the expired row")
        deployment.gate.unlink()
        return rows, await first

    rows, first = asyncio.run(run())
    assert first.tolist() == [[2, 2, 2]]
    from tests.remote.conftest import wait_for

    wait_for(lambda: get_stats("remote")["remote"]["rows"] >= rows + 1, 10, "the next heartbeat")
    assert get_stats("remote")["remote"]["rows"] == rows + 1  # the expired row was never computed


def test_a_cancelled_coroutine_on_a_lane_withdraws_its_request(deployment):
    deployment.start_worker()
    deployment.wait_ready()

    async def run():
        await _open_lane()
        deployment.gate.touch()
        first = asyncio.ensure_future(predict("remote", [[1, 1, 1]]))
        await _stat("in_flight_batches", 1)
        second = asyncio.ensure_future(predict("remote", [[2, 2, 2]]))
        await _stat("queue_depth", 1)
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        await _stat("cancelled", 1)  # the worker got the lane's withdrawal and dropped the row
        deployment.gate.unlink()
        return await first

    assert asyncio.run(run()).tolist() == [[2, 2, 2]]


def test_a_killed_worker_fails_the_requests_it_held_for_a_lane(deployment):
    worker = deployment.start_worker()
    deployment.wait_ready()

    async def run():
        await _open_lane()
        sent = _client().lane_requests
        deployment.gate.touch()
        calls = [asyncio.ensure_future(predict("remote", [[i, i, i]])) for i in range(5)]
        await _stat("requests", 5)
        worker.stop(signal.SIGKILL)
        return await asyncio.gather(*calls, return_exceptions=True), _client().lane_requests - sent

    results, on_lane = asyncio.run(run())
    assert on_lane == 5
    assert all(isinstance(r, WorkerUnavailable) for r in results), results
    # The heartbeats said which of the lane's requests the worker held.
    assert "stopped while it held this request" in results[0].message


def test_loops_that_end_close_their_lanes_and_short_loops_use_the_thread(deployment):
    deployment.start_worker()
    deployment.wait_ready()
    client = _client()

    async def run():
        await _open_lane()
        return await predict("remote", [[3, 3, 3]]), asyncio.get_running_loop()

    for _ in range(2):  # a new loop each time: a new lane, and the last one closed with its loop
        answer, loop = asyncio.run(run())
        assert answer.tolist() == [[6, 6, 6]]
        assert not client.lane_ready(loop)
    assert len(client._replies) == 1  # the thread's reply channel only

    sent = client.lane_requests
    for i in range(3):  # async_to_sync: a loop per call, one request each: no lane
        assert async_to_sync(predict)("remote", [[i, 0, 0]]).tolist() == [[2 * i, 0, 0]]
    assert client.lane_requests == sent


def test_a_lane_whose_connection_drops_fails_its_requests_and_the_loop_goes_on(deployment):
    deployment.start_worker()
    deployment.wait_ready()
    client = _client()

    async def run():
        await _open_lane()
        loop = asyncio.get_running_loop()
        lane = client._lanes[loop]
        deployment.gate.touch()
        held = asyncio.ensure_future(predict("remote", [[1, 1, 1]]))
        await _stat("in_flight_batches", 1)
        lane._recv_wire.transport.abort()  # the connection its reply would come on is gone
        with pytest.raises(WorkerUnavailable, match="connection to Redis closed"):
            await asyncio.wait_for(held, 10)
        assert not client.lane_ready(loop)
        deployment.gate.unlink()
        return await asyncio.wait_for(predict("remote", [[2, 2, 2]]), 10)  # through the thread meanwhile

    assert asyncio.run(run()).tolist() == [[4, 4, 4]]
