"""The batcher: callers on any thread or event loop, one scheduler thread, executor threads.

Callers validate their rows in their own thread, post a ``Request`` to the ``Mailbox``
and wait: on an ``asyncio.Future`` of their own loop, or on a lock when they are
threads. The ``Scheduler`` thread forms batches and decides every answer; executor
threads only call the model. Because no asyncio object is shared, the batcher does not
care which loop (if any) a caller runs on, and outlives the loops.
"""

from __future__ import annotations

import asyncio
import logging
import numbers
import os
import queue
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..exceptions import InvalidInput, ModelError, ModelLoadError, Overloaded, TFBatchError
from .assemble import filler_rows
from .coalesce import Gatherer
from .config import MAX_TIMEOUT, BatchConfig
from .execute import Batch, check_outputs, execute, stage
from .group import GroupRequest
from .mailbox import Mailbox
from .policy import DispatchPolicy
from .request import Prediction, Request, SyncWaiter
from .runner import Runner, call_model, stages
from .scheduler import Scheduler
from .spec import Inputs, TensorSpec, castable_to, coerce_inputs
from .stats import BatcherStats

__all__ = ["MAX_TIMEOUT", "Batcher", "check_timeout"]

logger = logging.getLogger("tfbatch_django.batching")


def check_timeout(timeout: object, model: str | None = None) -> float | None:
    """A caller's timeout in seconds, checked: a positive number; huge or infinite means none.

    NaN, zero, negative numbers and non-numbers are ``InvalidInput`` (a ``ValueError``)
    raised in the caller's thread: a bad deadline never reaches the scheduler.
    """
    if type(timeout) is float and 0.0 < timeout < MAX_TIMEOUT:
        # The usual (what the serving doors and the worker server pass): 0.04 µs, against
        # 0.39 µs for the checks below (``numbers.Real`` is an ABC), per timed call (timeit).
        return timeout
    if isinstance(timeout, bool | np.bool_) or not isinstance(timeout, numbers.Real):
        raise InvalidInput(f"timeout must be a number of seconds, got {type(timeout).__name__}", model=model)
    seconds = float(timeout)
    if not seconds > 0:  # also NaN
        raise InvalidInput(f"timeout must be a positive number of seconds, got {timeout!r}", model=model)
    return None if seconds >= MAX_TIMEOUT else seconds


def abandoned(batch: Batch) -> bool:
    """Whether every caller in ``batch`` was answered or gave up: then it is not run.

    A group counts as given up once all its members have (``GroupRequest.abandoned``);
    the scheduler then counts them all as cancelled (``Scheduler._complete``).
    """
    return all(
        s.request.done or s.request.cancelled or (type(s.request) is GroupRequest and s.request.abandoned())
        for s in batch.segments
    )


class Batcher:
    """Batches concurrent requests for one model. Thread-safe; loop-agnostic.

    Create it, ``start()`` it (which warms the model up), then call ``predict`` from
    coroutines or ``predict_sync`` from threads, and ``close()`` it when done.
    ``policy`` replaces the default dispatch policy (``AdaptivePolicy``; see ``policy``).
    """

    def __init__(
        self,
        runner: Runner,
        config: BatchConfig | None = None,
        *,
        name: str = "model",
        stats: BatcherStats | None = None,
        policy: DispatchPolicy | None = None,
    ) -> None:
        self.name = name
        self.runner = runner
        self.config = config or BatchConfig()
        self.specs: Mapping[str, TensorSpec] = dict(runner.input_specs)
        if not self.specs:
            raise ValueError(f"model {name!r}: the runner declares no inputs")
        if self.config.max_concurrent_batches > 1 and not runner.thread_safe:
            raise ValueError(
                f"model {name!r}: max_concurrent_batches > 1 needs a thread-safe runner; {type(runner).__name__} is not"
            )
        self.stats = stats or BatcherStats(self.config.max_batch_size, name=name)
        self.warmup_report: list[dict[str, Any]] = []
        self.pid = os.getpid()
        self._keyed = not all(s.fully_defined for s in self.specs.values())
        self._default_timeout = self.config.default_timeout
        only = next(iter(self.specs.values()))
        # (name, dtype, row shape) of a single numeric input with every dimension known.
        self._fits = (
            (only.name, only.dtype, only.exact_row_shape)
            if len(self.specs) == 1 and not only.is_string and only.exact_row_shape is not None
            else None
        )
        self._mailbox = Mailbox(name, self.config.max_queue_size, self.stats)
        #: Coroutine callers of a one-input model, gathered per loop iteration: arrays of its
        #: row shape, each with its own deadline (the model's ``TIMEOUT_MS`` or its own).
        self._gatherer = (
            Gatherer(name, self._fits[0], self._mailbox, self.stats, self._default_timeout)
            if self._fits is not None
            else None
        )
        self._gather_dtype = self._fits[1] if self._fits is not None else None
        self._gather_row = self._fits[2] if self._fits is not None else None
        #: Other dtypes a gathered array may have: those the batch assembly casts from
        #: (JSON's float64 and int64, ``uint8`` images for a float model).
        self._gather_casts = castable_to(self._fits[1]) if self._fits is not None else frozenset()
        self._run_queue: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
        #: Runners with a ``stage`` step get a staging thread between scheduler and executors.
        self.staging = stages(runner)
        self._stage_queue: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
        self._scheduler = Scheduler(
            name,
            self.specs,
            self.config,
            self.stats,
            self._mailbox,
            self._stage_queue if self.staging else self._run_queue,
            policy,
        )
        self._threads: list[threading.Thread] = []
        self._scheduler_thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Batcher:
        """Warm the model up (when configured) and start the threads. Idempotent."""
        if self._scheduler_thread is not None:
            return self
        if self.config.warmup:
            self.warmup()
        for i in range(self.config.max_concurrent_batches):
            t = threading.Thread(target=self._executor_main, name=f"tfbatch-run-{self.name}-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        if self.staging:
            t = threading.Thread(target=self._staging_main, name=f"tfbatch-stage-{self.name}", daemon=True)
            t.start()
            self._threads.append(t)
        self._scheduler_thread = threading.Thread(
            target=self._scheduler.run, name=f"tfbatch-sched-{self.name}", daemon=True
        )
        self._scheduler_thread.start()
        with self._mailbox.lock:
            self._mailbox.open = True
        return self

    def warmup(self) -> list[dict[str, Any]]:
        """Run every batch size the model will see once, so no request pays a trace/compile."""
        report: list[dict[str, Any]] = []
        undefined = [s.name for s in self.specs.values() if not s.fully_defined]
        if undefined:
            logger.info("model %r: no warm-up, inputs %s have unknown dimensions", self.name, undefined)
            self.warmup_report = [{"skipped": f"inputs with unknown dimensions: {', '.join(undefined)}"}]
            return self.warmup_report
        for size in self.config.warmup_sizes:
            inputs = {
                name: filler_rows(spec, size, tuple(d or 0 for d in (spec.row_shape or ())))
                for name, spec in self.specs.items()
            }
            t0 = time.perf_counter()
            try:
                check_outputs(call_model(self.runner, inputs), size)
            except Exception as exc:
                raise ModelLoadError(
                    f"model {self.name!r} failed its warm-up at batch size {size}: {type(exc).__name__}: {exc}",
                    model=self.name,
                ) from exc
            report.append({"size": size, "ms": round((time.perf_counter() - t0) * 1e3, 3)})
        self.warmup_report = report
        logger.info("model %r warmed up: %s", self.name, report)
        return report

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking requests, finish the queued ones, stop the threads.

        Requests still unanswered after ``timeout`` seconds get ``Overloaded``.
        """
        if self._gatherer is not None:
            self._gatherer.drain(min(timeout, 1.0))
        self._mailbox.close()
        thread = self._scheduler_thread
        if thread is None:
            self.runner.close()
            return
        thread.join(timeout)
        if thread.is_alive():
            logger.warning("model %r: batcher did not drain within %.1fs", self.name, timeout)
            return
        for t in self._threads:
            t.join(timeout)
        self.runner.close()

    @property
    def alive(self) -> bool:
        thread = self._scheduler_thread
        return thread is not None and thread.is_alive() and self.pid == os.getpid()

    # ------------------------------------------------------------------ callers

    async def predict(self, inputs: Inputs, *, timeout: float | None = None) -> Prediction:
        """Submit rows and await their outputs, from any event loop."""
        return await self.submit_async(inputs, timeout)

    def submit_async(self, inputs: Inputs, timeout: float | None = None) -> asyncio.Future[Prediction]:
        """``predict``'s first half: the future of the answer, on the running loop.

        Cancelling the future withdraws the request, as cancelling ``predict`` does.
        ``api.predict_detailed`` awaits it itself, so a call costs one coroutine, not two
        (bench_batcher: a coroutine is ~0.2 µs, and one more object alive per request in
        flight for the garbage collector to walk).
        """
        loop = asyncio.get_running_loop()
        gatherer = self._gatherer
        if gatherer is not None:
            # One array for the model's one input, bare or as ``{name: array}`` (what the
            # serving doors pass), of its row shape and a dtype it takes or is cast from.
            array = inputs if type(inputs) is np.ndarray else self._only_array(inputs)
            if (
                array is not None
                and array.ndim
                and array.shape[1:] == self._gather_row
                and array.shape[0]
                and (array.dtype == self._gather_dtype or array.dtype in self._gather_casts)
            ):
                if timeout is None:
                    return gatherer.add(loop, array)
                try:  # checked here, in the caller's frame, as ``_submit`` does
                    seconds = check_timeout(timeout, self.name)
                except TFBatchError:
                    self.stats.record_request("invalid")
                    raise
                return gatherer.add_timed(loop, array, seconds)
        future: asyncio.Future[Prediction] = loop.create_future()
        request = self._submit(inputs, timeout, None, loop, future)
        future.add_done_callback(request.on_future_done)
        return future

    def _only_array(self, inputs: Inputs) -> np.ndarray | None:
        """The array of ``{input name: array}`` for a one-input model, else None."""
        if type(inputs) is dict and len(inputs) == 1 and self._fits is not None:
            array = inputs.get(self._fits[0])
            if type(array) is np.ndarray:
                return array
        return None

    def predict_sync(self, inputs: Inputs, *, timeout: float | None = None) -> Prediction:
        """Submit rows and block this thread until their outputs (or an error) are in."""
        waiter = SyncWaiter()
        request = self._submit(inputs, timeout, waiter)
        try:
            while not waiter.wait(1.0):
                if not self.alive:
                    raise ModelError(f"model {self.name!r}: the batcher stopped", model=self.name)
        except BaseException:
            request.cancelled = True
            raise
        if waiter.error is not None:
            raise waiter.error
        assert waiter.value is not None
        return waiter.value

    def _submit(
        self,
        inputs: Inputs,
        timeout: float | None,
        waiter: SyncWaiter | None,
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[Prediction] | None = None,
    ) -> Request:
        try:
            timeout = self._default_timeout if timeout is None else check_timeout(timeout, self.name)
            fits = self._fits
            if (
                fits is not None
                and type(inputs) is np.ndarray
                and inputs.ndim
                and inputs.dtype == fits[1]
                and inputs.shape[1:] == fits[2]
            ):
                # Hot path (coerce_inputs' own, inlined): one array that already fits.
                arrays, rows = {fits[0]: inputs}, inputs.shape[0]
                if not rows:
                    raise InvalidInput(f"input {fits[0]!r} has no rows", model=self.name, input=fits[0])
            else:
                arrays, rows = coerce_inputs(self.specs, inputs, model=self.name, cast=False)  # cast in assemble
        except TFBatchError:
            self.stats.record_request("invalid")
            raise
        now = time.perf_counter()
        key = tuple(a.shape[1:] for a in arrays.values()) if self._keyed else None
        request = Request(arrays, rows, None if timeout is None else now + timeout, now, waiter, key, loop, future)
        # Counted as accepted by the mailbox, under its lock, before the scheduler can
        # see it: no snapshot shows it answered but not accepted.
        refusal = self._mailbox.post(request)
        if refusal is not None:
            self.stats.record_request("overloaded")
            raise Overloaded(refusal, model=self.name)
        return request

    @property
    def outstanding(self) -> int:
        """Requests accepted and not answered yet (the scheduler's count; 0 when idle)."""
        return self._scheduler.outstanding

    def queue_depth(self) -> int:
        return self._mailbox.depth

    def snapshot(self) -> dict[str, Any]:
        """Statistics as a plain dict (see ``BatcherStats.snapshot``)."""
        return self.stats.snapshot(queue_depth=self._mailbox.depth, in_flight_batches=self._scheduler.running_batches)

    # ------------------------------------------------------------------ executor thread

    def _staging_main(self) -> None:
        """Stage each batch (host -> device) while the executor runs the one before it."""
        while True:
            batch = self._stage_queue.get()
            if batch is None:
                for _ in range(self.config.max_concurrent_batches):
                    self._run_queue.put(None)
                return
            if not abandoned(batch):
                stage(self.runner, batch)
            self._run_queue.put(batch)

    def _executor_main(self) -> None:
        while True:
            batch = self._run_queue.get()
            if batch is None:
                return
            if abandoned(batch):
                batch.skipped = True
            else:
                execute(self.runner, self.specs, self.config.allowed_batch_sizes, batch)
            self._mailbox.post_finished(batch)
