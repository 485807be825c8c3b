"""The scheduler thread: the one place where batches form and answers are decided.

It takes new requests and finished batches from the ``Mailbox``, forms batches by the
``policy``, assembles them (``assemble``) and hands them to the executor thread(s),
answers requests whose deadline passed, and turns finished batches into per-caller
answers: delivered with one ``call_soon_threadsafe`` per event loop per batch, or by
releasing a waiting thread's lock.

Every accepted request is answered exactly once, because only this thread decides
answers, and it sets ``request.done`` when it does. Its state is its own: no lock.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..exceptions import ModelError, PredictTimeout, TFBatchError
from .answers import Answers
from .assemble import Segment, assemble
from .config import BatchConfig
from .deadlines import Deadlines
from .execute import Batch, Outcome, left_out
from .mailbox import Mailbox
from .policy import AdaptivePolicy, DispatchPolicy, QueueView
from .request import BatchInfo, Prediction, Request, merge_part
from .spec import TensorSpec
from .stats import BatcherStats

__all__ = ["Scheduler"]

logger = logging.getLogger("tfbatch_django.batching")

_INF = math.inf


class Scheduler:
    """The scheduler thread's state and rounds (see the module docstring)."""

    def __init__(
        self,
        name: str,
        specs: Mapping[str, TensorSpec],
        config: BatchConfig,
        stats: BatcherStats,
        mailbox: Mailbox,
        run_queue: queue.SimpleQueue[Batch | None],
        policy: DispatchPolicy | None = None,
    ) -> None:
        self.name = name
        self.specs = specs
        self.config = config
        self.stats = stats
        self.mailbox = mailbox
        self.executors = config.max_concurrent_batches
        self._run_queue = run_queue
        self._keyed = not all(s.fully_defined for s in specs.values())
        self._pending: deque[Request] = deque()
        self._pending_rows = 0
        self._deadlines = Deadlines()
        self._outstanding = 0
        self.policy = policy or AdaptivePolicy.from_config(config)
        self._running: list[Batch] = []
        self._answers = Answers()  # released at the end of each round, after the statistics

    @property
    def outstanding(self) -> int:
        return self._outstanding

    @property
    def running_batches(self) -> int:
        return len(self._running)

    def run(self) -> None:
        """The scheduler thread's main loop; returns once closed and drained."""
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
        for _ in range(self.executors):
            self._run_queue.put(None)

    def _step(self) -> bool:
        """One scheduling round. Returns True when closed and fully drained."""
        inbox, finished, closing = self.mailbox.take()
        now = time.perf_counter()
        if inbox:
            self._accept_all(inbox, now)
        for batch in finished:
            self._complete(batch)
        self._expire(now)
        next_decision = self._dispatch(now, closing)
        self._answers.release()
        if closing and not self._pending and not self._running:
            # Done, unless requests slipped in just before close(): serve them first.
            return self.mailbox.empty()
        self._sleep(min(next_decision, self._deadlines.next(self._outstanding)))
        return False

    def _view(self, now: float, closing: bool) -> QueueView:
        pending = self._pending
        return QueueView(
            now,
            self._pending_rows,
            len(pending),
            pending[0].t_submit if pending else None,
            self._outstanding,
            len(self._running),
            closing,
        )

    def _sleep(self, wake_at: float) -> None:
        """Sleep until ``wake_at``, or until an arrival could change the decision."""
        rule = self.policy.wake_rule(self._view(time.perf_counter(), False), wake_at)
        self.mailbox.sleep(wake_at, rule)

    def _accept_all(self, inbox: list[Request], now: float) -> None:
        """Queue new requests (dropping those whose callers already gave up); tell the policy."""
        pending = self._pending
        arrivals: list[float] = []
        rows = 0
        for request in inbox:
            rows += request.rows
            if request.cancelled:
                self._outstanding += 1
                self._pending_rows += request.rows
                self._finish(request, None, None, cancelled=True)
                rows -= request.rows
                continue
            pending.append(request)
            arrivals.append(request.t_submit)
            if request.deadline is not None:
                self._deadlines.add(request)
        self._pending_rows += rows
        self._outstanding += len(arrivals)
        self.policy.on_arrivals(arrivals, self._outstanding, now)

    def _dispatch(self, now: float, closing: bool) -> float:
        """Send every batch the policy allows; return when to decide again."""
        while self._pending:
            head = self._pending[0]
            if head.done or head.cancelled:
                self._pending.popleft()
                if not head.done:
                    self._finish(head, None, None, cancelled=True)
                continue
            delay = self.policy.next_dispatch(self._view(now, closing))
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
        dispatched = 0  # requests whose last rows are in this batch
        pending = self._pending
        keyed = self._keyed
        while pending and rows < limit:
            request = pending.popleft()
            if request.done or request.cancelled:
                if not request.done:
                    self._finish(request, None, None, cancelled=True)
                continue
            if request.deadline is not None and request.deadline <= now:
                self._timeout(request)
                continue
            if keyed:
                if not segments:
                    key = request.shape_key
                elif request.shape_key != key:
                    skipped.append(request)  # different row shape: a later batch
                    continue
            taken = request.taken
            n = request.rows - taken
            if n > limit - rows:
                n = limit - rows
            segments.append(Segment(request, taken, taken + n, rows))
            request.taken = taken + n
            rows += n
            if taken + n < request.rows:
                pending.appendleft(request)  # the rest goes in the next batch
                break
            dispatched += 1
        if skipped:
            self._pending.extendleft(reversed(skipped))
        self._pending_rows -= rows
        self.mailbox.unqueue(dispatched, rows)  # one lock round for the whole batch
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
        self.stats.record_batch(
            batch.rows, batch.padded, batch.run_s, batch.failed_calls, batch.calls - 1, self.mailbox.depth
        )
        now = time.perf_counter()
        self.policy.on_batch_done(self._outstanding, now)
        run_ms = round(batch.run_s * 1e3, 3)
        waits: list[float] = []  # of the requests answered with a result
        submits: list[float] = []
        for outcome in batch.outcomes:
            if outcome.outputs is None:
                self._fail_segments(outcome)
            else:
                self._answer_segments(batch, outcome.segments, outcome.outputs, run_ms, waits, submits)
        if waits:
            self.stats.record_completions_at(now, waits, submits)
        self._sweep(batch)

    def _answer_segments(
        self,
        batch: Batch,
        segments: list[Segment],
        outputs: dict[str, np.ndarray],
        run_ms: float,
        waits: list[float],
        submits: list[float],
    ) -> None:
        """The hot path: slice each request's rows out of the outputs and hand them over.

        Everything per request is kept to a few operations (the batcher's cost per
        request is measured by bench_batcher): outputs are sliced by hand for the usual
        single output, named tuples are built without their Python ``__new__``, and
        answers for coroutines are queued per event loop, delivered once per batch.
        """
        items = list(outputs.items())
        single = items[0] if len(items) == 1 else None
        t_dispatch = batch.t_dispatch
        size, padded = batch.rows, batch.padded
        deliveries = self._answers.by_loop
        new_tuple = tuple.__new__
        last_loop: asyncio.AbstractEventLoop | None = None
        pending: list[Any] = []
        to_threads = self._answers.to_threads.append
        add_wait, add_submit = waits.append, submits.append
        answered = 0
        for seg in segments:
            request = seg.request
            if request.done:
                continue
            if request.cancelled:
                self._finish(request, None, None, cancelled=True)
                continue
            start = seg.offset
            n = seg.stop - seg.start
            stop = start + n
            part = {single[0]: single[1][start:stop]} if single is not None else {k: v[start:stop] for k, v in items}
            t_submit = request.t_submit
            queue_s = t_dispatch - t_submit
            if n == request.rows:  # the common case: the whole request in one batch
                # queue_ms rounded to the µs as round(x, 3) would, at a fifth of its cost.
                queue_ms = int(queue_s * 1e6 + 0.5) / 1e3
                info = new_tuple(BatchInfo, (size, padded, queue_ms, run_ms, 1))
            else:
                merged = merge_part(request, part, n, size, padded, batch.run_s, queue_s)
                if merged is None:
                    continue
                part, info = merged
                assert request.split is not None
                queue_s = request.split.queue_s
            value = new_tuple(Prediction, (part, info))
            # _answer, inlined (outstanding is decremented once, below).
            request.done = True
            answered += 1
            waiter = request.waiter
            if waiter is not None:
                to_threads((waiter, value, None))
            else:
                loop = request.loop
                if loop is not last_loop:  # callers usually share one loop: look it up once
                    assert loop is not None
                    pending = deliveries.setdefault(loop, [])
                    last_loop = loop
                pending += (request.future, value)
            add_wait(queue_s)
            add_submit(t_submit)
        self._outstanding -= answered

    def _fail_segments(self, outcome: Outcome) -> None:
        err = outcome.error
        for seg in outcome.segments:
            request = seg.request
            if request.done:
                continue
            if request.cancelled:
                self._finish(request, None, None, cancelled=True)
                continue
            error: TFBatchError
            if isinstance(err, PredictTimeout | ModelError):  # raised as such by the runner
                error = type(err)(f"model {self.name!r}: {err.message}", model=self.name)
            else:
                error = ModelError(
                    f"model {self.name!r} failed on this request: {type(err).__name__}: {err}", model=self.name
                )
            error.__cause__ = err
            self._finish(request, None, error)

    def _sweep(self, batch: Batch) -> None:
        """Finish whoever this batch leaves in no outcome (see ``execute.left_out``)."""
        for request in left_out(batch):
            if request.cancelled:
                self._finish(request, None, None, cancelled=True)
            else:  # cannot happen by construction; never leave a caller waiting
                self._finish(request, None, ModelError(f"model {self.name!r}: the batch lost it", model=self.name))

    def _expire(self, now: float) -> None:
        for request in self._deadlines.due(now):
            self._timeout(request)

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
        remaining = request.rows - request.taken
        if remaining:  # still (partly) queued: it leaves the queue now
            self._pending_rows -= remaining
            request.taken = request.rows
            self.mailbox.unqueue(1, remaining)
        if not deliver:
            return
        self._answers.add(request, value, error)

    def _fail_everything(self, error: TFBatchError) -> None:
        requests = list(self._pending) + [s.request for b in self._running for s in b.segments]
        for request in requests:
            if not request.done:
                self._finish(request, None, type(error)(error.message, model=self.name))
        self._pending.clear()
        self._answers.release()
