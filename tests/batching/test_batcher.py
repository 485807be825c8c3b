"""Batcher semantics with a deterministic fake model: what forms which batch, who gets what."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from tests.fakes import GatedModel
from tfbatch_django.batching import CallableRunner
from tfbatch_django.exceptions import InvalidInput, ModelError, Overloaded, PredictTimeout


def rows(*values: float, width: int = 3) -> np.ndarray:
    return np.array([[v] * width for v in values], dtype=np.float32)


async def wait_until(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.001)


async def occupy(model: GatedModel, batcher, value: float = 0) -> asyncio.Future:
    """Hold the model inside a batch of one row, so whatever is submitted next queues."""
    model.hold()
    task = asyncio.ensure_future(batcher.predict(rows(value)))
    await asyncio.to_thread(model.entered.wait, 5)
    return task


def accepted(batcher) -> int:
    return batcher.snapshot()["requests"]


async def test_each_caller_gets_exactly_its_rows(make_batcher):
    model = GatedModel()
    batcher = make_batcher(model, max_batch_size=8)
    results = await asyncio.gather(*(batcher.predict(rows(i, i + 0.5)) for i in range(40)))
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result.outputs["y"], rows(i, i + 0.5) * 2)
        np.testing.assert_array_equal(result.outputs["sum"], [3 * i * 1.0, 3 * (i + 0.5)])
    assert max(model.sizes) == 8  # concurrent callers shared batches
    assert sum(model.sizes) == 80


async def test_lone_request_is_dispatched_without_waiting(make_batcher):
    # A max latency of a minute would be visible if the batcher waited for batch-mates.
    batcher = make_batcher(GatedModel(), max_batch_size=8, max_latency=60.0)
    for i in range(3):
        result = await asyncio.wait_for(batcher.predict(rows(i)), timeout=10)
        assert result.batch.size == 1


async def test_next_batch_forms_while_runner_is_busy(make_batcher):
    model = GatedModel()
    batcher = make_batcher(model, max_batch_size=8, max_latency=60.0)
    first = await occupy(model, batcher)
    rest = [asyncio.ensure_future(batcher.predict(rows(i))) for i in range(1, 11)]
    await wait_until(lambda: accepted(batcher) == 11)
    model.release()
    results = await asyncio.gather(first, *rest)
    # 10 queued while busy: one full batch, then the remaining 2 (every caller present).
    assert model.sizes == [1, 8, 2]
    assert [r.batch.size for r in results] == [1] + [8] * 8 + [2] * 2


async def test_stragglers_of_a_burst_do_not_wait(make_batcher):
    # After a burst, the last partial batch goes as soon as the runner is free: nothing
    # else is arriving, so a minute of max latency is never spent.
    model = GatedModel()
    batcher = make_batcher(model, max_batch_size=8, max_latency=60.0)
    results = await asyncio.wait_for(asyncio.gather(*(batcher.predict(rows(i)) for i in range(21))), 10)
    assert sum(r.batch.size == 8 for r in results) >= 8
    assert sum(model.sizes) == 21


async def test_waits_for_batch_mates_while_callers_keep_arriving(make_batcher):
    model = GatedModel()
    batcher = make_batcher(model, max_batch_size=8, max_latency=30.0)
    await asyncio.gather(*(batcher.predict(rows(i)) for i in range(8)))  # 8 callers seen recently
    model.batches.clear()
    tasks = []
    for i in range(8):  # a steady stream, one every 10 ms, to an idle runner
        tasks.append(asyncio.ensure_future(batcher.predict(rows(i))))
        await asyncio.sleep(0.01)
    results = await asyncio.wait_for(asyncio.gather(*tasks), 20)
    # An eager batcher would have run 8 batches of 1; this one waited for batch-mates
    # (the peak of 8 callers says more are coming) and answered well within max latency.
    assert len(model.sizes) < 8
    assert max(r.batch.queue_ms for r in results) < 30_000


async def test_large_request_is_split_and_reassembled_in_order(make_batcher):
    model = GatedModel()
    batcher = make_batcher(model, max_batch_size=8)
    x = np.arange(19 * 3, dtype=np.float32).reshape(19, 3)
    result = await batcher.predict(x)
    np.testing.assert_array_equal(result.outputs["y"], x * 2)
    assert model.sizes == [8, 8, 3]
    assert result.batch.batches == 3


async def test_split_request_shares_batches_with_others(make_batcher):
    model = GatedModel()
    batcher = make_batcher(model, max_batch_size=8, max_latency=60.0)
    first = await occupy(model, batcher, -1)
    small = asyncio.ensure_future(batcher.predict(rows(100, 101, 102)))
    big = asyncio.ensure_future(batcher.predict(np.arange(30, dtype=np.float32).reshape(10, 3)))
    await wait_until(lambda: accepted(batcher) == 3)
    model.release()
    r_small, r_big = await asyncio.gather(small, big)
    await first
    assert model.sizes == [1, 8, 5]
    np.testing.assert_array_equal(r_small.outputs["y"], rows(100, 101, 102) * 2)
    np.testing.assert_array_equal(r_big.outputs["y"], np.arange(30, dtype=np.float32).reshape(10, 3) * 2)


async def test_padding_to_allowed_sizes(make_batcher):
    model = GatedModel()
    batcher = make_batcher(model, max_batch_size=8, allowed_batch_sizes=(4, 8))
    result = await batcher.predict(rows(1, 2, 3))
    assert model.sizes == [4]
    np.testing.assert_array_equal(model.batches[0][3], [0, 0, 0])  # the filler row
    np.testing.assert_array_equal(result.outputs["y"], rows(1, 2, 3) * 2)
    assert (result.batch.size, result.batch.padded_size) == (3, 4)
    snap = batcher.snapshot()
    assert snap["padding_rows"] == 1
    assert snap["padding_share"] == 0.25


def test_warmup_runs_every_allowed_size(make_batcher):
    model = GatedModel()
    batcher = make_batcher(model, max_batch_size=8, allowed_batch_sizes=(1, 4, 8), warmup=True)
    assert model.sizes == [1, 4, 8]
    assert [w["size"] for w in batcher.warmup_report] == [1, 4, 8]


def test_warmup_without_allowed_sizes_runs_one_and_max(make_batcher):
    model = GatedModel()
    make_batcher(model, max_batch_size=16, warmup=True)
    assert model.sizes == [1, 16]


async def test_queue_bound_rejects_at_once(make_batcher):
    model = GatedModel()
    batcher = make_batcher(model, max_batch_size=4, max_queue_size=2)
    running = await occupy(model, batcher)
    queued = [asyncio.ensure_future(batcher.predict(rows(i))) for i in (1, 2)]
    await wait_until(lambda: batcher.queue_depth() == 2)
    with pytest.raises(Overloaded, match=r"2 requests queued \(MAX_QUEUE_SIZE=2\)"):
        await batcher.predict(rows(3))
    model.release()
    await asyncio.gather(running, *queued)
    assert batcher.snapshot()["rejected"] == 1
    await batcher.predict(rows(4))  # accepting again once the queue drained


async def test_deadline_passing_in_queue_drops_the_request(make_batcher):
    model = GatedModel()
    batcher = make_batcher(model, max_batch_size=8)
    running = await occupy(model, batcher)
    with pytest.raises(PredictTimeout, match="deadline of 50 ms passed in the queue"):
        await batcher.predict(rows(7), timeout=0.05)
    model.release()
    await running
    await batcher.predict(rows(8))
    seen = np.concatenate(model.batches)[:, 0]
    assert 7 not in seen  # its rows were never computed
    snap = batcher.snapshot()
    assert snap["timeouts"] == 1
    assert snap["completed"] == 2


async def test_deadline_passing_while_running_answers_at_the_deadline(make_batcher):
    model = GatedModel()
    batcher = make_batcher(model, max_batch_size=8)
    model.hold()
    with pytest.raises(PredictTimeout, match="while its batch ran"):
        await batcher.predict(rows(1), timeout=0.05)
    model.release()
    await batcher.predict(rows(2))
    assert batcher.snapshot()["timeouts"] == 1


def test_default_timeout_from_config(make_batcher):
    model = GatedModel()
    batcher = make_batcher(model, default_timeout=0.05)
    model.hold()
    try:
        with pytest.raises(PredictTimeout):
            batcher.predict_sync(rows(1))
    finally:
        model.release()


async def test_cancelled_caller_is_removed_before_its_batch(make_batcher):
    model = GatedModel()
    batcher = make_batcher(model, max_batch_size=8)
    running = await occupy(model, batcher)
    doomed = asyncio.ensure_future(batcher.predict(rows(13)))
    kept = asyncio.ensure_future(batcher.predict(rows(14)))
    await wait_until(lambda: batcher.queue_depth() == 2)
    doomed.cancel()
    await asyncio.sleep(0)
    model.release()
    await running
    result = await kept
    assert result.batch.size == 1
    assert 13 not in np.concatenate(model.batches)[:, 0]
    await wait_until(lambda: batcher.snapshot()["cancelled"] == 1)


async def test_invalid_input_never_reaches_the_model(make_batcher):
    model = GatedModel()
    batcher = make_batcher(model, name="fake")
    cases = [
        ({"z": rows(1)}, "inputs do not match the model: missing 'x'; unknown 'z'; expected inputs: 'x'"),
        (np.ones((2, 4), np.float32), r"input 'x' has shape \(2, 4\); expected \(None, 3\)"),
        (np.ones((3,), np.float32), r"input 'x' has shape \(3,\) \(rank 1\); expected rank 2"),
        (np.float32(1), "input 'x' is a scalar; it needs a leading batch dimension"),
        (np.ones((0, 3), np.float32), "input 'x' has no rows"),
        ([[1, 2, 3], [4, 5]], "input 'x' is not a rectangular array of numbers"),
        ([["a", "b", "c"]], "input 'x' has dtype string/object, which cannot be cast to float32"),
        (np.ones((1, 3), dtype=np.complex64), "input 'x' has dtype complex64"),
    ]
    for value, message in cases:
        with pytest.raises(InvalidInput, match=message) as info:
            await batcher.predict(value)
        assert info.value.model == "fake"
    assert model.sizes == []
    assert batcher.snapshot()["invalid"] == len(cases)
    # Safe casts are fine: JSON-ish lists of ints and float64 arrays.
    assert (await batcher.predict([[1, 2, 3]])).outputs["y"].dtype == np.float32
    assert (await batcher.predict(np.ones((1, 3)))).outputs["y"].tolist() == [[2.0, 2.0, 2.0]]


async def test_unsafe_cast_to_integer_model_is_refused(make_batcher):
    batcher = make_batcher(GatedModel(dtype="int32"))
    with pytest.raises(InvalidInput, match="float64, which cannot be cast to int32"):
        await batcher.predict([[1.5, 2, 3]])
    assert (await batcher.predict([[1, 2, 3]])).outputs["y"].tolist() == [[2, 4, 6]]


async def test_multi_input_model_rows_must_agree(make_batcher):
    runner = CallableRunner(
        lambda a, b: {"s": a.sum(axis=1) + b[:, 0]},
        inputs={"a": ("float32", (None, 2)), "b": ("int64", (None, 1))},
    )
    batcher = make_batcher(runner)
    with pytest.raises(InvalidInput, match="input 'b' has 1 rows but input 'a' has 2"):
        await batcher.predict({"a": [[1, 2], [3, 4]], "b": [[1]]})
    with pytest.raises(InvalidInput, match="this model has 2 inputs; pass a mapping"):
        await batcher.predict([[1, 2]])
    result = await batcher.predict({"a": [[1, 2], [3, 4]], "b": [[10], [20]]})
    assert result.outputs["s"].tolist() == [13.0, 27.0]


async def test_poisoned_request_is_isolated_by_bisection(make_batcher):
    model = GatedModel(poison=666.0)
    batcher = make_batcher(model, max_batch_size=8, max_latency=60.0)
    running = await occupy(model, batcher)
    values = [1, 2, 666, 4, 5, 6, 666, 8]
    tasks = [asyncio.ensure_future(batcher.predict(rows(v))) for v in values]
    await wait_until(lambda: accepted(batcher) == 9)
    model.release()
    await running
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for v, outcome in zip(values, outcomes, strict=True):
        if v == 666:
            assert isinstance(outcome, ModelError)
            assert "failed on this request: ValueError: poisoned row in batch" in str(outcome)
            assert isinstance(outcome.__cause__, ValueError)
        else:
            np.testing.assert_array_equal(outcome.outputs["y"], rows(v) * 2)
    snap = batcher.snapshot()
    assert snap["errors"] == 2
    assert snap["completed"] == 7
    assert snap["bisect_calls"] > 0
    # The batcher is healthy afterwards.
    assert (await batcher.predict(rows(9))).batch.size == 1


@pytest.mark.parametrize(
    "error", [PredictTimeout("the engine did not answer"), ModelError("the engine is unreachable")]
)
async def test_a_runner_failing_the_whole_batch_is_not_bisected(make_batcher, error):
    """PredictTimeout / ModelError raised by the runner reach every request as they are."""
    model = GatedModel()
    batcher = make_batcher(model, max_batch_size=8, max_latency=60.0)
    running = await occupy(model, batcher)
    tasks = [asyncio.ensure_future(batcher.predict(rows(v))) for v in (1, 2, 3)]
    await wait_until(lambda: accepted(batcher) == 4)
    calls = []

    def fail(inputs):
        calls.append(len(inputs["x"]))
        raise error

    model.run = fail
    model.release()
    await running
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert calls == [3]  # one call: no bisection
    for outcome in outcomes:
        assert type(outcome) is type(error)
        assert str(outcome) == f"model 'm': {error}"
        assert outcome.model == "m" and outcome.__cause__ is error
    snap = batcher.snapshot()
    assert (snap["bisect_calls"], snap["timeouts"] + snap["errors"]) == (0, 3)
    assert snap["timeouts"] == (3 if isinstance(error, PredictTimeout) else 0)


def _wrong_row_count(x):
    return x[:-1]


def _exits(x):
    raise SystemExit("model called exit()")


@pytest.mark.parametrize(
    ("misbehaviour", "message"), [(_wrong_row_count, "expected 1 rows"), (_exits, "SystemExit: model called exit")]
)
async def test_batcher_survives_a_misbehaving_model_call(make_batcher, misbehaviour, message):
    calls = []

    def model(x):
        calls.append(len(x))
        return misbehaviour(x) if len(calls) == 1 else x

    batcher = make_batcher(CallableRunner(model, inputs={"x": ("float32", (None, 1))}))
    with pytest.raises(ModelError, match=message):
        await batcher.predict([[1.0]])
    assert (await batcher.predict([[2.0]])).value().tolist() == [[2.0]]


async def test_every_request_answered_exactly_once_under_chaos(make_batcher):
    model = GatedModel(poison=-1.0, delay=0.001)
    batcher = make_batcher(model, max_batch_size=4, max_queue_size=64, max_latency=0.002)
    rng = np.random.default_rng(0)
    tasks = []
    for i in range(200):
        value = -1.0 if i % 17 == 0 else float(i)
        timeout = 0.003 if i % 5 == 0 else None
        n = int(rng.integers(1, 7))
        tasks.append(asyncio.ensure_future(batcher.predict(rows(*([value] * n)), timeout=timeout)))
        if i % 11 == 0:
            await asyncio.sleep(0)
            tasks[-1].cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    kinds = {"ok": 0, "timeout": 0, "cancelled": 0, "error": 0, "overloaded": 0}
    for outcome in outcomes:
        if isinstance(outcome, asyncio.CancelledError):
            kinds["cancelled"] += 1
        elif isinstance(outcome, PredictTimeout):
            kinds["timeout"] += 1
        elif isinstance(outcome, ModelError):
            kinds["error"] += 1
        elif isinstance(outcome, Overloaded):
            kinds["overloaded"] += 1
        else:
            kinds["ok"] += 1
    await wait_until(lambda: batcher.snapshot()["queue_depth"] == 0 and batcher.snapshot()["in_flight_batches"] == 0)
    snap = batcher.snapshot()
    assert snap["requests"] + snap["rejected"] == 200
    assert snap["rejected"] == kinds["overloaded"]
    # Each accepted request is counted under exactly one outcome. A caller cancelled
    # just as its answer was decided sees CancelledError while the batcher counted the
    # answer, so the caller-side tallies may be lower, never higher.
    assert snap["completed"] + snap["timeouts"] + snap["errors"] + snap["cancelled"] == snap["requests"]
    assert snap["completed"] >= kinds["ok"]
    assert snap["timeouts"] >= kinds["timeout"]
    assert snap["errors"] >= kinds["error"]
    assert snap["cancelled"] <= kinds["cancelled"]


async def test_stats_after_known_workload(make_batcher):
    model = GatedModel()
    batcher = make_batcher(model, max_batch_size=4, max_latency=60.0)
    first = await occupy(model, batcher)
    tasks = [asyncio.ensure_future(batcher.predict(rows(i))) for i in range(1, 11)]
    await wait_until(lambda: accepted(batcher) == 11)
    model.release()
    await asyncio.gather(first, *tasks)
    snap = batcher.snapshot()
    assert model.sizes == [1, 4, 4, 2]
    assert snap["requests"] == 11
    assert snap["rows"] == 11
    assert snap["batches"] == 4
    assert snap["batch_size_histogram"] == {"1": 1, "2": 1, "4": 2}
    assert snap["mean_batch_size"] == 2.75
    assert snap["latency_ms"]["end_to_end"]["count"] == 11
    assert snap["latency_ms"]["run"]["count"] == 4
    assert snap["queue_depth"] == 0
    assert snap["padding_rows"] == 0


async def test_close_drains_queue_then_refuses(make_batcher):
    model = GatedModel(delay=0.01)
    batcher = make_batcher(model, max_batch_size=2)
    tasks = [asyncio.ensure_future(batcher.predict(rows(i))) for i in range(6)]
    await asyncio.sleep(0)
    await asyncio.to_thread(batcher.close, 5)
    results = await asyncio.gather(*tasks)
    assert [r.outputs["y"][0, 0] for r in results] == [0, 2, 4, 6, 8, 10]
    with pytest.raises(Overloaded, match="shutting down"):
        await batcher.predict(rows(1))


async def test_variable_row_shapes_are_batched_by_shape(make_batcher):
    seen = []

    def model(tokens):
        seen.append(tokens.shape)
        return {"n": tokens.sum(axis=1)}

    runner = CallableRunner(model, inputs={"tokens": ("int32", (None, None))})
    batcher = make_batcher(runner, max_batch_size=8)
    requests = [[[1, 2]], [[1, 2, 3]], [[3, 4]], [[5, 6, 7]]]
    results = await asyncio.gather(*(batcher.predict(r) for r in requests))
    assert [r.outputs["n"].tolist() for r in results] == [[3], [6], [7], [18]]
    assert all(len(s) == 2 for s in seen)


async def test_string_inputs(make_batcher):
    runner = CallableRunner(
        lambda s: np.array([len(v) for v in s]), inputs={"s": ("string", (None,))}, outputs=("length",)
    )
    batcher = make_batcher(runner, max_batch_size=4, allowed_batch_sizes=(4,))
    result = await batcher.predict(["ab", b"cde"])
    assert result.value().tolist() == [2, 3]
    with pytest.raises(InvalidInput, match="expects strings, found int"):
        await batcher.predict(np.array([1, "a"], dtype=object))


async def test_concurrent_batches_for_thread_safe_runners(make_batcher):
    model = GatedModel()
    model.thread_safe = True
    batcher = make_batcher(model, max_batch_size=1, max_concurrent_batches=2)
    model.hold()
    tasks = [asyncio.ensure_future(batcher.predict(rows(i))) for i in range(2)]
    # Both batches enter the model while it is held: they run at the same time.
    await wait_until(lambda: len(model.batches) == 2)
    model.release()
    await asyncio.gather(*tasks)


def test_concurrent_batches_need_a_thread_safe_runner():
    from tfbatch_django.batching import BatchConfig, Batcher

    with pytest.raises(ValueError, match="needs a thread-safe runner"):
        Batcher(GatedModel(), BatchConfig(max_concurrent_batches=2))


def test_sync_callers_from_threads_share_batches(make_batcher):
    model = GatedModel()
    batcher = make_batcher(model, max_batch_size=16, max_latency=60.0)
    model.hold()
    first = threading.Thread(target=batcher.predict_sync, args=(rows(0),))
    first.start()
    assert model.entered.wait(5)
    results: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        results[i] = batcher.predict_sync(rows(i)).outputs["y"]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(1, 9)]
    for t in threads:
        t.start()
    deadline = threading.Event()
    while accepted(batcher) < 9 and not deadline.wait(0.001):
        pass
    model.release()
    for t in [*threads, first]:
        t.join(10)
    assert model.sizes == [1, 8]
    for i, y in results.items():
        np.testing.assert_array_equal(y, rows(i) * 2)


async def test_a_split_request_is_stitched_in_row_order_when_its_batches_finish_out_of_order(make_batcher):
    first_call = threading.Event()
    let_first_finish = threading.Event()
    calls: list[int] = []

    def model(x):
        calls.append(len(calls))
        if len(calls) == 1:  # the first batch (the request's first rows) waits...
            first_call.set()
            assert let_first_finish.wait(10)
        return {"y": x * 2}

    runner = CallableRunner(model, inputs={"x": ("float32", (None, 1))}, outputs=("y",), thread_safe=True)
    batcher = make_batcher(runner, max_batch_size=4, max_concurrent_batches=2)
    x = np.arange(7, dtype=np.float32).reshape(7, 1)
    task = asyncio.ensure_future(batcher.predict(x, timeout=30))  # rows 0-3, then 4-6
    await asyncio.to_thread(first_call.wait, 10)
    await wait_until(lambda: len(calls) == 2)  # ...while the second finishes first
    await asyncio.sleep(0.05)
    let_first_finish.set()
    result = await task
    np.testing.assert_array_equal(result.outputs["y"], x * 2)
    assert result.batch.batches == 2


@pytest.mark.parametrize("gathered", [True, False])
async def test_a_caller_is_not_blamed_for_the_rows_of_one_answered_while_the_call_ran(make_batcher, gathered):
    """A failing call held a poisonous request whose deadline passed meanwhile: the one
    caller left is run alone before it is blamed (it was blamed at once, and got the
    poisonous caller's ModelError). Gathered, the two are one group, with a deadline each."""
    from tests.batching.test_coalesce import SteppedModel, alone

    model = SteppedModel(poison=9.0)
    batcher = make_batcher(model, max_batch_size=8)
    first = asyncio.ensure_future(batcher.predict(rows(0)))
    await model.next_call()  # the model is busy: the next two queue together
    form = (lambda x: x) if gathered else alone
    poisonous = asyncio.ensure_future(batcher.predict(form(rows(9)), timeout=0.3))
    innocent = asyncio.ensure_future(batcher.predict(form(rows(1)), timeout=30))
    await wait_until(lambda: batcher.queue_depth() == 2)
    model.step()
    await first
    await model.next_call()  # their batch runs, and will fail
    with pytest.raises(PredictTimeout, match="while its batch ran"):
        await poisonous  # answered at its deadline; its rows are still in the call
    model.step()  # the call fails
    await model.next_call()  # the innocent caller alone
    model.step()
    result = await innocent
    np.testing.assert_array_equal(result.outputs["y"], rows(1) * 2)
    assert [b[:, 0].tolist() for b in model.batches] == [[0.0], [9.0, 1.0], [1.0]]
