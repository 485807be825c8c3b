"""Answers are released at the end of a round: threads unblocked, loops called once each."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tfbatch_django.batching.answers import Answers, Failed, deliver_async
from tfbatch_django.batching.request import BatchInfo, Prediction, Request, SyncWaiter

VALUE = Prediction({"y": np.zeros((1, 1))}, BatchInfo(1, 1, 0.0, 0.0))


def request(waiter=None, loop=None, future=None) -> Request:
    return Request({"x": np.zeros((1, 1))}, 1, None, 0.0, waiter, None, loop, future)


async def test_deliver_async_resolves_waiting_futures_and_skips_cancelled_ones():
    loop = asyncio.get_running_loop()
    ok, failed, cancelled = loop.create_future(), loop.create_future(), loop.create_future()
    cancelled.cancel()
    deliver_async([ok, VALUE, failed, Failed(ValueError("boom")), cancelled, VALUE])
    assert ok.result() is VALUE
    with pytest.raises(ValueError, match="boom"):
        failed.result()
    assert cancelled.cancelled()


async def test_release_calls_each_loop_once_and_frees_threads():
    loop = asyncio.get_running_loop()
    answers = Answers()
    futures = [loop.create_future() for _ in range(3)]
    for future in futures:
        answers.add(request(loop=loop, future=future), VALUE, None)
    waiter = SyncWaiter()
    answers.add(request(waiter=waiter), None, KeyError("k"))
    assert not waiter.wait(0)  # nothing released before the end of the round
    answers.release()
    assert waiter.wait(0) and isinstance(waiter.error, KeyError)
    results = await asyncio.gather(*futures)
    assert all(r is VALUE for r in results)
    assert not answers.by_loop and not answers.to_threads


def test_a_closed_loop_is_skipped():
    loop = asyncio.new_event_loop()
    future = loop.create_future()
    loop.close()
    answers = Answers()
    answers.add(request(loop=loop, future=future), VALUE, None)
    answers.release()  # no RuntimeError: nobody is left to answer
