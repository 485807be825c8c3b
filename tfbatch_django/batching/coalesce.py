"""Coroutine callers on one event loop, gathered into one request per loop iteration.

A server's event loop handles a burst of messages in one iteration: with many clients,
hundreds of coroutines call ``predict()`` between two of its ``select`` calls. Each used
to cost the batcher a ``Request``, a locked post to the mailbox, and its own pass through
every step of the scheduler. Gathered, they cost a future and three list appends on the
loop; the scheduler sees one ``GroupRequest`` (``group``) per loop iteration, and the
loop cuts the answers apart when they come back (bench_batcher, "no-op model" rows: the
batcher's cost per request, against a bare asyncio round trip measured in the same run).

Nothing is delayed: the group is posted by a callback the first member schedules with
``call_soon``, which runs in that same iteration, after the coroutines that were ready.
Only requests that can share every step are gathered: one array for the model's single
input (its row shape, a dtype it takes or is cast from). Everything else goes the usual
way, one ``Request`` each. Each member keeps its own outcome and its own deadline (see
``group``): none, the model's default (``TIMEOUT_MS``: its submit time plus the timeout,
computed when needed, never stored), or the ``timeout`` its caller passed (checked in the
caller's frame by the batcher, then stored, ``add_timed``). The worker server and the
serving doors pass timeouts of their own, each what is left of its client's: in any
order. The scheduler's expiry cuts a group's members by deadline as a prefix, so at
``flush`` a group whose deadlines do not rise with its members' order is sorted by them
(stably; rows, futures, submit times and deadlines together). A group with no member
of its own ``timeout`` costs nothing more: no list of deadlines, no check, no sort.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from operator import gt
from typing import Any

import numpy as np

from ..exceptions import Overloaded
from .group import GroupRequest, fresh_error
from .mailbox import Mailbox
from .request import Prediction
from .stats import BatcherStats

__all__ = ["Gatherer"]

logger = logging.getLogger("tfbatch_django.batching")

_INF = math.inf


class _Open:
    """The group an event loop is gathering during its current iteration."""

    __slots__ = ("arrays", "futures", "t_submits", "timed")

    def __init__(self) -> None:
        self.arrays: list[np.ndarray] = []
        self.futures: list[asyncio.Future[Prediction]] = []
        self.t_submits: list[float] = []
        #: The members that passed a timeout of their own: {index: deadline (inf: none)}.
        self.timed: dict[int, float] | None = None


class Gatherer:
    """One batcher's open groups, one per event loop; each posted at the end of its iteration."""

    def __init__(
        self, name: str, input_name: str, mailbox: Mailbox, stats: BatcherStats, timeout: float | None = None
    ) -> None:
        self.name = name
        self.input = input_name
        #: A member's deadline unless it passed a timeout of its own: its submit time plus
        #: this (the model's TIMEOUT_MS), or None.
        self.timeout = timeout
        self.mailbox = mailbox
        self.stats = stats
        #: Touched only by each loop's own thread, for its own key.
        self._open: dict[asyncio.AbstractEventLoop, _Open] = {}

    def add(self, loop: asyncio.AbstractEventLoop, array: np.ndarray) -> asyncio.Future[Prediction]:
        """Gather ``array`` (already checked) into ``loop``'s group; its caller's future."""
        future: asyncio.Future[Prediction] = loop.create_future()
        group = self._open.get(loop)
        if group is None:
            group = self._open[loop] = _Open()
            loop.call_soon(self.flush, loop)
        group.arrays.append(array)
        group.futures.append(future)
        group.t_submits.append(time.perf_counter())
        return future

    def add_timed(
        self, loop: asyncio.AbstractEventLoop, array: np.ndarray, timeout: float | None
    ) -> asyncio.Future[Prediction]:
        """``add``, for a caller that passed a ``timeout`` of its own (already checked:
        seconds, or None for none): its deadline is its submit time plus that."""
        future = self.add(loop, array)
        group = self._open[loop]
        if group.timed is None:
            group.timed = {}
        group.timed[len(group.futures) - 1] = _INF if timeout is None else group.t_submits[-1] + timeout
        return future

    def drain(self, timeout: float) -> None:
        """Before the batcher closes: see every open group posted (bounded by ``timeout``).

        Their callers called ``predict()`` before ``close()``, so they are served, not
        refused. The calling thread's own loop is flushed here (it cannot run its
        callback while we block); other running loops get ``timeout`` to run theirs.
        """
        own = asyncio.events._get_running_loop()
        if own is not None and own in self._open:
            self.flush(own)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not any(loop.is_running() for loop in list(self._open)):
                break
            time.sleep(0.001)
        # A loop stopped (``loop.stop()``) in the iteration its coroutines called
        # ``predict()`` still holds its flush: it runs if that loop runs again. A loop
        # closed since never will, and its callers' tasks died with it: let it go.
        for loop in [loop for loop in list(self._open) if loop.is_closed()]:
            self._open.pop(loop, None)

    def flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Post ``loop``'s group (on that loop, once per iteration). Never raises."""
        group = self._open.pop(loop, None)
        if group is None:
            return
        futures = group.futures
        posted = False
        try:
            # Members whose callers gave up already are posted all the same: the
            # scheduler drops them before their batch and counts them as cancelled.
            room = self.mailbox.max_queue_size - self.mailbox.depth  # a hint; post() decides
            if room < len(futures):  # the queue is nearly full: who fits goes, the rest is refused
                fit = max(room, 0)
                self._refuse(futures[fit:], self.mailbox.refusal())
                del group.arrays[fit:], futures[fit:], group.t_submits[fit:]
                if not futures:
                    return
            if group.timed is None:  # every member's deadline is the model's default (or none)
                request = GroupRequest(self.input, group.arrays, futures, group.t_submits, loop, timeout=self.timeout)
            else:
                request = GroupRequest(
                    self.input, group.arrays, futures, group.t_submits, loop, deadlines=self._deadlines(group)
                )
            refusal = self.mailbox.post(request)
            posted = refusal is None
            if refusal is not None:
                self._refuse(futures, refusal)
        except BaseException as exc:  # never leave a caller waiting
            logger.exception("model %r: could not post gathered requests", self.name)
            if not posted:  # once posted, its callers are the scheduler's to answer
                self._fail(futures, exc)

    def _deadlines(self, group: _Open) -> list[float] | None:
        """Each member's deadline (``math.inf``: none), non-decreasing: the members are
        sorted by them, in place, when they came in another order. None if none has one."""
        t_submits = group.t_submits
        n = len(t_submits)
        default = self.timeout
        deadlines = [_INF] * n if default is None else [t + default for t in t_submits]
        assert group.timed is not None
        for i, deadline in group.timed.items():
            if i < n:  # (members over the queue's room were refused)
                deadlines[i] = deadline
        if True in map(gt, deadlines, deadlines[1:]):
            order = sorted(range(n), key=deadlines.__getitem__)  # stable: ties keep their order
            together: tuple[list[Any], ...] = (group.arrays, group.futures, t_submits, deadlines)
            for values in together:
                values[:] = [values[i] for i in order]
        return None if deadlines[0] == _INF else deadlines

    def _fail(self, futures: list[asyncio.Future[Prediction]], error: BaseException) -> None:
        """Answer callers whose group could not be posted with ``error``; counted as
        accepted and failed (or cancelled), so every caller is in the statistics once."""
        waiting = [f for f in futures if not f.done()]
        gone = sum([f.cancelled() for f in futures])
        self.mailbox.count_accepted(len(waiting) + gone)
        if gone:
            self.stats.record_request("cancelled", count=gone)
        if waiting:
            self.stats.record_request("error", count=len(waiting))
        for future in waiting:
            future.set_exception(fresh_error(error))

    def _refuse(self, futures: list[asyncio.Future[Prediction]], reason: str) -> None:
        """Refuse ``futures``: ``Overloaded``, except to callers who already gave up
        (accepted and cancelled, as if their request had been posted)."""
        gone = sum([f.cancelled() for f in futures])
        if gone:
            self.mailbox.count_accepted(gone)
            self.stats.record_request("cancelled", count=gone)
        if len(futures) > gone:
            self.stats.record_request("overloaded", count=len(futures) - gone)
        for future in futures:
            if not future.done():
                future.set_exception(Overloaded(reason, model=self.name))
