"""Gathered callers that pass a ``timeout`` of their own: one group, a deadline each.

Their deadlines come in any order (the worker server passes what is left of each
client's), so the group is sorted by deadline when it is posted, and every expiry path
still cuts a prefix: these tests give deadlines in an order other than the callers', mixed
with the model's default (``TIMEOUT_MS``) and with none, and check that each caller is
timed out at its own deadline, never before it and while the model is still held (so not
late by a batch), and that everyone else gets its own rows. Each would fail on the code
before callers with a timeout were gathered (they were posted one by one: the ``posted``
assertions), and each names the plausible bug it guards against.

The fake model doubles its input (``SteppedModel`` lets calls through one by one); the
accounting invariant runs after every test (conftest).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from typing import Any

import numpy as np
import pytest

from tests.batching.test_batcher import occupy, rows, wait_until
from tests.batching.test_coalesce import SteppedModel
from tests.fakes import GatedModel
from tfbatch_django.batching.answers import Answers
from tfbatch_django.batching.deadlines import Deadlines
from tfbatch_django.batching.group import GroupRequest
from tfbatch_django.batching.mailbox import Mailbox
from tfbatch_django.batching.outcomes import Outcomes, Tally
from tfbatch_django.batching.request import Request
from tfbatch_django.batching.stats import BatcherStats
from tfbatch_django.exceptions import ModelError, Overloaded, PredictTimeout

INF = math.inf


def record_posts(batcher, monkeypatch) -> list[tuple[Request, int]]:
    """Every request posted to the batcher's mailbox, with how many callers it held then."""
    posted: list[tuple[Request, int]] = []
    post = batcher._mailbox.post

    def spy(request):
        posted.append((request, request.count))
        return post(request)

    monkeypatch.setattr(batcher._mailbox, "post", spy)
    return posted


async def timed_out(task: asyncio.Future, since: float, timeout: float, match: str) -> None:
    """``task`` fails with ``PredictTimeout`` (message ``match``), not before ``since + timeout``."""
    with pytest.raises(PredictTimeout, match=match):
        await task
    assert time.perf_counter() - since >= timeout


async def busy(
    make_batcher: Any, monkeypatch: Any, max_batch_size: int
) -> tuple[SteppedModel, Any, list[tuple[Request, int]], asyncio.Future[Any]]:
    """A batcher whose model is busy with a first call (``first``), so what comes next
    queues as a group; its posts recorded."""
    model = SteppedModel()
    batcher = make_batcher(model, max_batch_size=max_batch_size)
    posted = record_posts(batcher, monkeypatch)
    first = asyncio.ensure_future(batcher.predict(rows(0)))
    await model.next_call()
    return model, batcher, posted, first


def first_values(batch: np.ndarray) -> list[float]:
    return batch[:, 0].tolist()


async def test_callers_with_timeouts_of_their_own_are_gathered_sorted_by_deadline(make_batcher, monkeypatch):
    """Bugs: members not gathered; rows, futures or submit times not permuted with the
    deadlines (a caller gets another's rows, or the wrong timeout in its message)."""
    batcher = make_batcher(GatedModel(), max_batch_size=64, default_timeout=20.0)
    posted = record_posts(batcher, monkeypatch)
    timeouts = [30.0, None, 5.0, 1e13, 10.0, None, 5.0]  # None: the default (20 s); 1e13: no deadline
    results = await asyncio.gather(*(batcher.predict(rows(i), timeout=t) for i, t in enumerate(timeouts)))
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result.outputs["y"], rows(i) * 2)
        assert result.batch.size == 7
    ((group, _),) = posted
    assert type(group) is GroupRequest and group.count == 7
    # Earliest deadline first; equal timeouts in the order the callers came.
    assert [int(p[0, 0]) for p in group.parts] == [2, 6, 4, 1, 5, 0, 3]
    members = group.members
    assert members.deadlines == sorted(members.deadlines) and members.deadlines[-1] == INF
    own = [round(d - t, 6) for d, t in zip(members.deadlines[:-1], members.t_submits, strict=False)]
    assert own == [5.0, 5.0, 10.0, 20.0, 20.0, 30.0]
    assert group.t_submit == min(members.t_submits)  # the earliest caller's, for the latency budget


async def test_a_group_under_the_default_deadline_alone_keeps_no_list(make_batcher, monkeypatch):
    """The common path costs nothing more: no list of deadlines without a timeout of one's own."""
    batcher = make_batcher(GatedModel(), max_batch_size=64, default_timeout=20.0)
    posted = record_posts(batcher, monkeypatch)
    await asyncio.gather(*(batcher.predict(rows(i)) for i in range(5)))
    ((group, _),) = posted
    assert group.members.deadlines is None and group.timeout == 20.0


async def test_a_queued_group_times_out_a_middle_member_first(make_batcher, monkeypatch):
    """The member submitted second has the earliest deadline. Bug: the group not sorted (its
    deadline the first caller's, 30 s): the middle one would ride its batch and be answered."""
    model, batcher, posted, first = await busy(make_batcher, monkeypatch, max_batch_size=8)
    t0 = time.perf_counter()
    a = asyncio.ensure_future(batcher.predict(rows(1), timeout=30))
    b = asyncio.ensure_future(batcher.predict(rows(2), timeout=0.3))
    c = asyncio.ensure_future(batcher.predict(rows(3)))  # no deadline
    await timed_out(b, t0, 0.3, "deadline of 300 ms passed in the queue")
    assert not a.done() and not c.done()
    model.step()
    await first
    await model.next_call()
    model.step()
    ra, rc = await asyncio.gather(a, c)
    np.testing.assert_array_equal(ra.outputs["y"], rows(1) * 2)
    np.testing.assert_array_equal(rc.outputs["y"], rows(3) * 2)
    assert [n for _, n in posted] == [1, 3]
    assert [first_values(b) for b in model.batches] == [[0.0], [1.0, 3.0]]  # b's rows never ran
    snap = batcher.snapshot()
    assert (snap["requests"], snap["completed"], snap["timeouts"]) == (4, 3, 1)


async def test_a_running_group_answers_its_earliest_deadline_apart(make_batcher):
    """Under a default deadline, with a caller of no deadline at all (a huge timeout). Bugs:
    the huge timeout read as "the default" (that caller timed out at 300 ms); outputs not
    skipped past the member answered apart (the others get a neighbour's rows)."""
    model = SteppedModel()
    batcher = make_batcher(model, max_batch_size=8, default_timeout=0.3)
    t0 = time.perf_counter()
    d = asyncio.ensure_future(batcher.predict(rows(1)))  # the default: 300 ms
    h = asyncio.ensure_future(batcher.predict(rows(2), timeout=1e13))  # none
    e = asyncio.ensure_future(batcher.predict(rows(3), timeout=0.6))
    await model.next_call()  # all three in the running call
    await timed_out(d, t0, 0.3, "deadline of 300 ms passed while its batch ran")
    await timed_out(e, t0, 0.6, "deadline of 600 ms passed while its batch ran")
    assert not h.done()
    model.step()
    result = await h
    np.testing.assert_array_equal(result.outputs["y"], rows(2) * 2)
    assert result.batch.size == 3
    assert [first_values(b) for b in model.batches] == [[1.0, 3.0, 2.0]]  # by deadline: 0.3, 0.6, none
    snap = batcher.snapshot()
    assert (snap["requests"], snap["completed"], snap["timeouts"]) == (3, 1, 2)


async def test_cancelled_members_of_a_queued_group_with_deadlines(make_batcher, monkeypatch):
    """One caller gives up in the queue (its deadline between the others'), one after the
    group was dispatched. Bug: a pruned group's deadlines not pruned with its callers (the
    one left is timed out at the deadline of the one who gave up, before its own)."""
    model, batcher, posted, first = await busy(make_batcher, monkeypatch, max_batch_size=8)
    t0 = time.perf_counter()
    x = asyncio.ensure_future(batcher.predict(rows(1), timeout=0.4))  # gives up while queued
    y = asyncio.ensure_future(batcher.predict(rows(2), timeout=0.8))
    z = asyncio.ensure_future(batcher.predict(rows(3)))  # gives up while its batch runs
    w = asyncio.ensure_future(batcher.predict(rows(4), timeout=60))
    await wait_until(lambda: batcher.queue_depth() == 4)
    x.cancel()
    await asyncio.sleep(0)
    model.step()
    await first
    await model.next_call()  # [y, w, z]: x was dropped before its batch
    z.cancel()
    await timed_out(y, t0, 0.8, "deadline of 800 ms passed while its batch ran")
    assert not w.done()
    model.step()
    result = await w
    np.testing.assert_array_equal(result.outputs["y"], rows(4) * 2)
    assert [first_values(b) for b in model.batches] == [[0.0], [2.0, 4.0, 3.0]]
    assert [n for _, n in posted] == [1, 4]
    await wait_until(lambda: batcher.outstanding == 0)
    snap = batcher.snapshot()
    assert (snap["requests"], snap["completed"], snap["timeouts"], snap["cancelled"]) == (5, 2, 1, 2)


async def test_cancelled_and_timed_out_together_in_the_queue(make_batcher, monkeypatch):
    """A caller who gave up is in the prefix that times out: counted cancelled, not timed
    out, and the others keep their own deadlines (the last submitted times out first).
    Bug: the group not sorted (the last submitted waits behind the others' deadlines)."""
    model, batcher, posted, first = await busy(make_batcher, monkeypatch, max_batch_size=8)
    t0 = time.perf_counter()
    x = asyncio.ensure_future(batcher.predict(rows(1), timeout=0.4))
    y = asyncio.ensure_future(batcher.predict(rows(2), timeout=0.6))
    z = asyncio.ensure_future(batcher.predict(rows(3), timeout=0.2))
    w = asyncio.ensure_future(batcher.predict(rows(4)))
    await wait_until(lambda: batcher.queue_depth() == 4)
    x.cancel()
    await timed_out(z, t0, 0.2, "deadline of 200 ms passed in the queue")
    await timed_out(y, t0, 0.6, "deadline of 600 ms passed in the queue")
    assert not w.done()
    model.step()
    await first
    await model.next_call()
    model.step()
    np.testing.assert_array_equal((await w).outputs["y"], rows(4) * 2)
    assert [first_values(b) for b in model.batches] == [[0.0], [4.0]]
    assert [n for _, n in posted] == [1, 4]
    snap = batcher.snapshot()
    assert (snap["requests"], snap["completed"], snap["timeouts"], snap["cancelled"]) == (5, 2, 2, 1)


async def test_a_poisonous_member_in_a_group_of_mixed_deadlines(make_batcher):
    """The group's call fails: it is broken up and bisected, and a member whose own deadline
    passes meanwhile is timed out at it. Bug: the broken-up members watched under the
    group's ``timeout`` (None with a list of deadlines): that caller never timed out."""
    model = SteppedModel(poison=9.0)
    batcher = make_batcher(model, max_batch_size=8)
    t0 = time.perf_counter()
    p = asyncio.ensure_future(batcher.predict(rows(9), timeout=30))  # poisonous
    s = asyncio.ensure_future(batcher.predict(rows(1), timeout=0.5))
    n = asyncio.ensure_future(batcher.predict(rows(2)))  # no deadline
    await model.next_call()  # the group's call: it fails, the group is broken up
    model.step()
    await model.next_call()  # its members' call, one segment each
    await timed_out(s, t0, 0.5, "deadline of 500 ms passed while its batch ran")
    model.step(10)  # fails; bisection isolates the poisonous caller
    with pytest.raises(ModelError, match="poisoned row"):
        await p
    np.testing.assert_array_equal((await n).outputs["y"], rows(2) * 2)
    assert [first_values(b) for b in model.batches[:2]] == [[1.0, 9.0, 2.0]] * 2
    await wait_until(lambda: batcher.outstanding == 0)
    snap = batcher.snapshot()
    assert (snap["requests"], snap["completed"], snap["timeouts"], snap["errors"]) == (3, 1, 1, 1)


async def test_a_group_cut_over_batches_whose_later_members_have_no_deadline(make_batcher, monkeypatch):
    """Only the first piece has a deadline. Bug: every piece put in the deadline heap (a
    piece without one fails an assertion there: everyone gets an internal error)."""
    model, batcher, posted, first = await busy(make_batcher, monkeypatch, max_batch_size=2)
    t0 = time.perf_counter()
    a = asyncio.ensure_future(batcher.predict(rows(1), timeout=0.3))
    rest = [asyncio.ensure_future(batcher.predict(rows(i))) for i in range(2, 6)]  # cut 2 + 2 + 1
    await timed_out(a, t0, 0.3, "deadline of 300 ms passed while its batch ran")  # formed ahead
    model.step(10)
    await first
    results = await asyncio.gather(*rest)
    for i, result in zip(range(2, 6), results, strict=True):
        np.testing.assert_array_equal(result.outputs["y"], rows(i) * 2)
    assert [n for _, n in posted] == [1, 5]
    assert [first_values(b) for b in model.batches] == [[0.0], [1.0, 2.0], [3.0, 4.0], [5.0]]
    snap = batcher.snapshot()
    assert (snap["requests"], snap["completed"], snap["timeouts"], snap["errors"]) == (6, 5, 1, 0)


async def test_a_full_queue_refuses_timed_callers_past_its_room(make_batcher):
    """Callers over the queue's room are refused before the group is sorted. Bug: their
    deadlines kept (an index past the members left: every caller failed)."""
    model = GatedModel()
    batcher = make_batcher(model, max_batch_size=1, max_queue_size=3)
    running = await occupy(model, batcher)
    await wait_until(lambda: batcher.queue_depth() == 0)
    timeouts = [30.0, None, 20.0, 10.0, 5.0]
    tasks = [asyncio.ensure_future(batcher.predict(rows(i + 1), timeout=t)) for i, t in enumerate(timeouts)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    model.release()
    await running
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(o, Overloaded) for o in outcomes[3:])
    for i, outcome in enumerate(outcomes[:3]):
        np.testing.assert_array_equal(outcome.outputs["y"], rows(i + 1) * 2)
    assert [first_values(b) for b in model.batches] == [[0.0], [3.0], [1.0], [2.0]]  # 20 s, 30 s, none


def test_a_group_with_a_deadline_each_cuts_them_as_a_prefix():
    """Every way a group is cut keeps each member's deadline with it. Bugs: the group's
    submit time taken from its first member (sorted by deadline, not the earliest); a
    piece with no deadline left at ``inf``; deadlines not pruned with their callers."""
    loop = asyncio.new_event_loop()
    try:
        arrays = [np.full((n, 2), i, np.float32) for i, n in enumerate((1, 2, 1, 1, 3))]
        futures = [loop.create_future() for _ in arrays]
        t_submits = [0.3, 0.1, 0.4, 0.0, 0.2]
        group = GroupRequest("x", arrays, futures, t_submits, loop, deadlines=[1.0, 2.0, 2.0, 5.0, INF])
        assert (group.deadline, group.t_submit, group.rows) == (1.0, 0.0, 8)
        assert [group.expired_until(t) for t in (0.5, 1.0, 2.0, 4.0, 1e300)] == [0, 1, 3, 3, 4]
        assert [group.deadline_of(i) for i in range(5)] == [1.0, 2.0, 2.0, 5.0, None]
        assert [group.split_up_one(i).deadline for i in (1, 4)] == [2.0, None]
        head, tail = group.cut(3)
        assert isinstance(head, GroupRequest) and head.members.deadlines == [1.0, 2.0]
        assert tail is not None and tail.members.deadlines == [2.0, 5.0, INF]
        assert (tail.deadline, tail.t_submit, tail.rows) == (2.0, 0.0, 5)
        pieces = group.pieces(3)
        assert [p.members.deadlines for p in pieces] == [[1.0, 2.0], [2.0, 5.0], [INF]]
        assert [p.deadline for p in pieces] == [1.0, 2.0, None]
        futures[0].cancel()
        assert group.prune() == (1, 1)
        assert group.members.deadlines == [2.0, 2.0, 5.0, INF] and group.deadline == 2.0
        assert group.t_submit == 0.0
        head = group.split_off(2)
        assert head.members.deadlines == [2.0, 2.0] and (head.deadline, head.t_submit) == (2.0, 0.1)
        assert (group.deadline, group.t_submit, group.count, group.rows) == (5.0, 0.0, 2, 4)
        group.taken = group.rows  # running
        apart = group.skip_to(1)
        assert apart.members.deadlines == [5.0] and apart.count == 1
        assert group.deadline is None and group.count == 1  # the one left has none
        assert group.timeouts() == [INF]
    finally:
        loop.close()


def test_members_timed_out_together_each_get_their_own_timeout_in_the_message():
    """Two members whose deadlines passed by the same round: each is told its own timeout.
    Bug: one error for the whole group (the first member's timeout, 500 ms, for both)."""
    loop = asyncio.new_event_loop()
    try:
        mailbox = Mailbox("m", 100)
        mailbox.open = True
        stats = BatcherStats(max_batch_size=8, name="m")
        tally = Tally(mailbox)
        answers = Answers()
        outcomes = Outcomes("m", stats, tally, deque(), answers, Deadlines())
        arrays = [np.zeros((1, 2), np.float32) for _ in range(3)]
        futures = [loop.create_future() for _ in arrays]
        group = GroupRequest("x", arrays, futures, [0.5, 0.0, 0.2], loop, deadlines=[1.0, 2.0, INF])
        assert mailbox.post(group) is None
        mailbox.take()
        tally.outstanding = tally.queued = 3
        tally.rows = 3
        outcomes.expire(group, now=2.5)
        answers.release()
        loop.call_soon(loop.stop)
        loop.run_forever()  # deliver_async, queued by the release
        messages = [str(f.exception()) for f in futures[:2]]
        assert messages == [
            "model 'm': deadline of 500 ms passed in the queue",
            "model 'm': deadline of 2000 ms passed in the queue",
        ]
        assert not futures[2].done() and group.count == 1 and group.deadline is None
        assert int(stats.snapshot(queue_depth=0, in_flight_batches=0)["timeouts"]) == 2
        assert (tally.outstanding, tally.queued, tally.rows) == (1, 1, 1)
    finally:
        loop.close()
