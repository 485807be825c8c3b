"""The batcher: callers on any thread or event loop, one scheduler thread, executor threads.

Callers validate their rows, append a ``Request`` to an inbox under a short lock and
wait: on an ``asyncio.Future`` of their own loop, or on a lock when they are threads.
The scheduler thread owns everything else: it forms batches (``policy``), assembles
them (``assemble``), hands them to the executor thread(s), answers expired requests
and turns finished batches into per-caller answers, delivered with one
``call_soon_threadsafe`` per loop per batch. Because no asyncio object is shared, the
batcher does not care which loop (if any) a caller runs on, and survives the loops.

Every accepted request is answered exactly once: only the scheduler thread decides
answers, and it sets ``request.done`` when it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..exceptions import ModelError, ModelLoadError, Overloaded, PredictTimeout, TFBatchError
from .assemble import Segment, assemble, filler_rows
from .config import BatchConfig
from .execute import Batch, check_outputs, execute
from .policy import ArrivalTracker, PeakTracker, dispatch_delay
from .request import AsyncWaiter, BatchInfo, Prediction, Request, SyncWaiter, deliver_async
from .runner import Runner
from .spec import Inputs, TensorSpec, coerce_inputs
from .stats import BatcherStats

__all__ = ["Batcher"]

logger = logging.getLogger("tfbatch_django.batching")

_INF = math.inf


class Batcher:
    """Batches concurrent requests for one model. Thread-safe; loop-agnostic.

    Create it, ``start()`` it (which warms the model up), then call ``predict`` from
    coroutines or ``predict_sync`` from threads, and ``close()`` it when done.
    """

    def __init__(
        self,
        runner: Runner,
        config: BatchConfig | None = None,
        *,
        name: str = "model",
        stats: BatcherStats | None = None,
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
        self._seq = itertools.count()

        # Shared with callers, guarded by _lock.
        self._lock = threading.Lock()
        self._inbox: list[Request] = []
        self._finished: list[Batch] = []
        self._depth = 0  # requests accepted and not yet fully dispatched or dropped
        self._queued_rows = 0
        self._closing = False
        # While the scheduler sleeps, a caller wakes it only when its arrival could
        # change the decision: enough rows for a full batch, enough requests for
        # "every recent caller is waiting", or a deadline earlier than the planned wake-up.
        self._sleeping = False
        self._wake_rows = _INF
        self._wake_depth = _INF
        self._sleep_until = _INF
        # Wake-up tokens for the sleeping scheduler. A SimpleQueue rather than an Event:
        # its put/get are C, so waking the scheduler costs a caller ~4 µs, not ~15.
        self._wake: queue.SimpleQueue[None] = queue.SimpleQueue()

        # Scheduler-thread state.
        self._pending: deque[Request] = deque()
        self._pending_rows = 0
        self._deadlines: list[tuple[float, int, Request]] = []
        self._outstanding = 0
        self._recent_peak = 0
        self._peak = PeakTracker()
        self._arrivals = ArrivalTracker()
        self._running: list[Batch] = []
        self._deliveries: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any, BaseException | None]]] = {}
        self._run_queue: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._scheduler: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Batcher:
        """Warm the model up (when configured) and start the threads. Idempotent."""
        if self._scheduler is not None:
            return self
        if self.config.warmup:
            self.warmup()
        for i in range(self.config.max_concurrent_batches):
            t = threading.Thread(target=self._executor_main, name=f"tfbatch-run-{self.name}-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        self._scheduler = threading.Thread(target=self._scheduler_main, name=f"tfbatch-sched-{self.name}", daemon=True)
        self._scheduler.start()
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
                check_outputs(self.runner.run(inputs), size)
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
        with self._lock:
            self._closing = True
        self._wake.put(None)
        if self._scheduler is None:
            self.runner.close()
            return
        self._scheduler.join(timeout)
        if self._scheduler.is_alive():
            logger.warning("model %r: batcher did not drain within %.1fs", self.name, timeout)
            return
        for t in self._threads:
            t.join(timeout)
        self.runner.close()

    @property
    def alive(self) -> bool:
        return self._scheduler is not None and self._scheduler.is_alive() and self.pid == os.getpid()

    # ------------------------------------------------------------------ callers

    async def predict(self, inputs: Inputs, *, timeout: float | None = None) -> Prediction:
        """Submit rows and await their outputs, from any event loop."""
        waiter = AsyncWaiter(asyncio.get_running_loop())
        request = self._submit(inputs, timeout, waiter)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            request.cancelled = True
            raise

    def predict_sync(self, inputs: Inputs, *, timeout: float | None = None) -> Prediction:
        """Submit rows and block this thread until their outputs (or an error) are in."""
        waiter = SyncWaiter()
        request = self._submit(inputs, timeout, waiter)
        try:
            while not waiter.wait(1.0):
                if self._scheduler is None or not self._scheduler.is_alive():
                    raise ModelError(f"model {self.name!r}: the batcher stopped", model=self.name)
        except BaseException:
            request.cancelled = True
            raise
        if waiter.error is not None:
            raise waiter.error
        assert waiter.value is not None
        return waiter.value

    def _submit(self, inputs: Inputs, timeout: float | None, waiter: SyncWaiter | AsyncWaiter) -> Request:
        try:
            arrays, rows = coerce_inputs(self.specs, inputs, model=self.name)
        except TFBatchError:
            self.stats.record_request("invalid")
            raise
        if timeout is None:
            timeout = self.config.default_timeout
        elif timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        now = time.perf_counter()
        key = tuple(a.shape[1:] for a in arrays.values()) if self._keyed else None
        request = Request(arrays, rows, None if timeout is None else now + timeout, now, waiter, key)
        deadline = request.deadline
        with self._lock:
            refusal = None
            wake = False
            if self._closing or self._scheduler is None:
                refusal = f"model {self.name!r} is not serving (shutting down)"
            elif self._depth >= self.config.max_queue_size:
                refusal = (
                    f"model {self.name!r} is overloaded: {self._depth} requests queued "
                    f"(MAX_QUEUE_SIZE={self.config.max_queue_size}); retry later"
                )
            else:
                self._inbox.append(request)
                self._depth += 1
                self._queued_rows += rows
                self.stats.requests += 1
                wake = self._sleeping and (
                    self._queued_rows >= self._wake_rows
                    or self._depth >= self._wake_depth
                    or (deadline is not None and deadline < self._sleep_until)
                )
        if refusal is not None:
            self.stats.record_request("overloaded")
            raise Overloaded(refusal, model=self.name)
        if wake:
            self._wake.put(None)
        return request

    def queue_depth(self) -> int:
        return self._depth

    def snapshot(self) -> dict[str, Any]:
        """Statistics as a plain dict (see ``BatcherStats.snapshot``)."""
        return self.stats.snapshot(queue_depth=self._depth, in_flight_batches=len(self._running))

    # ------------------------------------------------------------------ executor thread

    def _executor_main(self) -> None:
        while True:
            batch = self._run_queue.get()
            if batch is None:
                return
            if all(s.request.done or s.request.cancelled for s in batch.segments):
                batch.skipped = True
            else:
                execute(self.runner, self.specs, self.config.allowed_batch_sizes, batch)
            with self._lock:
                self._finished.append(batch)
                wake = self._sleeping
            if wake:
                self._wake.put(None)

    # ------------------------------------------------------------------ scheduler thread

    def _scheduler_main(self) -> None:
        while True:
            try:
                if self._step():
                    break
            except BaseException as exc:
                logger.exception("model %r: internal batcher error; failing outstanding requests", self.name)
                self._fail_everything(
                    ModelError(f"model {self.name!r}: internal batcher error: {exc!r}", model=self.name)
                )
                time.sleep(0.01)  # a persistent bug must not become a busy loop
        for _ in self._threads:
            self._run_queue.put(None)

    def _step(self) -> bool:
        """One scheduling round. Returns True when closed and fully drained."""
        with self._lock:
            inbox, self._inbox = self._inbox, []
            finished, self._finished = self._finished, []
            closing = self._closing
        now = time.perf_counter()
        for request in inbox:
            self._accept(request)
        if inbox:
            self._recent_peak = self._peak.update(self._outstanding, now)
        for batch in finished:
            self._complete(batch)
        self._expire(now)
        next_decision = self._dispatch(now, closing)
        self._flush_deliveries()
        if closing and not self._pending and not self._running:
            with self._lock:
                if not self._inbox and not self._finished:
                    # Late arrivals raced with close(): refuse them rather than strand them.
                    return True
            return False
        wake_at = next_decision
        self._prune_deadlines()
        if self._deadlines and self._deadlines[0][0] < wake_at:
            wake_at = self._deadlines[0][0]
        self._sleep(wake_at)
        return False

    def _sleep(self, wake_at: float) -> None:
        running = len(self._running)
        limit = self.config.max_concurrent_batches
        wake_rows: float = _INF
        wake_depth: float = _INF
        if running < limit:
            if not self._pending:
                wake_rows = 1  # idle: the first arrival is dispatched (or waited on) at once
            else:
                wake_rows = self.config.max_batch_size
                # Requests not queued are in running batches; once the queue holds the
                # rest of the recent peak, every caller is here.
                wake_depth = self._recent_peak - (self._outstanding - len(self._pending))
        elif running == limit:
            wake_rows = self.config.max_batch_size  # a full batch can be assembled ahead
        with self._lock:
            if self._inbox or self._finished:
                return
            self._sleeping = True
            self._wake_rows = wake_rows
            self._wake_depth = wake_depth
            self._sleep_until = wake_at
        timeout = None if wake_at == _INF else max(wake_at - time.perf_counter(), 0.0)
        with contextlib.suppress(queue.Empty):
            self._wake.get(timeout=timeout)
        with self._lock:
            self._sleeping = False
            self._wake_rows = self._wake_depth = self._sleep_until = _INF
        # Tokens put while we were waking up are stale: the next round sees their work.
        with contextlib.suppress(queue.Empty):
            while True:
                self._wake.get_nowait()

    def _accept(self, request: Request) -> None:
        if request.cancelled:
            self._outstanding += 1
            self._pending_rows += request.rows
            self._finish(request, None, None, cancelled=True)
            return
        self._pending.append(request)
        self._pending_rows += request.rows
        self._outstanding += 1
        self._arrivals.observe(request.t_submit, self.config.max_latency)
        if request.deadline is not None:
            heapq.heappush(self._deadlines, (request.deadline, next(self._seq), request))

    def _dispatch(self, now: float, closing: bool) -> float:
        """Send every batch the policy allows; return when to decide again."""
        cfg = self.config
        while self._pending:
            head = self._pending[0]
            if head.done or head.cancelled:
                self._pending.popleft()
                if not head.done:
                    self._finish(head, None, None, cancelled=True)
                continue
            running = len(self._running)
            if running >= cfg.max_concurrent_batches:
                # Busy: only a full batch is worth assembling ahead of time (one at most).
                if running > cfg.max_concurrent_batches or self._pending_rows < cfg.max_batch_size:
                    return _INF
            elif not closing:
                delay = dispatch_delay(
                    queued_rows=self._pending_rows,
                    max_batch_size=cfg.max_batch_size,
                    oldest_age=now - head.t_submit,
                    max_latency=cfg.max_latency,
                    outstanding=self._outstanding,
                    recent_peak=self._recent_peak,
                    since_last_arrival=now - (self._arrivals.last or now),
                    arrival_gap=self._arrivals.gap,
                )
                if delay > 0.0:
                    return now + delay
            segments = self._take(now)
            if segments:
                self._send(segments, now)
        return _INF

    def _take(self, now: float) -> list[Segment]:
        """Cut the next batch's segments off the front of the queue."""
        limit = self.config.max_batch_size
        segments: list[Segment] = []
        rows = 0
        key: object = None
        skipped: list[Request] = []
        while self._pending and rows < limit:
            request = self._pending.popleft()
            if request.done or request.cancelled:
                if not request.done:
                    self._finish(request, None, None, cancelled=True)
                continue
            if request.deadline is not None and request.deadline <= now:
                self._timeout(request)
                continue
            if self._keyed:
                if not segments:
                    key = request.shape_key
                elif request.shape_key != key:
                    skipped.append(request)  # different row shape: a later batch
                    continue
            n = min(request.rows - request.taken, limit - rows)
            segments.append(Segment(request, request.taken, request.taken + n))
            if request.t_dispatch is None:
                request.t_dispatch = now
            request.taken += n
            rows += n
            if request.taken < request.rows:
                self._pending.appendleft(request)  # the rest goes in the next batch
                break
            self._unqueue(request)
        if skipped:
            self._pending.extendleft(reversed(skipped))
        self._pending_rows -= rows
        with self._lock:
            self._queued_rows -= rows
        return segments

    def _send(self, segments: list[Segment], now: float) -> None:
        try:
            inputs, rows, padded = assemble(self.specs, segments, self.config.allowed_batch_sizes)
        except Exception as exc:  # e.g. MemoryError: fail these requests, keep serving
            logger.exception("model %r: could not assemble a batch", self.name)
            for seg in segments:
                self._finish(
                    seg.request,
                    None,
                    ModelError(f"model {self.name!r}: could not assemble the batch: {exc!r}", model=self.name),
                )
            return
        batch = Batch(segments, inputs, rows, padded, now)
        self._running.append(batch)
        self._run_queue.put(batch)

    def _complete(self, batch: Batch) -> None:
        self._running.remove(batch)
        if batch.skipped:
            for seg in batch.segments:
                if not seg.request.done:
                    self._finish(seg.request, None, None, cancelled=True)
            return
        self.stats.record_batch(batch.rows, batch.padded, batch.run_s, batch.failed_calls, batch.calls - 1, self._depth)
        now = time.perf_counter()
        # Everyone in this batch is still waiting on us: they count towards the recent
        # peak, so their next requests wait for each other instead of trickling out.
        self._recent_peak = self._peak.update(self._outstanding, now)
        run_ms = round(batch.run_s * 1e3, 3)
        timings: list[tuple[float, float]] = []
        for outcome in batch.outcomes:
            outputs = outcome.outputs
            for seg in outcome.segments:
                request = seg.request
                if request.done:
                    continue
                if request.cancelled:
                    self._finish(request, None, None, cancelled=True)
                    continue
                if outputs is None:
                    err = outcome.error
                    error = ModelError(
                        f"model {self.name!r} failed on this request: {type(err).__name__}: {err}", model=self.name
                    )
                    error.__cause__ = err
                    self._finish(request, None, error)
                    continue
                start, stop = seg.offset, seg.offset + seg.rows
                part = {k: v[start:stop] for k, v in outputs.items()}
                queue_s = batch.t_dispatch - request.t_submit
                if seg.rows == request.rows:  # the common case: the whole request in one batch
                    info = BatchInfo(batch.rows, batch.padded, round(queue_s * 1e3, 3), run_ms, 1)
                else:
                    merged = self._merge_part(request, part, seg.rows, batch, queue_s)
                    if merged is None:
                        continue
                    part, info = merged
                    queue_s = request.queue_s
                self._answer(request, Prediction(part, info), None)
                timings.append((queue_s, now - request.t_submit))
        if timings:
            self.stats.record_completions(timings)

    def _merge_part(
        self, request: Request, part: dict[str, np.ndarray], rows: int, batch: Batch, queue_s: float
    ) -> tuple[dict[str, np.ndarray], BatchInfo] | None:
        """Collect one segment of a split request; the whole outputs once all are in."""
        request.batches += 1
        request.batch_size = max(request.batch_size, batch.rows)
        request.padded_size = max(request.padded_size, batch.padded)
        request.queue_s = max(request.queue_s, queue_s)
        request.run_s += batch.run_s
        if request.parts is None:
            request.parts = []
        request.parts.append(part)
        request.received += rows
        if request.received < request.rows:
            return None
        parts, request.parts = request.parts, None
        outputs = {k: np.concatenate([p[k] for p in parts]) for k in part}
        info = BatchInfo(
            request.batch_size,
            request.padded_size,
            round(request.queue_s * 1e3, 3),
            round(request.run_s * 1e3, 3),
            request.batches,
        )
        return outputs, info

    def _expire(self, now: float) -> None:
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            request = heapq.heappop(heap)[2]
            if not request.done:
                self._timeout(request)

    def _prune_deadlines(self) -> None:
        """Drop answered requests from the deadline heap so they cause no wake-ups."""
        heap = self._deadlines
        while heap and heap[0][2].done:
            heapq.heappop(heap)
        if len(heap) > 2 * self._outstanding + 64:
            self._deadlines = [entry for entry in heap if not entry[2].done]
            heapq.heapify(self._deadlines)

    def _timeout(self, request: Request) -> None:
        assert request.deadline is not None
        where = "in the queue" if request.taken == 0 else "while its batch ran"
        self._finish(
            request,
            None,
            PredictTimeout(
                f"model {self.name!r}: deadline of {(request.deadline - request.t_submit) * 1e3:.0f} ms passed {where}",
                model=self.name,
            ),
        )

    def _unqueue(self, request: Request) -> None:
        if request.queued:
            request.queued = False
            with self._lock:
                self._depth -= 1

    def _finish(
        self, request: Request, value: Prediction | None, error: BaseException | None, *, cancelled: bool = False
    ) -> None:
        """Answer ``request`` with an error (or drop it, cancelled) and count the outcome."""
        if request.done:
            return
        if cancelled:
            self._answer(request, None, None, deliver=False)  # nobody is waiting for an answer
            self.stats.record_request("cancelled")
            return
        self._answer(request, value, error)
        self.stats.record_request("timeout" if isinstance(error, PredictTimeout) else "error")

    def _answer(
        self, request: Request, value: Prediction | None, error: BaseException | None, *, deliver: bool = True
    ) -> None:
        """Mark ``request`` answered (exactly once) and hand the answer to its caller."""
        request.done = True
        self._outstanding -= 1
        if request.queued:
            remaining = request.rows - request.taken
            self._pending_rows -= remaining
            with self._lock:
                self._queued_rows -= remaining
            self._unqueue(request)
        if not deliver:
            return
        waiter = request.waiter
        if isinstance(waiter, SyncWaiter):
            waiter.resolve(value, error)
        else:
            self._deliveries.setdefault(waiter.loop, []).append((waiter.future, value, error))

    def _flush_deliveries(self) -> None:
        if not self._deliveries:
            return
        deliveries, self._deliveries = self._deliveries, {}
        for loop, items in deliveries.items():
            # A closed loop (its caller is gone) raises RuntimeError: nobody is left to answer.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(deliver_async, items)

    def _fail_everything(self, error: TFBatchError) -> None:
        requests = list(self._pending) + [s.request for b in self._running for s in b.segments]
        for request in requests:
            if not request.done:
                self._finish(request, None, type(error)(error.message, model=self.name))
        self._pending.clear()
        self._flush_deliveries()
