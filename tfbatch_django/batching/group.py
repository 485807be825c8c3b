"""A group of gathered callers as one request: how the scheduler cuts, prunes, times out
and breaks it up, and how its members' answers are cut apart on their loop.

``coalesce.Gatherer`` builds one ``GroupRequest`` per event loop per loop iteration. To the
scheduler it is one request of ``rows`` rows that counts as ``count`` requests; its
``future`` is its ``Members``, which ``deliver_async`` resolves like a future, each member
with its own rows and ``BatchInfo``.

Each member keeps its own outcome. A member cancelled by its caller is dropped before
its batch (``prune``) and counted as cancelled. When a model call fails, the group is
broken up into its members (``split_up``), which are run again one by one, so that
bisection finds the bad rows and only their callers get the error (``Outcomes._explode``).

Deadlines: each member has its own, and within a group they rise with the members' order
(``math.inf``, none, last); the group's deadline is its first live member's. Under
``TIMEOUT_MS`` alone a member's deadline is its submit time plus the timeout (the group's
``timeout``: rising with the order the members came in, nothing is stored per member).
Members with a ``timeout`` of their own carry a list of deadlines (``Members.deadlines``),
and ``coalesce`` sorts the members by it (stably; rows, futures, submit times and
deadlines together) when they came in another order: no caller cares where its rows sit
in the group, each gets its own. When the group's deadline passes, the members whose
deadlines passed (a prefix) are answered with ``PredictTimeout`` at their own deadline,
each with its own timeout in the message, and the others stay: a queued group is cut
(``split_off``: their rows never run), a running one skips them when its outputs come
back (``skip_to``, ``Members.skip``). A loop iteration can span milliseconds and callers
pass timeouts of any length, so the group's deadline is never one deadline for all.
"""

from __future__ import annotations

import asyncio
import copy
import math
from bisect import bisect_right
from itertools import accumulate
from typing import Any

import numpy as np

from .request import Prediction, Request, predictions

__all__ = ["GroupRequest", "MemberRequest", "Members", "fresh_error"]

_NO_ARRAYS: dict[str, np.ndarray] = {}
_INF = math.inf


def fresh_error(error: BaseException) -> BaseException:
    """A copy of ``error`` for one more caller: an exception raised in several tasks
    would collect all their tracebacks."""
    try:
        clone = copy.copy(error)
    except Exception:  # noqa: BLE001 - an exotic exception: share it rather than lose it
        return error
    clone.__cause__ = error.__cause__
    return clone


class Members:
    """A group's callers: their futures, and how to answer them on their event loop.

    ``deliver_async`` treats it as it treats a future: ``done``, ``set_result``,
    ``set_exception``; each member is answered with its own rows and ``BatchInfo``.
    """

    __slots__ = ("deadlines", "errors", "futures", "queue_ms", "sizes", "skip", "t_submits")

    def __init__(
        self,
        futures: list[asyncio.Future[Prediction]],
        t_submits: list[float],
        sizes: list[int] | None,
        deadlines: list[float] | None = None,
    ):
        self.futures = futures
        self.t_submits = t_submits
        #: Rows per member, or None when every member has one row (the usual case).
        self.sizes = sizes
        #: Each member's deadline, non-decreasing (``math.inf``: none), when some member
        #: passed a ``timeout`` of its own; else None (see ``GroupRequest.deadline_of``).
        self.deadlines = deadlines
        #: Each live member's own error, when they differ (timeouts of different lengths):
        #: set by the scheduler before it answers the group, as ``queue_ms``.
        self.errors: list[BaseException] | None = None
        #: Each live member's queue time, set by the scheduler when it answers the group.
        self.queue_ms: list[float] = []
        #: Members answered already (their deadline passed while the batch ran): the
        #: first ``skip``; their rows are in the batch, but they get no second answer.
        self.skip = 0

    def done(self) -> bool:
        return False  # each member is checked on its own

    def set_result(self, prediction: Prediction) -> None:
        outputs, info = prediction
        items = list(outputs.items())
        if self.sizes is None:  # one row each: numpy cuts the views
            if len(items) == 1:
                name, out = items[0]
                parts = [{name: v} for v in out[:, None]]
            else:
                keys = [k for k, _ in items]
                parts = [dict(zip(keys, row, strict=True)) for row in zip(*(v[:, None] for _, v in items), strict=True)]
        else:
            ends = list(accumulate(self.sizes))
            starts = [0, *ends[:-1]]
            parts = [{k: v[a:b] for k, v in items} for a, b in zip(starts, ends, strict=True)]
        futures = self.futures
        if self.skip:
            parts, futures = parts[self.skip :], futures[self.skip :]
        values = predictions(parts, info.size, info.padded_size, self.queue_ms, info.run_ms, info.batches)
        for future, value in zip(futures, values, strict=False):
            try:  # noqa: SIM105 - free in 3.11, where contextlib.suppress costs a call per member
                future.set_result(value)
            except asyncio.InvalidStateError:  # cancelled by its caller meanwhile
                pass

    def set_exception(self, error: BaseException) -> None:
        errors = self.errors
        for i, future in enumerate(self.futures[self.skip :]):
            if not future.done():
                future.set_exception(fresh_error(error) if errors is None else errors[i])


class GroupRequest(Request):
    """Requests of one event loop's coroutines, posted together (see the module docstring).

    To the scheduler it is one request of ``rows`` rows that counts as ``count`` requests
    (queue limit, statistics, outstanding). Its ``future`` is its ``Members``. Its
    ``t_submit`` is its earliest member's; its ``deadline`` its first live member's.
    """

    __slots__ = ("count", "input", "members", "parts", "timeout")

    def __init__(
        self,
        input_name: str,
        arrays: list[np.ndarray],
        futures: list[asyncio.Future[Prediction]],
        t_submits: list[float],
        loop: asyncio.AbstractEventLoop,
        sizes: list[int] | None = None,
        rows: int | None = None,
        timeout: float | None = None,
        deadlines: list[float] | None = None,
    ) -> None:
        if rows is None:  # else ``sizes`` (None: one row each) and ``rows`` are known (``cut``)
            row_counts = [a.shape[0] for a in arrays]
            rows = sum(row_counts)
            sizes = None if rows == len(futures) else row_counts
        members = Members(futures, t_submits, sizes, deadlines)
        super().__init__(_NO_ARRAYS, rows, None, 0.0, None, None, loop, members)  # type: ignore[arg-type]
        self.input = input_name
        self.parts = arrays
        self.members = members
        self.count = len(futures)
        #: Without ``members.deadlines``: each member's deadline is its submit time plus
        #: this (the model's TIMEOUT_MS), or None. With them, None.
        self.timeout = timeout
        self._first_left()

    def rows_of(self, name: str, start: int, stop: int) -> list[np.ndarray]:
        if start == 0 and stop == self.rows:
            return self.parts
        sizes = self.members.sizes
        if sizes is None:
            return self.parts[start:stop]
        parts: list[np.ndarray] = []
        at = 0
        for arr, n in zip(self.parts, sizes, strict=True):
            lo, hi = max(start - at, 0), min(stop - at, n)
            if lo < hi:
                parts.append(arr if (lo == 0 and hi == n) else arr[lo:hi])
            at += n
            if at >= stop:
                break
        return parts

    def _members(self, a: int, b: int, rows: int | None = None) -> GroupRequest:
        """Members ``a:b`` as a group of their own (``rows``: theirs, when known)."""
        members, loop = self.members, self.loop
        assert loop is not None
        sizes, deadlines = members.sizes, members.deadlines
        part_sizes = None if sizes is None else sizes[a:b]
        if rows is None:
            rows = b - a if part_sizes is None else sum(part_sizes)
        return GroupRequest(
            self.input,
            self.parts[a:b],
            members.futures[a:b],
            members.t_submits[a:b],
            loop,
            part_sizes,
            rows,
            self.timeout,
            None if deadlines is None else deadlines[a:b],
        )

    def cut(self, room: int) -> tuple[Request, GroupRequest | None]:
        """Split off the members whose rows fit in ``room``: (them, the rest).

        Groups are cut between members, so each caller's rows ride in one batch and its
        ``BatchInfo`` is its own batch's. When not even the first member fits, it comes
        off alone, as a plain request the scheduler may cut over batches as usual.
        """
        sizes = self.members.sizes
        if sizes is None:  # one row each
            fit = min(room, self.count)
            head_rows = fit
        else:
            ends = list(accumulate(sizes))
            fit = bisect_right(ends, room)
            head_rows = ends[fit - 1] if fit else 0
        head: Request
        if fit:
            head = self._members(0, fit, head_rows)
        else:
            fit = 1
            head_rows = self.parts[0].shape[0]
            head = self.split_up_one(0)
        if fit == self.count:
            return head, None
        return head, self._members(fit, self.count, self.rows - head_rows)

    def pieces(self, limit: int) -> list[GroupRequest]:
        """The group as consecutive groups of at most ``limit`` rows each (a member with
        more rows than that alone in its piece), in one pass.

        What ``cut`` leaves over goes back in pieces: cutting the rest again at every batch
        would copy its lists once per batch, quadratic in the group's size (a thousand
        callers gathered for a model with ``MAX_BATCH_SIZE`` 1).
        """
        if self.rows <= limit:
            return [self]
        sizes = self.members.sizes or [1] * self.count
        pieces: list[GroupRequest] = []
        start = rows = 0
        for i, n in enumerate([*sizes, limit + 1]):  # the sentinel closes the last piece
            if rows and rows + n > limit:
                pieces.append(self._members(start, i, rows))
                start, rows = i, 0
            rows += n
        return pieces

    def prune(self) -> tuple[int, int]:
        """Drop the members whose callers gave up; returns how many, and their rows."""
        gone = self.cancelled_flags()
        if True not in gone:
            return 0, 0
        members = self.members
        sizes = members.sizes or [1] * self.count
        keep = [i for i, g in enumerate(gone) if not g]
        dropped_rows = self.rows - sum(sizes[i] for i in keep)
        self.parts = [self.parts[i] for i in keep]
        members.futures = [members.futures[i] for i in keep]
        members.t_submits = [members.t_submits[i] for i in keep]
        if members.sizes is not None:
            members.sizes = [sizes[i] for i in keep]
        if members.deadlines is not None:
            members.deadlines = [members.deadlines[i] for i in keep]
        dropped = self.count - len(keep)
        self.count = len(keep)
        self.rows -= dropped_rows
        if keep:
            self._first_left()
        return dropped, dropped_rows

    def _first_left(self) -> None:
        """The group's submit time and deadline: its members' (when it is made, and when
        members left it while queued)."""
        members = self.members
        deadlines = members.deadlines
        if deadlines is None:  # the members came in order: the first is the earliest
            self.t_submit = members.t_submits[0]
            self.deadline = None if self.timeout is None else self.t_submit + self.timeout
        else:  # sorted by deadline (coalesce), not by submit time
            self.t_submit = min(members.t_submits)
            self.deadline = deadlines[0] if deadlines[0] < _INF else None

    def cancelled_flags(self) -> list[bool]:
        """Which live members' callers gave up (read on the scheduler thread)."""
        members = self.members
        futures = members.futures[members.skip :] if members.skip else members.futures
        return [f.cancelled() for f in futures]

    def abandoned(self) -> bool:
        """Whether every live member's caller gave up (read on the executor threads): then a
        batch formed with the group need not run, as for a caller's own cancelled request."""
        members = self.members
        return all(f.cancelled() for f in members.futures[members.skip :])

    def split_up(self) -> list[Request]:
        """The live members as requests of their own (after a failed model call)."""
        return [self.split_up_one(i) for i in range(self.members.skip, len(self.parts))]

    def split_up_one(self, i: int) -> Request:
        """Member ``i`` as a request of its own, with its own deadline."""
        arr, future, t_submit = self.parts[i], self.members.futures[i], self.members.t_submits[i]
        return MemberRequest(
            {self.input: arr}, arr.shape[0], self.deadline_of(i), t_submit, None, None, self.loop, future
        )

    # -- deadlines (they rise with the members' order)

    def deadline_of(self, i: int) -> float | None:
        """Member ``i``'s deadline, or None."""
        deadlines = self.members.deadlines
        if deadlines is not None:
            return deadlines[i] if deadlines[i] < _INF else None
        return None if self.timeout is None else self.members.t_submits[i] + self.timeout

    def timeouts(self) -> list[float]:
        """Each live member's own timeout in seconds (its deadline less its submit time),
        for a group with a list of deadlines."""
        members = self.members
        a = members.skip
        assert members.deadlines is not None
        return [d - t for d, t in zip(members.deadlines[a:], members.t_submits[a:], strict=True)]

    def expired_until(self, now: float) -> int:
        """How many members, from the first, have a deadline at or before ``now``."""
        deadlines = self.members.deadlines
        if deadlines is not None:
            return bisect_right(deadlines, now)
        assert self.timeout is not None
        timeout = self.timeout
        return bisect_right(self.members.t_submits, now, key=lambda t: t + timeout)

    def split_off(self, k: int) -> GroupRequest:
        """Queued: the first ``k`` members leave as a group of their own; this one keeps the rest.

        In place, as ``prune``: the group stays where it is in the queue.
        """
        members = self.members
        assert self.taken == 0 and 0 < k < self.count
        head = self._members(0, k)
        self.parts = self.parts[k:]
        members.futures = members.futures[k:]
        members.t_submits = members.t_submits[k:]
        if members.sizes is not None:
            members.sizes = members.sizes[k:]
        if members.deadlines is not None:
            members.deadlines = members.deadlines[k:]
        self.count -= k
        self.rows -= head.rows
        self._first_left()
        return head

    def skip_to(self, k: int) -> GroupRequest:
        """Running: members ``skip:k`` are answered apart (a group of their own, its rows
        counted as taken); the batch's outputs will skip them. Nothing else changes, so
        the executor thread's view of the batch (rows, offsets, bisection) stays true.
        """
        members = self.members
        assert members.skip < k <= len(self.parts)
        a = members.skip
        head = self._members(a, k)
        head.taken = head.rows
        members.skip = k
        self.count -= k - a
        self.deadline = self.deadline_of(k) if k < len(self.parts) else None
        return head


#: ``Request.cancelled``'s own slot, which ``MemberRequest.cancelled`` wraps.
_CANCELLED: Any = Request.__dict__["cancelled"]


class MemberRequest(Request):
    """One gathered caller's request on its own: a member cut off its group because it
    does not fit a batch, or one of a group broken up after a failed model call.

    Its caller gives up by cancelling its future, and no done callback turns that into
    ``cancelled`` (gathered futures have none, and the scheduler thread cannot add one
    safely), so ``cancelled`` reads the future too, as ``GroupRequest.cancelled_flags``
    does. Without it, a member cut over several batches ran to its last row after its
    caller gave up, and a broken-up member was run again and bisected: both counted as
    answered, not cancelled (test_coalesce).
    """

    __slots__ = ()

    @property
    def cancelled(self) -> bool:
        future = self.future
        return bool(_CANCELLED.__get__(self)) or (future is not None and future.cancelled())

    @cancelled.setter
    def cancelled(self, value: bool) -> None:
        _CANCELLED.__set__(self, value)
