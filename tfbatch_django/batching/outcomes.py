"""Every accepted request's one outcome, decided on the scheduler thread.

``Outcomes`` turns a finished ``Batch`` into per-caller answers (each request's rows
sliced out of the outputs; a request split over batches stitched together; a group's
members answered each), fails the requests a model call failed on (a group is broken up
first, so that bisection finds its bad rows), and answers the requests the scheduler
gives up on (deadline passed, cancelled, could not be assembled). The answers are
collected in ``Answers`` and released at the end of the scheduler's round.

Exactly once: every outcome is decided here, on the scheduler thread only, and deciding
it sets ``request.done``: ``_answer`` does for one request, ``_answer_segments`` for a
run of whole ones at once. Every path checks ``done`` first and leaves an answered
request alone, so a second outcome (a deadline passing while the batch ran, a cancel
racing an answer) is never given; and a request that bisection left in no outcome is
swept up when its batch completes (``_sweep``), so none is left waiting. No lock: callers
only read ``done`` and set ``cancelled``.

The counts that answering changes (callers outstanding, callers and rows still queued)
are the scheduler's; they are shared through ``Tally``, their one interface.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from ..exceptions import ModelError, PredictTimeout, TFBatchError
from .answers import Answers
from .assemble import Part
from .deadlines import Deadlines
from .execute import Batch, Outcome, left_out
from .group import GroupRequest
from .mailbox import Mailbox
from .request import BatchInfo, Prediction, Request, merge_part, predictions, rounded_ms
from .stats import BatcherStats

__all__ = ["Outcomes", "Tally"]


class Tally:
    """The scheduler's counts of callers and rows, which answering changes too.

    ``outstanding``: callers accepted and not answered yet (a ``GroupRequest`` counts as
    its members); the policy and the deadlines read it. ``queued`` and ``rows``: callers
    and rows still in the scheduler's queue, not yet dispatched. The ``Mailbox`` keeps
    the last two for callers (``depth``, ``queued_rows``, under its lock); ``unqueue`` and
    ``requeue`` change both sides. Plain attributes, scheduler thread only: the hot path
    changes ``outstanding`` once per batch, with no call.
    """

    __slots__ = ("mailbox", "outstanding", "queued", "rows")

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.outstanding = 0
        self.queued = 0
        self.rows = 0

    def unqueue(self, callers: int, rows: int) -> None:
        """Callers and rows that left the queue (dispatched, answered, cancelled)."""
        self.queued -= callers
        self.rows -= rows
        self.mailbox.unqueue(callers, rows)  # one lock round

    def requeue(self, callers: int, rows: int) -> None:
        """Callers and rows back in the queue (a group broken up into its members)."""
        self.queued += callers
        self.rows += rows
        self.mailbox.requeue(callers, rows)


class Outcomes:
    """Decides and collects the answers of one batcher's requests (see the module docstring)."""

    def __init__(
        self,
        name: str,
        stats: BatcherStats,
        tally: Tally,
        pending: deque[Request],
        answers: Answers,
        deadlines: Deadlines,
    ) -> None:
        self.name = name
        self.stats = stats
        self.tally = tally
        #: The scheduler's queue: a failed group's members go back at its front (``_explode``).
        self.pending = pending
        self.answers = answers
        #: The scheduler's deadlines: a failed group's members are watched on their own.
        self.deadlines = deadlines

    # -- a finished batch

    def complete(self, batch: Batch, now: float) -> None:
        """Answer every caller of ``batch`` (it ran: outputs or errors); ``now`` is its completion."""
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
        self.tally.outstanding -= n
        waits.append(queue_s)
        submits.append(t_submit)
        loops = [r.loop for r in whole]
        loop = loops[0]
        if loop is not None and loops.count(loop) == n:  # the usual: one event loop's callers
            flat: list[Any] = [None] * (2 * n)  # futures and answers, alternating (deliver_async)
            flat[::2] = [r.future for r in whole]
            flat[1::2] = values
            self.answers.by_loop.setdefault(loop, []).extend(flat)
            return
        for request, value in zip(whole, values, strict=True):
            self.answers.add(request, value, None)

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
                self.finish(request, None, None, cancelled=True)
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
        members = group.members
        t_submit = np.asarray(members.t_submits)
        member_waits = queue_s - (t_submit - group.t_submit)  # the group's is its earliest member's
        if members.skip:  # answered already: their deadline passed while the batch ran
            t_submit, member_waits = t_submit[members.skip :], member_waits[members.skip :]
        members.queue_ms = rounded_ms(member_waits)
        gone = group.cancelled_flags()
        self._answer(group, value, None)
        if True in gone:
            live = ~np.asarray(gone)
            self.stats.record_request("cancelled", count=len(gone) - int(live.sum()))
            t_submit, member_waits = t_submit[live], member_waits[live]
        waits.append(member_waits)
        submits.append(t_submit)

    def _fail_segments(self, outcome: Outcome) -> None:
        err = outcome.error
        for seg in outcome.segments:
            request = seg.request
            if request.done:
                continue
            if request.cancelled:
                self.finish(request, None, None, cancelled=True)
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
            self.finish(request, None, error)

    def _sweep(self, batch: Batch) -> None:
        """Finish whoever this batch leaves in no outcome (see ``execute.left_out``)."""
        for request in left_out(batch):
            if request.cancelled:
                self.finish(request, None, None, cancelled=True)
            else:  # cannot happen by construction; never leave a caller waiting
                self.finish(request, None, ModelError(f"model {self.name!r}: the batch lost it", model=self.name))

    # -- groups (group.GroupRequest)

    def prune(self, group: GroupRequest) -> None:
        """Before its batch: drop a queued group's cancelled members (their rows never run)."""
        if group.done:
            return
        dropped, rows = group.prune()
        if not dropped:
            return
        self.tally.outstanding -= dropped
        self.tally.unqueue(dropped, rows)
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
            self.tally.unqueue(group.count, remaining)
        members = group.split_up()  # the live ones
        self.pending.extendleft(reversed(members))
        self.tally.requeue(group.count, sum([m.rows for m in members]))
        for member in members:  # each watched under its own deadline, if it has one
            if member.deadline is not None:
                self.deadlines.add(member)

    def expire(self, group: GroupRequest, now: float) -> None:
        """A group's deadline passed: time out the members whose own deadlines did.

        They are a prefix: a group's deadlines rise with its members' order (see
        ``group``). Queued, they are cut off the group and their rows never run; in a
        running batch, they are answered now and the batch's outputs skip them. The rest
        stay, with the next member's deadline as the group's.
        """
        if group.done:
            return
        k = group.expired_until(now)
        if group.taken == 0:
            if k >= group.count:
                self.timeout(group)
            elif k:
                self.timeout(group.split_off(k))
            return
        if k > group.members.skip:
            everyone = k == len(group.parts)
            self.timeout(group.skip_to(k))
            if everyone:
                group.done = True  # each member has its outcome; the outputs go to no one

    # -- one request

    def timeout(self, request: Request) -> None:
        """Fail ``request``: its deadline passed (in the queue, or while its batch ran).

        A group's members each get their own timeout in the message when they passed
        timeouts of their own (``Members.errors``).
        """
        assert request.deadline is not None
        where = "in the queue" if request.taken == 0 else "while its batch ran"
        if type(request) is GroupRequest and request.members.deadlines is not None:
            timeouts = request.timeouts()
            request.members.errors = [self._timed_out(t, where) for t in timeouts]
            error = self._timed_out(timeouts[0], where)
        else:  # (a group's first member's: they all have the same timeout)
            error = self._timed_out(request.deadline - request.t_submit, where)
        self.finish(request, None, error)

    def _timed_out(self, timeout: float, where: str) -> PredictTimeout:
        return PredictTimeout(
            f"model {self.name!r}: deadline of {timeout * 1e3:.0f} ms passed {where}", model=self.name
        )

    def finish(
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
        tally = self.tally
        tally.outstanding -= count
        remaining = request.rows - request.taken
        if remaining:  # still (partly) queued: it leaves the queue now
            request.taken = request.rows
            tally.unqueue(count, remaining)
        if not deliver:
            return
        self.answers.add(request, value, error)
