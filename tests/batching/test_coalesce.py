"""Coroutine callers gathered per event-loop iteration: one posted request, each caller's own outcome.

The fake model doubles its input (``GatedModel``), so every answer can be checked against
the caller's own rows; the accounting invariant runs after every test (conftest).
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from tests.batching.test_batcher import occupy, rows, wait_until
from tests.fakes import GatedModel
from tfbatch_django.batching import CallableRunner
from tfbatch_django.batching.group import GroupRequest
from tfbatch_django.exceptions import InvalidInput, ModelError, Overloaded, PredictTimeout


class SteppedModel(GatedModel):
    """``GatedModel`` whose every call waits for a permit: the test lets calls through one by one.

    ``next_call()`` waits until a call is in (its rows are known to be in a batch);
    ``step(n)`` lets ``n`` calls through. ``broken``: calls raise ``ModelError``
    (an engine that is unreachable, say), which is not bisected.
    """

    def __init__(self, *, broken: bool = False, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.broken = broken
        self._permits = threading.Semaphore(0)
        self._calls = threading.Semaphore(0)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._calls.release()
        if not self._permits.acquire(timeout=30):
            raise RuntimeError("the test never let this call through")
        if self.broken:
            with self.lock:
                self.batches.append(inputs["x"].copy())
            raise ModelError("engine unreachable")
        return super().run(inputs)

    async def next_call(self) -> None:
        assert await asyncio.to_thread(self._calls.acquire, True, 5), "no model call came"

    def step(self, calls: int = 1) -> None:
        self._permits.release(calls)


def alone(x: np.ndarray) -> np.ndarray:
    """``x`` in a form the batcher does not gather (foreign byte order): a request of its
    own, whatever its ``timeout`` (the model's float32 is cast from it in assemble)."""
    return x.astype(">f4")


#: How a test's callers call: gathered (no timeout), gathered with timeouts of their own
#: (60 s, then 30 s: each group sorted by deadline, the last caller first), or alone.
HOW = ["gathered", "own timeouts", "alone"]


def call_as(batcher, how: str, x: np.ndarray, i: int = 0):
    """``batcher.predict(x)`` the way ``how`` says (``i``: the caller's place in its group)."""
    if how == "gathered":
        return batcher.predict(x)
    if how == "own timeouts":
        return batcher.predict(x, timeout=60.0 - 10 * i)
    return batcher.predict(alone(x), timeout=60.0)


def count_posts(batcher, monkeypatch) -> list[int]:
    """Record, for each request posted to the batcher's mailbox, how many callers it holds."""
    posted: list[int] = []
    post = batcher._mailbox.post

    def spy(request):
        posted.append(request.count)
        return post(request)

    monkeypatch.setattr(batcher._mailbox, "post", spy)
    return posted


async def test_callers_of_one_iteration_are_posted_as_one_request(make_batcher, monkeypatch):
    model = GatedModel()
    batcher = make_batcher(model, max_batch_size=64)
    posted = count_posts(batcher, monkeypatch)
    results = await asyncio.gather(*(batcher.predict(rows(i)) for i in range(40)))
    assert posted == [40]
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result.outputs["y"], rows(i) * 2)
        np.testing.assert_array_equal(result.outputs["sum"], [3.0 * i])
        assert result.batch.size == 40
    assert batcher.snapshot()["requests"] == 40
    assert batcher.snapshot()["completed"] == 40


async def test_each_member_has_its_own_queue_time(make_batcher):
    batcher = make_batcher(GatedModel(), max_batch_size=64)
    results = await asyncio.gather(*(batcher.predict(rows(i)) for i in range(20)))
    waits = [r.batch.queue_ms for r in results]
    # Members are submitted one after the other: the first waited longest.
    assert waits == sorted(waits, reverse=True)
    assert all(w >= 0 for w in waits)


async def test_lists_or_a_foreign_key_go_one_by_one_a_deadline_of_its_own_is_gathered(make_batcher, monkeypatch):
    batcher = make_batcher(GatedModel(), max_batch_size=64)
    posted = count_posts(batcher, monkeypatch)
    results = await asyncio.gather(
        batcher.predict(rows(1), timeout=5),  # gathered, with its own deadline
        batcher.predict([[3.0, 3.0, 3.0]]),  # a list: checked the usual way
        batcher.predict(rows(4).astype(">f4")),  # foreign byte order: cast the usual way
        batcher.predict(rows(5)),
        return_exceptions=True,
    )
    assert sorted(posted) == [1, 1, 2]
    assert [r.outputs["y"][0, 0] for r in results] == [2.0, 6.0, 8.0, 10.0]
    with pytest.raises(InvalidInput, match="unknown 'z'"):
        await batcher.predict({"z": rows(6)})  # the usual message, not gathered
    assert sorted(posted) == [1, 1, 2]


@pytest.mark.parametrize("dtype", ["float64", "float16", "uint8", "int64", "int32", "bool"])
async def test_arrays_the_model_casts_from_are_gathered_and_cast_once(make_batcher, monkeypatch, dtype):
    """What the serving doors pass: JSON's float64 or int64, ``uint8`` images, and each as
    ``{input name: array}``; cast while the batch is assembled, like any request."""
    model = GatedModel()
    batcher = make_batcher(model, max_batch_size=64)
    posted = count_posts(batcher, monkeypatch)
    sent = [rows(i % 2).astype(dtype) for i in range(6)]
    results = await asyncio.gather(
        *(batcher.predict(x) for x in sent[:3]),
        *(batcher.predict({"x": x}) for x in sent[3:]),
        batcher.predict(rows(7)),  # the model's own dtype in the same group
    )
    assert posted == [7]
    assert model.batches[0].dtype == np.float32
    for x, result in zip([*sent, rows(7)], results, strict=True):
        np.testing.assert_array_equal(result.outputs["y"], x.astype(np.float32) * 2)
        assert result.outputs["y"].dtype == np.float32


async def test_a_group_of_mixed_dtypes_and_sizes_is_cut_and_bisected_per_caller(make_batcher):
    model = GatedModel(poison=9.0)
    batcher = make_batcher(model, max_batch_size=4)
    sent = [
        rows(1, 1).astype(np.float64),
        {"x": rows(2).astype(np.uint8)},
        rows(9).astype(np.int64),  # poisonous: fails alone
        rows(3, 3, 3),
        {"x": rows(4).astype(np.float16)},
    ]
    results = await asyncio.gather(*(batcher.predict(x) for x in sent), return_exceptions=True)
    assert isinstance(results[2], ModelError)
    for i in (0, 1, 3, 4):
        x = sent[i]["x"] if isinstance(sent[i], dict) else sent[i]
        np.testing.assert_array_equal(results[i].outputs["y"], x.astype(np.float32) * 2)


async def test_arrays_the_model_cannot_take_keep_their_own_message(make_batcher, monkeypatch):
    batcher = make_batcher(GatedModel(dtype="int32"), max_batch_size=64)
    posted = count_posts(batcher, monkeypatch)
    with pytest.raises(InvalidInput, match="dtype float32, which cannot be cast to int32"):
        await batcher.predict(rows(1))
    with pytest.raises(InvalidInput, match="shape"):
        await batcher.predict({"x": np.zeros((1, 4), np.int64)})
    assert posted == []
    result = await batcher.predict({"x": np.ones((1, 3), np.uint8)})
    np.testing.assert_array_equal(result.outputs["y"], [[2, 2, 2]])
    assert result.outputs["y"].dtype == np.int32


async def test_a_group_that_does_not_fit_is_cut_and_fills_the_batches(make_batcher):
    model = GatedModel()
    batcher = make_batcher(model, max_batch_size=8)
    running = await occupy(model, batcher)
    sizes = [3, 2, 4, 1, 5, 2]  # 17 rows, one group: batches of 8, 8, 1
    tasks = [asyncio.ensure_future(batcher.predict(rows(*([float(i)] * n)))) for i, n in enumerate(sizes)]
    await wait_until(lambda: batcher.snapshot()["requests"] == 1 + len(sizes))
    model.release()
    await running
    results = await asyncio.gather(*tasks)
    assert model.sizes[1:] == [8, 8, 1]
    for i, (n, result) in enumerate(zip(sizes, results, strict=True)):
        np.testing.assert_array_equal(result.outputs["y"], rows(*([float(i)] * n)) * 2)
    # Callers ride whole in one batch, except where one had to be cut to fill a batch.
    assert [r.batch.batches for r in results] == [1, 1, 2, 1, 1, 2]


async def test_a_member_bigger_than_a_batch_is_cut_over_batches(make_batcher):
    model = GatedModel()
    batcher = make_batcher(model, max_batch_size=4)
    running = await occupy(model, batcher)
    big = rows(*[float(v) for v in range(10)])
    tasks = [asyncio.ensure_future(batcher.predict(x)) for x in (rows(100), big, rows(200))]
    await wait_until(lambda: batcher.snapshot()["requests"] == 4)
    model.release()
    await running
    small, whole, last = await asyncio.gather(*tasks)
    np.testing.assert_array_equal(whole.outputs["y"], big * 2)
    assert whole.batch.batches == 3
    np.testing.assert_array_equal(small.outputs["y"], rows(100) * 2)
    np.testing.assert_array_equal(last.outputs["y"], rows(200) * 2)
    assert sum(model.sizes[1:]) == 12


async def test_a_member_cancelled_before_its_group_is_posted_is_counted_cancelled(make_batcher):
    model = GatedModel()
    batcher = make_batcher(model, max_batch_size=64)
    doomed = asyncio.ensure_future(batcher.predict(rows(13)))
    kept = asyncio.ensure_future(batcher.predict(rows(14)))
    await asyncio.sleep(0)  # both submitted; the group is posted at the end of this iteration
    doomed.cancel()
    result = await kept
    np.testing.assert_array_equal(result.outputs["y"], rows(14) * 2)
    assert 13 not in np.concatenate(model.batches)[:, 0]
    await wait_until(lambda: batcher.snapshot()["cancelled"] == 1)
    assert batcher.snapshot()["requests"] == 2


async def test_a_queued_member_cancelled_never_reaches_the_model(make_batcher):
    model = GatedModel()
    batcher = make_batcher(model, max_batch_size=64)
    running = await occupy(model, batcher)
    tasks = [asyncio.ensure_future(batcher.predict(rows(v))) for v in (21, 22, 23)]
    await wait_until(lambda: batcher.queue_depth() == 3)
    tasks[1].cancel()
    await asyncio.sleep(0)
    model.release()
    await running
    first, last = await asyncio.gather(tasks[0], tasks[2])
    assert 22 not in np.concatenate(model.batches)[:, 0]
    assert first.batch.size == last.batch.size == 2
    await wait_until(lambda: batcher.snapshot()["cancelled"] == 1)


async def test_a_poisonous_member_fails_alone(make_batcher):
    model = GatedModel(poison=-1.0)
    batcher = make_batcher(model, max_batch_size=64)
    values = [1.0, 2.0, -1.0, 4.0, 5.0, 6.0, 7.0]
    outcomes = await asyncio.gather(*(batcher.predict(rows(v)) for v in values), return_exceptions=True)
    for value, outcome in zip(values, outcomes, strict=True):
        if value == -1.0:
            assert isinstance(outcome, ModelError)
            assert "poisoned row" in str(outcome)
        else:
            np.testing.assert_array_equal(outcome.outputs["y"], rows(value) * 2)
    await wait_until(lambda: batcher.snapshot()["errors"] == 1)
    assert batcher.snapshot()["completed"] == 6


async def test_a_whole_batch_failure_reaches_every_member_as_its_own_exception(make_batcher):
    def broken(x):
        raise ModelError("engine unreachable")

    runner = CallableRunner(broken, inputs={"x": ("float32", (None, 3))}, outputs=("y",))
    batcher = make_batcher(runner, max_batch_size=64)
    outcomes = await asyncio.gather(*(batcher.predict(rows(i)) for i in range(5)), return_exceptions=True)
    assert all(isinstance(o, ModelError) and "engine unreachable" in str(o) for o in outcomes)
    assert len({id(o) for o in outcomes}) == 5  # one exception object per caller
    await wait_until(lambda: batcher.snapshot()["errors"] == 5)


async def test_a_full_queue_takes_who_fits_and_refuses_the_rest(make_batcher):
    model = GatedModel()
    batcher = make_batcher(model, max_batch_size=1, max_queue_size=6)
    running = await occupy(model, batcher)
    await wait_until(lambda: batcher.queue_depth() == 0)
    tasks = [asyncio.ensure_future(batcher.predict(rows(v))) for v in range(10)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    model.release()
    await running
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, Overloaded)]
    assert len(refused) == 4
    assert all("MAX_QUEUE_SIZE=6" in str(o) for o in refused)
    assert [o.outputs["y"][0, 0] for o in outcomes[:6]] == [0, 2, 4, 6, 8, 10]
    snap = batcher.snapshot()
    assert snap["rejected"] == 4
    assert snap["requests"] == 7  # the occupying request and the 6 that fitted


async def test_multi_row_members_with_several_outputs(make_batcher):
    batcher = make_batcher(GatedModel(width=2), max_batch_size=64)
    inputs = [rows(*([float(i)] * (i % 3 + 1)), width=2) for i in range(9)]
    results = await asyncio.gather(*(batcher.predict(x) for x in inputs))
    for x, result in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(result.outputs["y"], x * 2)
        np.testing.assert_array_equal(result.outputs["sum"], x.sum(axis=1))


async def test_callers_on_different_loops_are_gathered_apart(make_batcher):
    batcher = make_batcher(GatedModel(), max_batch_size=64)

    def on_its_own_loop(base: float) -> list[float]:
        async def burst() -> list[float]:
            results = await asyncio.gather(*(batcher.predict(rows(base + i)) for i in range(5)))
            return [float(r.outputs["y"][0, 0]) for r in results]

        return asyncio.run(burst())

    a, b = await asyncio.gather(asyncio.to_thread(on_its_own_loop, 0.0), asyncio.to_thread(on_its_own_loop, 100.0))
    assert a == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert b == [200.0, 202.0, 204.0, 206.0, 208.0]


def test_group_cut_keeps_every_caller_once():
    loop = asyncio.new_event_loop()
    try:
        arrays = [np.zeros((n, 2), np.float32) for n in (2, 3, 1, 4)]
        futures = [loop.create_future() for _ in arrays]
        group = GroupRequest("x", arrays, futures, [1.0, 2.0, 3.0, 4.0], loop)
        head, tail = group.cut(6)
        assert isinstance(head, GroupRequest) and head.count == 3 and head.rows == 6
        assert tail is not None and tail.count == 1 and tail.rows == 4
        lone, rest = group.cut(1)  # not even the first (2 rows) fits: it comes off alone
        assert type(lone) is not GroupRequest and lone.rows == 2 and lone.future is futures[0]
        assert rest is not None and rest.count == 3 and rest.rows == 8
        assert [p.shape[0] for p in group.rows_of("x", 1, 6)] == [1, 3, 1]
    finally:
        loop.close()


@pytest.mark.parametrize("callers", [1, 2, 255, 256, 257, 700])
async def test_any_number_of_callers_each_get_their_rows(make_batcher, callers):
    batcher = make_batcher(GatedModel(), max_batch_size=256, max_queue_size=1000)
    results = await asyncio.gather(*(batcher.predict(rows(i)) for i in range(callers)))
    assert [float(r.outputs["y"][0, 0]) for r in results] == [2.0 * i for i in range(callers)]


@pytest.mark.parametrize("how", HOW)
async def test_a_caller_cut_over_batches_who_gives_up_stops_running(make_batcher, how):
    model = SteppedModel()
    batcher = make_batcher(model, max_batch_size=4)
    big = rows(*[float(v) for v in range(1, 11)])  # 10 rows: batches of 4, 4 and 2
    task = asyncio.ensure_future(call_as(batcher, how, big))
    await model.next_call()  # its first 4 rows are in the model
    task.cancel()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    model.step(10)
    await wait_until(lambda: batcher.outstanding == 0)
    assert model.sizes == [4]  # the rest of its rows never ran
    snap = batcher.snapshot()
    assert (snap["cancelled"], snap["completed"]) == (1, 0)


async def test_a_broken_up_group_member_who_gives_up_is_not_run_again(make_batcher):
    model = SteppedModel(poison=-1.0)
    batcher = make_batcher(model, max_batch_size=64)
    tasks = [asyncio.ensure_future(batcher.predict(rows(v))) for v in (1.0, -1.0, 3.0)]
    await model.next_call()  # the group's call: it fails, the group is broken up
    model.step()
    await model.next_call()  # its members' call
    tasks[2].cancel()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    model.step(10)
    first, poisoned = await asyncio.gather(tasks[0], tasks[1], return_exceptions=True)
    np.testing.assert_array_equal(first.outputs["y"], rows(1.0) * 2)
    assert isinstance(poisoned, ModelError)
    await wait_until(lambda: batcher.outstanding == 0)
    assert all(3.0 not in b[:, 0] for b in model.batches[2:])  # bisection left it out
    snap = batcher.snapshot()
    assert (snap["completed"], snap["errors"], snap["cancelled"]) == (1, 1, 1)


@pytest.mark.parametrize("how", HOW)
async def test_a_caller_who_gave_up_in_a_batch_that_fails_whole_is_counted_cancelled(make_batcher, how):
    model = SteppedModel(broken=True)
    batcher = make_batcher(model, max_batch_size=64)
    tasks = [asyncio.ensure_future(call_as(batcher, how, rows(v), i)) for i, v in enumerate((1.0, 2.0, 3.0))]
    await model.next_call()
    tasks[1].cancel()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    model.step()
    outcomes = await asyncio.gather(tasks[0], tasks[2], return_exceptions=True)
    assert all(isinstance(o, ModelError) for o in outcomes)
    await wait_until(lambda: batcher.outstanding == 0)
    assert model.sizes == [3]
    snap = batcher.snapshot()
    assert (snap["errors"], snap["cancelled"]) == (2, 1)


@pytest.mark.parametrize("how", HOW)
async def test_a_formed_batch_whose_callers_all_gave_up_is_not_run(make_batcher, how):
    model = SteppedModel()
    batcher = make_batcher(model, max_batch_size=4)
    running = asyncio.ensure_future(batcher.predict(rows(0.0), timeout=60))
    await model.next_call()
    tasks = [asyncio.ensure_future(call_as(batcher, how, rows(v), i)) for i, v in enumerate((1.0, 2.0, 3.0, 4.0))]
    # A full batch is formed while the model is busy: it waits for the executor.
    await wait_until(lambda: batcher.snapshot()["in_flight_batches"] == 2 and batcher.queue_depth() == 0)
    for task in tasks:
        task.cancel()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    model.step(10)
    await running
    await wait_until(lambda: batcher.outstanding == 0)
    assert model.sizes == [1]  # its batch was dropped, not run
    assert batcher.snapshot()["cancelled"] == 4


def test_a_group_comes_apart_in_pieces_of_a_batch_each():
    loop = asyncio.new_event_loop()
    try:
        sizes = (2, 3, 1, 4, 6, 1, 1)
        arrays = [np.full((n, 2), i, np.float32) for i, n in enumerate(sizes)]
        futures = [loop.create_future() for _ in arrays]
        group = GroupRequest("x", arrays, futures, [float(i) for i in range(len(sizes))], loop)
        pieces = group.pieces(5)
        # Consecutive callers, at most 5 rows a piece; the 6-row caller alone in its own.
        assert [p.rows for p in pieces] == [5, 5, 6, 2]
        assert [p.count for p in pieces] == [2, 2, 1, 2]
        assert [f for p in pieces for f in p.members.futures] == futures
        ones = GroupRequest(
            "x", [np.zeros((1, 2), np.float32)] * 7, [loop.create_future() for _ in range(7)], [0.0] * 7, loop
        )
        assert [p.rows for p in ones.pieces(3)] == [3, 3, 1]
        assert all(p.members.sizes is None for p in ones.pieces(3))
        assert group.pieces(100) == [group]
    finally:
        loop.close()


async def test_many_gathered_callers_for_a_batch_of_one(make_batcher):
    model = GatedModel()
    batcher = make_batcher(model, max_batch_size=1, max_queue_size=1000)
    results = await asyncio.gather(*(batcher.predict(rows(i)) for i in range(300)))
    assert [float(r.outputs["y"][0, 0]) for r in results] == [2.0 * i for i in range(300)]
    assert set(model.sizes) == {1}


async def test_a_group_that_cannot_be_posted_fails_its_callers_and_is_counted(make_batcher, monkeypatch):
    batcher = make_batcher(GatedModel(), max_batch_size=64)
    post = batcher._mailbox.post
    calls = []

    def broken_once(request):
        calls.append(request.count)
        if len(calls) == 1:
            raise RuntimeError("the mailbox broke")
        return post(request)

    monkeypatch.setattr(batcher._mailbox, "post", broken_once)
    tasks = [asyncio.ensure_future(batcher.predict(rows(i))) for i in range(5)]
    await asyncio.sleep(0)
    tasks[4].cancel()  # gave up before the group was posted
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert calls == [5]
    errors = outcomes[:4]
    assert all(isinstance(e, RuntimeError) and str(e) == "the mailbox broke" for e in errors)
    assert len({id(e) for e in errors}) == 4  # each caller its own exception
    assert isinstance(outcomes[4], asyncio.CancelledError)
    snap = batcher.snapshot()
    assert (snap["requests"], snap["errors"], snap["cancelled"]) == (5, 4, 1)
    result = await batcher.predict(rows(7))  # the batcher serves on
    np.testing.assert_array_equal(result.outputs["y"], rows(7) * 2)


def test_a_loop_closed_before_its_group_was_posted_is_let_go_at_close(make_batcher):
    batcher = make_batcher(GatedModel(), max_batch_size=64)
    loop = asyncio.new_event_loop()

    tasks = []

    async def call_then_stop() -> None:
        tasks.append(loop.create_task(batcher.predict(rows(1))))
        await asyncio.sleep(0)  # the task runs and gathers; its group's flush is queued
        loop.stop()  # ... and this iteration is the loop's last

    tasks.append(loop.create_task(call_then_stop()))
    loop.run_forever()
    assert loop in batcher._gatherer._open
    loop.close()
    batcher.close(timeout=5)
    assert batcher._gatherer._open == {}
    assert batcher.snapshot()["requests"] == 0  # never posted, so never accepted


# -- with the model's default deadline (TIMEOUT_MS): each member's own, from its own submit


async def test_callers_are_gathered_under_a_default_deadline(make_batcher, monkeypatch):
    batcher = make_batcher(GatedModel(), max_batch_size=64, default_timeout=30.0)
    posted = count_posts(batcher, monkeypatch)
    results = await asyncio.gather(*(batcher.predict(rows(i)) for i in range(10)))
    assert posted == [10]
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result.outputs["y"], rows(i) * 2)


def spread_group(batcher, gap: float) -> list[asyncio.Task]:
    """Two callers in one loop iteration, ``gap`` seconds apart (the loop blocked between):
    one group whose members' deadlines are ``gap`` apart."""

    async def early():
        return await batcher.predict(rows(1))

    async def late():
        time.sleep(gap)
        return await batcher.predict(rows(2))

    return [asyncio.ensure_future(early()), asyncio.ensure_future(late())]


async def test_a_queued_member_times_out_at_its_own_deadline_and_its_rows_never_run(make_batcher, monkeypatch):
    model = SteppedModel()
    batcher = make_batcher(model, max_batch_size=8, default_timeout=0.5)
    posted = count_posts(batcher, monkeypatch)
    first = asyncio.ensure_future(batcher.predict(rows(0), timeout=30))  # a deadline of its own
    await model.next_call()  # the model is busy: the group queues
    early, late = spread_group(batcher, 0.6)
    with pytest.raises(PredictTimeout, match="in the queue"):
        await early
    assert not late.done()  # its deadline is 0.6 s later
    model.step()
    await first
    await model.next_call()
    model.step()
    result = await late
    np.testing.assert_array_equal(result.outputs["y"], rows(2) * 2)
    assert posted == [1, 2]
    assert [b[:, 0].tolist() for b in model.batches] == [[0.0], [2.0]]
    snap = batcher.snapshot()
    assert (snap["requests"], snap["completed"], snap["timeouts"]) == (3, 2, 1)


async def test_a_running_member_times_out_at_its_own_deadline_the_others_get_their_rows(make_batcher):
    model = SteppedModel()
    batcher = make_batcher(model, max_batch_size=8, default_timeout=0.8)
    early, late = spread_group(batcher, 0.4)
    await model.next_call()  # both in the running batch
    with pytest.raises(PredictTimeout, match="while its batch ran"):
        await early
    assert not late.done()
    model.step()
    result = await late
    np.testing.assert_array_equal(result.outputs["y"], rows(2) * 2)
    assert result.batch.size == 2  # the batch it rode in still held the other's row
    snap = batcher.snapshot()
    assert (snap["requests"], snap["completed"], snap["timeouts"]) == (2, 1, 1)


async def test_a_running_group_whose_members_all_time_out_answers_no_one_twice(make_batcher):
    model = SteppedModel()
    batcher = make_batcher(model, max_batch_size=8, default_timeout=0.2)
    early, late = spread_group(batcher, 0.1)
    await model.next_call()
    outcomes = await asyncio.gather(early, late, return_exceptions=True)
    assert all(isinstance(o, PredictTimeout) for o in outcomes)
    model.step()  # its outputs come back to no one
    await wait_until(lambda: batcher.snapshot()["batches"] == 1)
    snap = batcher.snapshot()
    assert (snap["requests"], snap["completed"], snap["timeouts"]) == (2, 0, 2)


async def test_a_group_cut_over_batches_keeps_every_members_deadline(make_batcher):
    model = SteppedModel()
    batcher = make_batcher(model, max_batch_size=2, default_timeout=0.3)
    first = asyncio.ensure_future(batcher.predict(rows(0), timeout=30))
    await model.next_call()
    tasks = [asyncio.ensure_future(batcher.predict(rows(i))) for i in range(1, 6)]  # one group, cut 2 + 2 + 1
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    # The first two were dispatched (the next batch waits formed while one runs), the rest queued.
    assert [str(o).rsplit("passed ", 1)[1] for o in outcomes] == ["while its batch ran"] * 2 + ["in the queue"] * 3
    model.step()
    await first
    snap = batcher.snapshot()
    assert (snap["requests"], snap["completed"], snap["timeouts"]) == (6, 1, 5)
    await wait_until(lambda: batcher.snapshot()["in_flight_batches"] == 0)
    assert [b[:, 0].tolist() for b in model.batches] == [[0.0]]  # none of their rows ran


async def test_a_broken_up_group_keeps_its_members_deadlines_and_fails_only_the_poisonous(make_batcher):
    model = GatedModel(poison=9.0)
    batcher = make_batcher(model, max_batch_size=8, default_timeout=30.0)
    outcomes = await asyncio.gather(*(batcher.predict(rows(v)) for v in (1, 9, 3)), return_exceptions=True)
    assert isinstance(outcomes[1], ModelError)
    np.testing.assert_array_equal(outcomes[0].outputs["y"], rows(1) * 2)
    np.testing.assert_array_equal(outcomes[2].outputs["y"], rows(3) * 2)


@pytest.mark.parametrize("poisonous", ["answered apart", "still waiting"])
async def test_a_running_group_fails_after_members_were_answered_apart(make_batcher, poisonous):
    """The call fails after the first member's deadline passed: the group is broken up into
    its members still waiting, and only a poisonous one among them gets the error; one
    answered apart already (``PredictTimeout``) gets nothing more, poisonous or not."""
    model = SteppedModel(poison=1.0 if poisonous == "answered apart" else 2.0)
    batcher = make_batcher(model, max_batch_size=8, default_timeout=0.8)
    early, late = spread_group(batcher, 0.4)
    await model.next_call()  # both rows in the running call
    with pytest.raises(PredictTimeout, match="while its batch ran"):
        await early
    model.step()  # the call fails
    await model.next_call()  # the member still waiting, alone
    model.step()
    if poisonous == "answered apart":
        result = await late
        np.testing.assert_array_equal(result.outputs["y"], rows(2) * 2)
    else:
        with pytest.raises(ModelError):
            await late
    assert [b[:, 0].tolist() for b in model.batches] == [[1.0, 2.0], [2.0]]
    snap = batcher.snapshot()
    assert (snap["requests"], snap["timeouts"], snap["completed"] + snap["errors"]) == (2, 1, 1)


async def test_a_member_answered_apart_while_its_batch_is_bisected(make_batcher):
    """A call fails; while bisection runs its halves, the group's first member's deadline
    passes: the group's half answers the other member, the poisonous caller gets its error."""
    model = SteppedModel(poison=9.0)
    batcher = make_batcher(model, max_batch_size=8, default_timeout=0.8)
    first = asyncio.ensure_future(batcher.predict(rows(0), timeout=30))
    await model.next_call()  # the model is busy: what follows queues
    early, late = spread_group(batcher, 0.3)
    bad = asyncio.ensure_future(batcher.predict(alone(rows(9)), timeout=30))  # on its own, posted first
    await wait_until(lambda: batcher.queue_depth() == 3)
    model.step()
    await first
    await model.next_call()  # [bad, group]
    model.step()  # fails
    await model.next_call()  # bisection: [bad] alone
    with pytest.raises(PredictTimeout, match="while its batch ran"):
        await early
    model.step()
    await model.next_call()  # [group] alone, its first member answered already
    model.step()
    with pytest.raises(ModelError):
        await bad
    result = await late
    np.testing.assert_array_equal(result.outputs["y"], rows(2) * 2)
    assert [b[:, 0].tolist() for b in model.batches] == [[0.0], [9.0, 1.0, 2.0], [9.0], [1.0, 2.0]]
    snap = batcher.snapshot()
    assert (snap["requests"], snap["completed"], snap["timeouts"], snap["errors"]) == (4, 2, 1, 1)
