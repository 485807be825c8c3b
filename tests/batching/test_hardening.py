"""Issue 9's batcher defects, each with the test that would have caught it."""

from __future__ import annotations

import asyncio
import math
import re
import threading

import numpy as np
import pytest

from tests.batching.accounting import assert_accounted
from tests.batching.test_batcher import accepted, occupy, rows, wait_until
from tests.fakes import GatedModel
from tfbatch_django.batching import BatchConfig, Batcher, CallableRunner, Runner, TensorSpec, coerce_inputs
from tfbatch_django.batching.mailbox import MAX_SLEEP, Mailbox
from tfbatch_django.batching.policy import WakeRule
from tfbatch_django.exceptions import InvalidInput, ModelError

# -- defect 1: one huge deadline must not fail everyone's requests


@pytest.mark.parametrize("timeout", [1e13, 1e10, math.inf, 1e308])
async def test_a_huge_deadline_harms_nobody(make_batcher, timeout):
    model = GatedModel()
    batcher = make_batcher(model, max_batch_size=8, max_latency=60.0)
    # The model is busy, so the far-deadline request waits in the queue and the
    # scheduler goes to sleep with that deadline as its next wake-up.
    first = await occupy(model, batcher)
    huge = asyncio.ensure_future(batcher.predict(rows(1), timeout=timeout))
    await wait_until(lambda: accepted(batcher) == 2)
    others = [asyncio.ensure_future(batcher.predict(rows(i))) for i in range(2, 6)]
    await wait_until(lambda: accepted(batcher) == 6)
    model.release()
    results = await asyncio.gather(first, huge, *others)
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result.outputs["y"], rows(i) * 2)
    assert batcher.snapshot()["errors"] == 0
    assert batcher.alive
    assert (await batcher.predict(rows(9), timeout=timeout)).batch.size == 1


@pytest.mark.parametrize("timeout", [np.float32(5.0), np.int64(5), 5, 0.5])
def test_any_real_number_is_a_timeout(make_batcher, timeout):
    batcher = make_batcher(GatedModel())
    assert batcher.predict_sync(rows(3), timeout=timeout).outputs["y"][0, 0] == 6


def test_a_huge_deadline_from_a_thread(make_batcher):
    batcher = make_batcher(GatedModel())
    assert batcher.predict_sync(rows(3), timeout=1e13).outputs["y"][0, 0] == 6
    assert batcher.alive


@pytest.mark.parametrize("timeout", [math.nan, 0, -1.0, -math.inf, "5", True, np.float64("nan"), None.__class__])
async def test_a_bad_timeout_is_invalid_input(make_batcher, timeout):
    batcher = make_batcher(GatedModel())
    with pytest.raises(InvalidInput, match="timeout must be a"):
        await batcher.predict(rows(1), timeout=timeout)
    with pytest.raises(InvalidInput, match="timeout must be a"):
        await asyncio.to_thread(batcher.predict_sync, rows(1), timeout=timeout)
    snap = batcher.snapshot()
    assert snap["invalid"] == 2
    assert snap["requests"] == 0


def test_config_deadlines_are_checked():
    with pytest.raises(ValueError, match="default_timeout"):
        BatchConfig(default_timeout=math.nan)
    with pytest.raises(ValueError, match="max_latency"):
        BatchConfig(max_latency=math.nan)
    with pytest.raises(ValueError, match="max_latency"):
        BatchConfig(max_latency=math.inf)
    assert BatchConfig(default_timeout=math.inf).default_timeout is None
    assert BatchConfig(default_timeout=1e13).default_timeout is None


def test_the_scheduler_never_waits_longer_than_max_sleep(monkeypatch):
    # However far away the next wake-up, one wait is bounded (a queue timeout of 1e13 s
    # raises OverflowError).
    mailbox = Mailbox("m", 8)
    waits: list[float | None] = []

    class Recorder:
        def get(self, timeout: float | None = None) -> None:
            waits.append(timeout)

        def get_nowait(self) -> None:
            import queue

            raise queue.Empty

    monkeypatch.setattr(mailbox, "_wake", Recorder())
    for wake_at in (1e13, math.inf, 1e308):
        mailbox.sleep(wake_at, WakeRule())
    assert waits == [MAX_SLEEP] * 3


# -- defect 3: a request cancelled during bisection is still finished


class FailOnceHeld(Runner):
    """Fails any batch holding the poison row; the first call waits for the test first."""

    def __init__(self) -> None:
        self.input_specs = {"x": TensorSpec.of("x", "float32", (None, 1))}
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.calls: list[list[float]] = []

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        self.calls.append(x[:, 0].tolist())
        if len(self.calls) == 1:
            self.entered.set()
            assert self.gate.wait(10)
        if np.any(x == -1):
            raise ValueError("poison")
        return {"y": x * 2}


async def test_a_request_cancelled_during_bisection_is_counted(make_batcher):
    runner = FailOnceHeld()
    batcher = make_batcher(runner, max_batch_size=8, max_latency=60.0)
    tasks = [asyncio.ensure_future(batcher.predict([[v]])) for v in (-1.0, 2.0, 3.0)]
    await asyncio.to_thread(runner.entered.wait, 10)
    tasks[1].cancel()  # cancelled while its failing batch runs: bisection drops it
    await asyncio.gather(tasks[1], return_exceptions=True)
    runner.gate.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(outcomes[0], ModelError)
    assert isinstance(outcomes[1], asyncio.CancelledError)
    assert outcomes[2].outputs["y"].tolist() == [[6.0]]
    assert runner.calls[0] == [-1.0, 2.0, 3.0]
    assert [2.0] not in runner.calls[1:]  # the cancelled one was not re-run
    assert_accounted(batcher)
    snap = batcher.snapshot()
    assert (snap["completed"], snap["errors"], snap["cancelled"]) == (1, 1, 1)


def test_outstanding_returns_to_zero_after_mixed_outcomes():
    # The invariant on a batcher that saw every outcome, checked directly.
    def model(x: np.ndarray) -> np.ndarray:
        if np.any(x < 0):
            raise ValueError("negative")
        return x

    batcher = Batcher(CallableRunner(model, inputs={"x": ("float32", (None, 1))}), BatchConfig(warmup=False)).start()
    try:
        assert batcher.predict_sync([[1.0]]).value().tolist() == [[1.0]]
        with pytest.raises(ModelError):
            batcher.predict_sync([[-1.0]])
        with pytest.raises(InvalidInput):
            batcher.predict_sync([["a"]])
        assert_accounted(batcher)
    finally:
        batcher.close()


# -- defect 4: a runner that reuses its output buffer must not leak other callers' rows


class ReusedBuffer(Runner):
    """Writes every batch's outputs into the same buffer, as some native runtimes do."""

    def __init__(self, *, fresh: bool = False) -> None:
        self.input_specs = {"x": TensorSpec.of("x", "float32", (None, 3))}
        self.fresh_outputs = fresh
        self.buffer = np.zeros((64, 3), np.float32)
        self.handed: list[np.ndarray] = []

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        out = self.buffer[: len(x)]
        np.multiply(x, 2, out=out)
        self.handed.append(out)
        return {"y": out}


async def test_a_runner_reusing_its_output_buffer_leaks_nothing(make_batcher):
    runner = ReusedBuffer()
    batcher = make_batcher(runner, max_batch_size=4)
    results = await asyncio.gather(*(batcher.predict(rows(i)) for i in range(40)))
    assert len(runner.handed) >= 10  # many batches went through the one buffer
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result.outputs["y"], rows(i) * 2)
        assert not np.shares_memory(result.outputs["y"], runner.buffer)


async def test_fresh_outputs_are_handed_out_without_a_copy(make_batcher):
    # The promise is the runner's to make: the batcher then skips the copy.
    runner = ReusedBuffer(fresh=True)
    batcher = make_batcher(runner, max_batch_size=4)
    result = await batcher.predict(rows(1))
    assert np.shares_memory(result.outputs["y"], runner.buffer)


# -- defect 5: an output no client can be sent is the model's error, everywhere


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (lambda x: [{1, 2}] * len(x), "holds a set"),
        (lambda x: np.array([object()] * len(x)), "holds a object"),
        (lambda x: x.astype(np.complex64), "dtype complex64"),
        (lambda x: {1, 2}, "is not an array|shape"),
        (lambda x: np.array(["2026-01-01"] * len(x), dtype="datetime64[D]"), "dtype datetime64"),
    ],
)
async def test_an_unanswerable_output_is_a_model_error(make_batcher, output, message):
    batcher = make_batcher(CallableRunner(output, inputs={"x": ("float32", (None, 1))}), max_batch_size=4)
    results = await asyncio.gather(*(batcher.predict([[float(i)]]) for i in range(3)), return_exceptions=True)
    for result in results:
        assert isinstance(result, ModelError)
        assert "failed on this request" in str(result)
    assert isinstance(results[0].__cause__, TypeError | ValueError)
    assert re.search(message, str(results[0].__cause__))
    snap = batcher.snapshot()
    assert (snap["completed"], snap["errors"]) == (0, 3)


async def test_string_and_bool_outputs_are_answerable(make_batcher):
    def model(x: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "label": np.array([b"cat", "dog", b"\xff"][: len(x)] + [b""] * max(0, len(x) - 3), dtype=object),
            "flag": x[:, 0] > 0,
            "text": np.array(["a"] * len(x)),
        }

    batcher = make_batcher(CallableRunner(model, inputs={"x": ("float32", (None, 1))}), max_batch_size=4)
    result = await batcher.predict([[1.0], [-1.0]])
    assert result.outputs["label"].tolist() == [b"cat", "dog"]
    assert result.outputs["flag"].tolist() == [True, False]
    assert batcher.snapshot()["completed"] == 1


# -- the inlined fast path for one fitting array refuses what coerce_inputs refuses


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.float32(1.0), "is a scalar"),
        (np.array(1.0, np.float32), "is a scalar"),
        (np.ones((0,), np.float32), "has no rows"),
        (np.ones((2, 1), np.float32), "expected rank 1"),
    ],
)
async def test_fast_path_checks_like_the_slow_one(make_batcher, value, message):
    batcher = make_batcher(CallableRunner(lambda x: x, inputs={"x": ("float32", (None,))}))
    with pytest.raises(InvalidInput, match=message):
        await batcher.predict(value)
    assert (await batcher.predict(np.array([1.5], np.float32))).value().tolist() == [1.5]


# -- issue 8 part 3: uint8 rows for a float model are copied once, cast in that copy


async def test_uint8_rows_for_a_float_model(make_batcher):
    seen: list[np.dtype] = []

    def model(x: np.ndarray) -> np.ndarray:
        seen.append(x.dtype)
        return x / 255.0

    runner = CallableRunner(model, inputs={"x": ("float32", (None, 2, 2, 3))})
    batcher = make_batcher(runner, max_batch_size=8)
    images = np.random.default_rng(0).integers(0, 256, (3, 2, 2, 3), dtype=np.uint8)
    arrays, _ = coerce_inputs(batcher.specs, images, cast=False)
    assert arrays["x"] is images  # not copied (nor cast) at submit
    results = await asyncio.gather(*(batcher.predict(images[i : i + 1]) for i in range(3)))
    for i, result in enumerate(results):
        np.testing.assert_allclose(result.outputs["output_0"], images[i : i + 1].astype(np.float32) / 255.0)
    assert set(seen) == {np.dtype(np.float32)}


def test_an_answered_caller_is_already_counted(make_batcher):
    # Answers are released after the statistics count them: a caller that checks the
    # stats right after its answer (threads and coroutines alike) finds itself there.
    def model(x: np.ndarray) -> np.ndarray:
        if np.any(x < 0):
            raise ValueError("negative")
        return x

    batcher = make_batcher(CallableRunner(model, inputs={"x": ("float32", (None, 1))}))
    for i in range(1, 31):
        batcher.predict_sync([[1.0]])
        assert batcher.snapshot()["completed"] == i
        with pytest.raises(ModelError):
            batcher.predict_sync([[-1.0]])
        assert batcher.snapshot()["errors"] == i

    async def from_a_loop() -> None:
        for i in range(31, 61):
            await batcher.predict([[1.0]])
            assert batcher.snapshot()["completed"] == i

    asyncio.run(from_a_loop())


def test_one_batch_answers_callers_on_several_event_loops(make_batcher):
    model = GatedModel()
    batcher = make_batcher(model, max_batch_size=64, max_latency=60.0)
    model.hold()
    first = threading.Thread(target=batcher.predict_sync, args=(rows(0),))
    first.start()
    assert model.entered.wait(10)
    results: dict[int, list[float]] = {}

    def loop_of_callers(base: int) -> None:
        async def main() -> None:
            got = await asyncio.gather(*(batcher.predict(rows(base + i)) for i in range(5)))
            for i, r in enumerate(got):
                results[base + i] = r.outputs["y"][:, 0].tolist()

        asyncio.run(main())

    loops = [threading.Thread(target=loop_of_callers, args=(base,)) for base in (10, 20, 30)]
    for t in loops:
        t.start()
    end = threading.Event()
    while batcher.snapshot()["requests"] < 16 and not end.wait(0.001):
        pass
    model.release()
    for t in [*loops, first]:
        t.join(10)
    assert model.sizes == [1, 15]  # one batch for the callers of three loops, interleaved
    assert results == {b + i: [2.0 * (b + i)] for b in (10, 20, 30) for i in range(5)}
