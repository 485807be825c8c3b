"""The scheduler thread: the one place where batches form and answers are decided.

It takes new requests and finished batches from the ``Mailbox``, forms batches by the
``policy``, assembles them (``assemble``) and hands them to the executor thread(s),
answers requests whose deadline passed, and has finished batches turned into per-caller
answers (``outcomes``): delivered with one ``call_soon_threadsafe`` per event loop per
batch, or by releasing a waiting thread's lock, at the end of each round (``answers``).

Every accepted request is answered exactly once, because only this thread decides
answers, through ``Outcomes``, which sets ``request.done`` when it does (the reasoning is
in ``outcomes``). Its state is its own: no lock. The queue (``_pending``) and its counts
(``Tally``, shared with ``Outcomes``) are this thread's.
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

from ..exceptions import ModelError, TFBatchError
from .answers import Answers
from .assemble import Part, Segment, assemble
from .config import BatchConfig
from .deadlines import Deadlines
from .execute import Batch
from .group import GroupRequest
from .mailbox import Mailbox
from .outcomes import Outcomes, Tally
from .policy import AdaptivePolicy, DispatchPolicy, QueueView
from .request import Request
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
        self._tally = Tally(mailbox)  # callers outstanding; callers and rows in _pending
        self._deadlines = Deadlines()
        self.policy = policy or AdaptivePolicy.from_config(config)
        self._running: list[Batch] = []
        self._answers = Answers()  # released at the end of each round, after the statistics
        self._outcomes = Outcomes(name, stats, self._tally, self._pending, self._answers, self._deadlines)

    @property
    def outstanding(self) -> int:
        return self._tally.outstanding

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
        self._sleep(min(next_decision, self._deadlines.next(self._tally.outstanding)))
        return False

    def _view(self, now: float, closing: bool) -> QueueView:
        pending = self._pending
        tally = self._tally
        return QueueView(
            now,
            tally.rows,
            tally.queued,
            pending[0].t_submit if pending else None,
            tally.outstanding,
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
        tally = self._tally
        cancelled = [r.cancelled for r in inbox]  # read once: a caller may set it meanwhile
        if True in cancelled:
            for request, gone in zip(inbox, cancelled, strict=True):
                if gone:  # a caller's own request (a group is never cancelled whole)
                    tally.outstanding += 1
                    tally.queued += 1
                    tally.rows += request.rows
                    self._outcomes.finish(request, None, None, cancelled=True)
            inbox = [r for r, gone in zip(inbox, cancelled, strict=True) if not gone]
        self._pending.extend(inbox)
        tally.rows += sum([r.rows for r in inbox])
        counts = [r.count for r in inbox]
        callers = sum(counts)
        tally.outstanding += callers
        tally.queued += callers
        for request in [r for r in inbox if r.deadline is not None]:
            self._deadlines.add(request)
        if callers == len(inbox):
            arrivals = [r.t_submit for r in inbox]
        else:  # groups: each member's own arrival
            arrivals = []
            for request in inbox:
                if type(request) is GroupRequest:
                    members = request.members  # (sorted by deadline, when it has a list of them)
                    arrivals += members.t_submits if members.deadlines is None else sorted(members.t_submits)
                else:
                    arrivals.append(request.t_submit)
        self.policy.on_arrivals(arrivals, tally.outstanding, now)

    def _dispatch(self, now: float, closing: bool) -> float:
        """Send every batch the policy allows; return when to decide again."""
        while self._pending:
            head = self._pending[0]
            if head.done or head.cancelled:
                self._pending.popleft()
                if not head.done:
                    self._outcomes.finish(head, None, None, cancelled=True)
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
        outcomes = self._outcomes
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
                            outcomes.prune(group)
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
                outcomes.prune(request)
            if request.done or request.cancelled:
                if not request.done:
                    outcomes.finish(request, None, None, cancelled=True)
                continue
            if request.deadline is not None and request.deadline <= now:
                self._expired(request, now)
                if request.done:
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
                pieces = [] if tail is None else tail.pieces(limit)
                pending.extendleft(reversed(pieces))
                if request.deadline is not None:  # its pieces are watched in its place
                    request.done = True
                    for piece in [head, *pieces]:
                        if piece.deadline is not None:  # (its members may have none)
                            self._deadlines.add(piece)
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
        self._tally.unqueue(dispatched, rows)  # one lock round for the whole batch
        return segments

    def _send(self, segments: list[Part], now: float) -> None:
        try:
            inputs, rows, padded = assemble(self.specs, segments, self.config.allowed_batch_sizes)
        except Exception as exc:  # e.g. MemoryError: fail these requests, keep serving
            logger.exception("model %r: could not assemble a batch", self.name)
            for seg in segments:
                self._outcomes.finish(
                    seg.request,
                    None,
                    ModelError(f"model {self.name!r}: could not assemble the batch: {exc!r}", model=self.name),
                )
            return
        batch = Batch(segments, inputs, rows, padded, now)
        self._running.append(batch)
        self._run_queue.put(batch)

    def _complete(self, batch: Batch) -> None:
        """A batch came back: count it, tell the policy, and have its callers answered."""
        self._running.remove(batch)
        if batch.skipped:  # not run: its callers were all answered or gave up (batcher.abandoned)
            for seg in batch.segments:
                if not seg.request.done:
                    self._outcomes.finish(seg.request, None, None, cancelled=True)
            return
        self.stats.record_batch(
            batch.rows, batch.padded, batch.run_s, batch.failed_calls, batch.calls - 1, self.mailbox.depth
        )
        now = time.perf_counter()
        self.policy.on_batch_done(self._tally.outstanding, now)
        self._outcomes.complete(batch, now)

    def _expire(self, now: float) -> None:
        for request in self._deadlines.due(now):
            self._expired(request, now)

    def _expired(self, request: Request, now: float) -> None:
        """``request``'s deadline passed: time it out; of a group, the members whose own
        deadlines passed, the rest watched on under the next one."""
        if type(request) is not GroupRequest:
            self._outcomes.timeout(request)
            return
        self._outcomes.expire(request, now)
        if not request.done and request.deadline is not None:
            self._deadlines.add(request)

    def _fail_everything(self, error: TFBatchError) -> None:
        requests = list(self._pending) + [s.request for b in self._running for s in b.segments]
        for request in requests:
            if not request.done:
                self._outcomes.finish(request, None, type(error)(error.message, model=self.name))
        self._pending.clear()
        self._answers.release()
