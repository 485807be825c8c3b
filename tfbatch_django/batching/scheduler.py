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

import logging
import math
import queue
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Mapping
from itertools import accumulate, islice
from typing import Any

import numpy as np

from ..exceptions import ModelError, PredictTimeout, TFBatchError
from .answers import Answers
from .assemble import Part, Segment, assemble
from .coalesce import GroupRequest
from .config import BatchConfig
from .deadlines import Deadlines
from .execute import Batch, Outcome, left_out
from .mailbox import Mailbox
from .policy import AdaptivePolicy, DispatchPolicy, QueueView
from .request import BatchInfo, Prediction, Request, merge_part, predictions, rounded_ms
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
        self._queued = 0  # callers' requests in _pending (a GroupRequest counts as its members)
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
            self._queued,
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
        """Queue new requests (dropping those whose callers already gave up); tell the policy.

        A few list comprehensions over the round's arrivals rather than one Python loop
        with a branch per field: per request that is about half the cost (bench_batcher).
        """
        cancelled = [r.cancelled for r in inbox]  # read once: a caller may set it meanwhile
        if True in cancelled:
            for request, gone in zip(inbox, cancelled, strict=True):
                if gone:  # a caller's own request (a group is never cancelled whole)
                    self._outstanding += 1
                    self._queued += 1
                    self._pending_rows += request.rows
                    self._finish(request, None, None, cancelled=True)
            inbox = [r for r, gone in zip(inbox, cancelled, strict=True) if not gone]
        self._pending.extend(inbox)
        self._pending_rows += sum([r.rows for r in inbox])
        counts = [r.count for r in inbox]
        callers = sum(counts)
        self._outstanding += callers
        self._queued += callers
        for request in [r for r in inbox if r.deadline is not None]:
            self._deadlines.add(request)
        if callers == len(inbox):
            arrivals = [r.t_submit for r in inbox]
        else:  # groups: each member's own arrival
            arrivals = []
            for request in inbox:
                if type(request) is GroupRequest:
                    arrivals += request.members.t_submits
                else:
                    arrivals.append(request.t_submit)
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

    def _take(self, now: float) -> list[Part]:
        """Cut the next batch's segments off the front of the queue.

        The usual run of live, unsplit requests that fit is taken whole, in a few list
        operations (each request is its own segment); anything else (answered or
        cancelled, expired, too big to fit, another row shape) one at a time.
        """
        limit = self.config.max_batch_size
        segments: list[Part] = []
        rows = 0
        key: object = None
        skipped: list[Request] = []
        dispatched = 0  # requests whose last rows are in this batch
        pending = self._pending
        popleft = pending.popleft
        keyed = self._keyed
        while pending and rows < limit:
            if not keyed:
                room = limit - rows
                run = list(islice(pending, room))  # every request has a row at least
                clean = [
                    not (r.done or r.cancelled or r.taken or (r.deadline is not None and r.deadline <= now))
                    for r in run
                ]
                if False in clean:
                    run = run[: clean.index(False)]
                sizes = [r.rows for r in run]
                total = sum(sizes)
                if total > room:
                    ends = list(accumulate(sizes))
                    fit = bisect_right(ends, room)
                    run, total = run[:fit], (ends[fit - 1] if fit else 0)
                if run:
                    for _ in range(len(run)):
                        popleft()
                    groups = [r for r in run if type(r) is GroupRequest]
                    if groups:  # their callers who gave up meanwhile stay out of the batch
                        for group in groups:
                            self._prune(group)
                        if [g for g in groups if g.done]:
                            run = [r for r in run if not r.done]
                        total = sum([r.rows for r in run])
                    for r in run:
                        r.taken = r.rows
                    segments += run
                    rows += total
                    dispatched += sum([r.count for r in run])
                    if not pending or rows >= limit:
                        break
            request = popleft()
            if type(request) is GroupRequest:
                self._prune(request)
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
            if n > limit - rows and type(request) is GroupRequest:
                # Cut between callers: the ones that fit now, the rest at the front.
                head, tail = request.cut(limit - rows)
                if tail is not None:
                    pending.extendleft(reversed(tail.pieces(limit)))
                request, n = head, head.rows
            if taken == 0 and n <= limit - rows:
                segments.append(request)  # all of it: the request is its own segment
            else:
                if n > limit - rows:
                    n = limit - rows
                segments.append(Segment(request, taken, taken + n, rows))
            request.taken = taken + n
            rows += n
            if taken + n < request.rows:
                pending.appendleft(request)  # the rest goes in the next batch
                break
            dispatched += request.count
        if skipped:
            self._pending.extendleft(reversed(skipped))
        self._pending_rows -= rows
        self._queued -= dispatched
        self.mailbox.unqueue(dispatched, rows)  # one lock round for the whole batch
        return segments

    def _send(self, segments: list[Part], now: float) -> None:
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
        waits: list[np.ndarray] = []  # queue waits of the requests answered with a result
        submits: list[np.ndarray] = []  # and their submit times
        for outcome in batch.outcomes:
            if outcome.outputs is None:
                self._fail_segments(outcome)
            else:
                self._answer_segments(batch, outcome.segments, outcome.outputs, run_ms, waits, submits)
        if waits:
            if len(waits) == 1:
                self.stats.record_completions_at(now, waits[0], submits[0])
            else:
                self.stats.record_completions_at(now, np.concatenate(waits), np.concatenate(submits))
        self._sweep(batch)

    def _answer_segments(
        self,
        batch: Batch,
        segments: list[Part],
        outputs: dict[str, np.ndarray],
        run_ms: float,
        waits: list[np.ndarray],
        submits: list[np.ndarray],
    ) -> None:
        """The hot path: slice each request's rows out of the outputs and hand them over.

        Requests answered whole by this batch (nearly all) are answered together: their
        views, ``BatchInfo``s and ``Prediction``s come out of list comprehensions and
        ``map`` over C iterators, their queue times from one numpy expression, and the
        answers for one event loop go out as one list. bench_batcher measures what that
        costs per request. The rest (segments of split requests; requests answered or
        cancelled meanwhile) go one at a time through ``_answer_parts``.
        """
        whole_flags = [type(s) is Request and not (s.done or s.cancelled) for s in segments]
        if False in whole_flags:
            whole: list[Any] = [s for s, w in zip(segments, whole_flags, strict=True) if w]
            self._answer_parts(
                batch, [s for s, w in zip(segments, whole_flags, strict=True) if not w], outputs, run_ms, waits, submits
            )
        else:
            whole = segments
        n = len(whole)
        if not n:
            return
        items = list(outputs.items())
        if len(items) == 1:
            name, out = items[0]
            if n == len(segments) and n == sum([r.rows for r in whole]):
                views = list(out[:n, None])  # one row each, in order: numpy cuts the views
            else:
                views = [out[r.offset : r.offset + r.rows] for r in whole]
            parts = [{name: v} for v in views]
        else:
            parts = [{k: v[r.offset : r.offset + r.rows] for k, v in items} for r in whole]
        t_submit = np.array([r.t_submit for r in whole])
        queue_s = batch.t_dispatch - t_submit
        values = list(predictions(parts, batch.rows, batch.padded, rounded_ms(queue_s), run_ms))
        for r in whole:
            r.done = True
        self._outstanding -= n
        waits.append(queue_s)
        submits.append(t_submit)
        loops = [r.loop for r in whole]
        loop = loops[0]
        if loop is not None and loops.count(loop) == n:  # the usual: one event loop's callers
            flat: list[Any] = [None] * (2 * n)  # futures and answers, alternating (deliver_async)
            flat[::2] = [r.future for r in whole]
            flat[1::2] = values
            self._answers.by_loop.setdefault(loop, []).extend(flat)
            return
        for request, value in zip(whole, values, strict=True):
            self._answers.add(request, value, None)

    def _answer_parts(
        self,
        batch: Batch,
        segments: list[Part],
        outputs: dict[str, np.ndarray],
        run_ms: float,
        waits: list[np.ndarray],
        submits: list[np.ndarray],
    ) -> None:
        """``_answer_segments`` one segment at a time: split requests, and the answered or
        cancelled ones."""
        items = list(outputs.items())
        part_waits: list[float] = []
        part_submits: list[float] = []
        for seg in segments:
            request = seg.request
            if request.done:
                continue
            if request.cancelled:
                self._finish(request, None, None, cancelled=True)
                continue
            start = seg.offset
            n = seg.rows
            part = {k: v[start : start + n] for k, v in items}
            queue_s = batch.t_dispatch - request.t_submit
            if n == request.rows:
                info = BatchInfo(batch.rows, batch.padded, int(queue_s * 1e6 + 0.5) / 1e3, run_ms, 1)
            else:
                merged = merge_part(request, part, seg.start, n, batch.rows, batch.padded, batch.run_s, queue_s)
                if merged is None:
                    continue
                part, info = merged
                assert request.split is not None
                queue_s = request.split.queue_s
            if type(request) is GroupRequest:
                self._answer_group(request, Prediction(part, info), queue_s, waits, submits)
                continue
            self._answer(request, Prediction(part, info), None)
            part_waits.append(queue_s)
            part_submits.append(request.t_submit)
        if part_waits:
            waits.append(np.array(part_waits))
            submits.append(np.array(part_submits))

    def _answer_group(
        self,
        group: GroupRequest,
        value: Prediction,
        queue_s: float,
        waits: list[np.ndarray],
        submits: list[np.ndarray],
    ) -> None:
        """Answer a group's members (on their loop); count them each, cancelled ones apart."""
        t_submit = np.asarray(group.members.t_submits)
        member_waits = queue_s - (t_submit - t_submit[0])  # the group's is its first member's
        group.members.queue_ms = rounded_ms(member_waits)
        gone = group.cancelled_flags()
        self._answer(group, value, None)
        if True in gone:
            live = ~np.asarray(gone)
            self.stats.record_request("cancelled", count=len(gone) - int(live.sum()))
            t_submit, member_waits = t_submit[live], member_waits[live]
        waits.append(member_waits)
        submits.append(t_submit)

    def _prune(self, group: GroupRequest) -> None:
        """Before its batch: drop a queued group's cancelled members (their rows never run)."""
        if group.done:
            return
        dropped, rows = group.prune()
        if not dropped:
            return
        self._outstanding -= dropped
        self._queued -= dropped
        self._pending_rows -= rows
        self.mailbox.unqueue(dropped, rows)
        self.stats.record_request("cancelled", count=dropped)
        if not group.count:
            group.done = True  # nobody left: popped and skipped like any answered request

    def _explode(self, group: GroupRequest) -> None:
        """Break a group up into its members, back at the front of the queue.

        A model call failed with the group in it: run its members again one by one, so
        bisection isolates the bad rows and only their callers get the error. The group
        ends with no outcome of its own (its members get theirs); the counts move over.
        """
        remaining = group.rows - group.taken
        group.done = True
        if remaining:  # part of it was still queued (a group split over batches)
            self._pending_rows -= remaining
            self._queued -= group.count
            self.mailbox.unqueue(group.count, remaining)
        members = group.split_up()
        self._pending.extendleft(reversed(members))
        self._pending_rows += group.rows
        self._queued += group.count
        self.mailbox.requeue(group.count, group.rows)

    def _fail_segments(self, outcome: Outcome) -> None:
        err = outcome.error
        for seg in outcome.segments:
            request = seg.request
            if request.done:
                continue
            if request.cancelled:
                self._finish(request, None, None, cancelled=True)
                continue
            if type(request) is GroupRequest and not isinstance(err, PredictTimeout | ModelError):
                self._explode(request)
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
            self.stats.record_request("cancelled", count=request.count)
            return
        self._answer(request, value, error)
        count = request.count
        if type(request) is GroupRequest:
            # Members who gave up get no error (``Members.set_exception`` skips them): they
            # are counted as cancelled, as a caller of its own is (``_fail_segments``).
            gone = sum(request.cancelled_flags())
            if gone:
                self.stats.record_request("cancelled", count=gone)
                count -= gone
        if count:
            self.stats.record_request("timeout" if isinstance(error, PredictTimeout) else "error", count=count)

    def _answer(
        self, request: Request, value: Prediction | None, error: BaseException | None, *, deliver: bool = True
    ) -> None:
        """Mark ``request`` answered (exactly once) and hand the answer to its caller."""
        request.done = True
        count = request.count
        self._outstanding -= count
        remaining = request.rows - request.taken
        if remaining:  # still (partly) queued: it leaves the queue now
            self._pending_rows -= remaining
            self._queued -= count
            request.taken = request.rows
            self.mailbox.unqueue(count, remaining)
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
