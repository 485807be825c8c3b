"""Runners with a ``stage`` step: batch k+1 is staged while batch k runs (events, never timing)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from tests.batching.test_batcher import accepted, rows, wait_until
from tfbatch_django.batching import BatchConfig, Batcher, CallableRunner, Runner, TensorSpec
from tfbatch_django.batching.runner import call_model, stages
from tfbatch_django.exceptions import ModelError


class OnDevice:
    """What a fake ``stage`` returns: the batch, as if copied to a device."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x.copy()


class StagedModel(Runner):
    """y = 2x. Records stage/run events in order; ``run`` can be held; not thread-safe.

    ``run`` only accepts staged batches, so a batch that skipped ``stage`` fails loudly.
    """

    def __init__(self, *, poison: float | None = None, stage_poison: float | None = None) -> None:
        self.input_specs = {"x": TensorSpec.of("x", "float32", (None, 3))}
        self.events: list[tuple[str, list[float]]] = []
        self.poison = poison
        self.stage_poison = stage_poison
        self.gate = threading.Event()
        self.gate.set()
        self.in_run = threading.Event()
        self.staged_while_running = threading.Event()
        self._active = 0
        self.max_active = 0
        self._lock = threading.Lock()
        self.stage_threads: set[str] = set()
        self.run_threads: set[str] = set()

    def stage(self, inputs: dict[str, np.ndarray]) -> OnDevice:
        x = inputs["x"]
        self.stage_threads.add(threading.current_thread().name)
        with self._lock:
            self.events.append(("stage", x[:, 0].tolist()))
            if self._active:
                self.staged_while_running.set()
        if self.stage_poison is not None and np.any(x[:, 0] == self.stage_poison):
            raise ValueError("cannot copy this row to the device")
        return OnDevice(x)

    def run(self, inputs: object) -> dict[str, np.ndarray]:
        assert isinstance(inputs, OnDevice), f"run got {type(inputs).__name__}, not a staged batch"
        self.run_threads.add(threading.current_thread().name)
        with self._lock:
            self._active += 1
            self.max_active = max(self.max_active, self._active)
            self.events.append(("run", inputs.x[:, 0].tolist()))
        try:
            self.in_run.set()
            assert self.gate.wait(10)
            if self.poison is not None and np.any(inputs.x[:, 0] == self.poison):
                raise ValueError("poisoned row")
            return {"y": inputs.x * 2}
        finally:
            with self._lock:
                self._active -= 1


def test_stage_is_detected_and_used_for_direct_calls():
    model = StagedModel()
    assert stages(model)
    assert not stages(CallableRunner(lambda x: x, inputs={"x": ("float32", (None, 1))}))
    out = call_model(model, {"x": rows(1.0)})
    np.testing.assert_array_equal(out["y"], rows(1.0) * 2)
    assert [e[0] for e in model.events] == ["stage", "run"]


async def test_next_batch_is_staged_while_the_current_one_runs(make_batcher):
    model = StagedModel()
    batcher = make_batcher(model, max_batch_size=4, max_latency=60.0)
    assert batcher.staging
    model.gate.clear()
    first = asyncio.ensure_future(batcher.predict(rows(0)))
    await asyncio.to_thread(model.in_run.wait, 10)
    # A full batch queues while batch 1 is held inside run: it is assembled ahead and
    # staged on the staging thread before run returns.
    rest = [asyncio.ensure_future(batcher.predict(rows(i))) for i in range(1, 5)]
    await wait_until(lambda: accepted(batcher) == 5)
    await asyncio.to_thread(model.staged_while_running.wait, 10)
    assert model.events == [("stage", [0.0]), ("run", [0.0]), ("stage", [1.0, 2.0, 3.0, 4.0])]
    model.gate.set()
    results = await asyncio.gather(first, *rest)
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result.outputs["y"], rows(i) * 2)
    assert model.events[-1] == ("run", [1.0, 2.0, 3.0, 4.0])
    assert model.max_active == 1  # not thread-safe: run never overlapped itself
    assert model.stage_threads == {"tfbatch-stage-m"}
    assert model.run_threads == {"tfbatch-run-m-0"}


async def test_many_staged_batches_answer_everyone_in_order(make_batcher):
    model = StagedModel()
    batcher = make_batcher(model, max_batch_size=8)
    results = await asyncio.gather(*(batcher.predict(rows(i, i + 0.5)) for i in range(100)))
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result.outputs["y"], rows(i, i + 0.5) * 2)
    runs = [e[1] for e in model.events if e[0] == "run"]
    staged = [e[1] for e in model.events if e[0] == "stage"]
    assert runs == staged  # every batch staged once, run in the order staged
    assert model.max_active == 1


async def test_bisection_stages_each_piece(make_batcher):
    model = StagedModel(poison=-1.0)
    batcher = make_batcher(model, max_batch_size=8, max_latency=60.0)
    model.gate.clear()
    first = asyncio.ensure_future(batcher.predict(rows(0)))
    await asyncio.to_thread(model.in_run.wait, 10)
    tasks = [asyncio.ensure_future(batcher.predict(rows(v))) for v in (1.0, -1.0, 3.0, 4.0)]
    await wait_until(lambda: accepted(batcher) == 5)
    model.gate.set()
    outcomes = await asyncio.gather(first, *tasks, return_exceptions=True)
    assert isinstance(outcomes[2], ModelError)
    for i in (0, 1, 3, 4):
        assert outcomes[i].outputs["y"][0, 0] == 2 * [0.0, 1.0, -1.0, 3.0, 4.0][i]


@pytest.mark.parametrize("max_batch_size", [1, 4])
async def test_a_failing_stage_is_that_requests_model_error(make_batcher, max_batch_size):
    model = StagedModel(stage_poison=-1.0)
    batcher = make_batcher(model, max_batch_size=max_batch_size)
    outcomes = await asyncio.gather(*(batcher.predict(rows(v)) for v in (1.0, -1.0, 3.0)), return_exceptions=True)
    assert isinstance(outcomes[1], ModelError)
    assert "cannot copy this row" in str(outcomes[1])
    assert [o.outputs["y"][0, 0] for o in (outcomes[0], outcomes[2])] == [2.0, 6.0]


def test_warmup_stages_too():
    model = StagedModel()
    batcher = Batcher(model, BatchConfig(max_batch_size=4)).start()
    try:
        assert [size["size"] for size in batcher.warmup_report] == [1, 4]
        assert [e[0] for e in model.events] == ["stage", "run", "stage", "run"]
    finally:
        batcher.close()
