"""The deadline heap: earliest first, answered requests never come back."""

from __future__ import annotations

import math

import numpy as np

from tfbatch_django.batching.deadlines import Deadlines
from tfbatch_django.batching.request import Request, SyncWaiter


def request(deadline: float) -> Request:
    return Request({"x": np.zeros((1, 1), np.float32)}, 1, deadline, 0.0, SyncWaiter(), None)


def test_due_returns_passed_unanswered_deadlines_in_order():
    heap = Deadlines()
    a, b, c, done = request(3.0), request(1.0), request(2.0), request(0.5)
    done.done = True
    for r in (a, b, c, done):
        heap.add(r)
    assert heap.next(outstanding=3) == 1.0  # the answered one is dropped, not waited for
    assert heap.due(2.5) == [b, c]
    assert heap.due(2.5) == []
    assert heap.next(outstanding=1) == 3.0
    a.done = True
    assert heap.next(outstanding=0) == math.inf


def test_a_heap_of_answered_requests_is_rebuilt():
    heap = Deadlines()
    requests = [request(100.0 + i) for i in range(200)]
    for r in requests:
        heap.add(r)
    for r in requests[1:]:
        r.done = True
    assert heap.next(outstanding=1) == 100.0
    assert len(heap._heap) == 1
