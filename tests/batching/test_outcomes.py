"""Outcomes, driven directly: one answer per request, and the scheduler's counts kept.

The batcher tests cover every path end to end; these pin down what ``Outcomes``
promises on its own, with the real mailbox, statistics and answers: an answered request
is never answered (or counted) again, and a request answered while queued leaves the
queue's counts on both sides (the scheduler's ``Tally`` and the callers' ``Mailbox``).
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
import pytest

from tfbatch_django.batching.answers import Answers
from tfbatch_django.batching.deadlines import Deadlines
from tfbatch_django.batching.execute import Batch, Outcome
from tfbatch_django.batching.mailbox import Mailbox
from tfbatch_django.batching.outcomes import Outcomes, Tally
from tfbatch_django.batching.request import Request, SyncWaiter
from tfbatch_django.batching.stats import BatcherStats
from tfbatch_django.exceptions import ModelError, PredictTimeout


class Books:
    """A mailbox, statistics, the tally and the queue, wired as the scheduler wires them."""

    def __init__(self) -> None:
        self.mailbox = Mailbox("m", 100)
        self.mailbox.open = True
        self.stats = BatcherStats(max_batch_size=8, name="m")
        self.tally = Tally(self.mailbox)
        self.pending: deque[Request] = deque()
        self.answers = Answers()
        self.outcomes = Outcomes("m", self.stats, self.tally, self.pending, self.answers, Deadlines())

    def queue(self, rows: int, deadline: float | None = None) -> tuple[Request, SyncWaiter]:
        """A caller's request, posted and accepted as the scheduler accepts it."""
        waiter = SyncWaiter()
        now = time.perf_counter()
        request = Request({"x": np.arange(rows, dtype=np.float32)[:, None]}, rows, deadline, now, waiter, None)
        assert self.mailbox.post(request) is None
        self.mailbox.take()
        self.pending.append(request)
        self.tally.outstanding += 1
        self.tally.queued += 1
        self.tally.rows += rows
        return request, waiter

    def count(self, outcome: str) -> int:
        return int(self.stats.snapshot(queue_depth=0, in_flight_batches=0)[outcome])

    def assert_empty(self) -> None:
        assert (self.tally.outstanding, self.tally.queued, self.tally.rows) == (0, 0, 0)
        assert (self.mailbox.depth, self.mailbox.queued_rows) == (0, 0)


def test_a_queued_request_is_answered_once_and_leaves_the_queue():
    books = Books()
    request, waiter = books.queue(3, deadline=time.perf_counter())
    books.outcomes.timeout(request)
    books.outcomes.finish(request, None, ModelError("too late", model="m"))  # a second outcome: ignored
    books.outcomes.finish(request, None, None, cancelled=True)  # and a third
    books.answers.release()
    assert waiter.wait(0)
    assert isinstance(waiter.error, PredictTimeout)
    assert "passed in the queue" in waiter.error.message
    assert (books.count("timeouts"), books.count("errors"), books.count("cancelled")) == (1, 0, 0)
    books.assert_empty()


def test_a_finished_batch_answers_each_caller_with_its_rows():
    books = Books()
    (a, wa), (b, wb) = books.queue(1), books.queue(2)
    books.pending.clear()  # dispatched, as the scheduler's _take does
    books.tally.unqueue(2, 3)
    a.taken, b.taken, b.offset = 1, 2, 1
    outputs = {"y": np.array([[10.0], [20.0], [30.0]])}
    batch = Batch([a, b], {}, 3, 4, time.perf_counter())
    batch.outcomes = [Outcome(batch.segments, outputs, None, 4)]
    books.outcomes.complete(batch, time.perf_counter())
    books.outcomes.complete(batch, time.perf_counter())  # delivered again: nobody is answered twice
    books.answers.release()
    assert wa.wait(0) and wb.wait(0)
    assert wa.value is not None and wb.value is not None
    assert wa.value.outputs["y"].tolist() == [[10.0]]
    assert wb.value.outputs["y"].tolist() == [[20.0], [30.0]]
    assert (wb.value.batch.size, wb.value.batch.padded_size) == (3, 4)
    assert books.count("completed") == 2
    books.assert_empty()


@pytest.mark.parametrize("cause", [ValueError("bad row"), PredictTimeout("engine slow", model="m")])
def test_a_failed_call_fails_its_callers_and_says_why(cause):
    books = Books()
    (a, wa), (b, wb) = books.queue(1), books.queue(1)
    books.pending.clear()
    books.tally.unqueue(2, 2)
    a.taken, b.taken, b.offset = 1, 1, 1
    b.cancelled = True  # gave up while its batch ran: no error for it, counted as cancelled
    batch = Batch([a, b], {}, 2, 2, time.perf_counter())
    batch.outcomes = [Outcome(batch.segments, None, cause, 2)]
    books.outcomes.complete(batch, time.perf_counter())
    books.answers.release()
    assert wa.wait(0) and not wb.wait(0)
    assert type(wa.error) is (PredictTimeout if isinstance(cause, PredictTimeout) else ModelError)
    assert wa.error.__cause__ is cause
    kind = "timeouts" if isinstance(cause, PredictTimeout) else "errors"
    assert (books.count(kind), books.count("cancelled"), books.count("completed")) == (1, 1, 0)
    books.assert_empty()
