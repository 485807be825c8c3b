"""Where callers, the executor threads and the scheduler thread meet.

Everything shared sits here, behind one lock held for a few assignments at a time:
callers post requests (refused at once past ``MAX_QUEUE_SIZE``), executors post finished
batches, and the scheduler swaps both lists out in one go and sleeps here between rounds.

While the scheduler sleeps, a caller wakes it only when its arrival could change the
scheduler's decision, as the dispatch policy's ``WakeRule`` says (e.g. enough rows for a
full batch, enough requests for "every recent caller is waiting", or a deadline earlier
than the planned wake-up): this module has no opinion of its own. Wake-ups travel as
tokens on a ``SimpleQueue``, whose put/get are C: ~4 µs for the caller, not the ~15 µs of
a ``threading.Event``.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .execute import Batch
    from .policy import WakeRule
    from .request import Request
    from .stats import BatcherStats

__all__ = ["MAX_SLEEP", "Mailbox"]

#: The longest the scheduler sleeps in one go (seconds), whatever it waits for.
MAX_SLEEP = 60.0


class Mailbox:
    """The batcher's shared state; every field is read and written under ``lock``."""

    def __init__(self, name: str, max_queue_size: int, stats: BatcherStats | None = None) -> None:
        self.name = name
        #: ``stats.requests`` is counted here, under this lock (one lock per request, not two).
        self.stats = stats
        self.max_queue_size = max_queue_size
        self.lock = threading.Lock()
        self.open = False  # accepting requests (the scheduler runs)
        self.closing = False
        self.depth = 0  # requests accepted and not yet fully dispatched or dropped
        self.queued_rows = 0
        self._inbox: list[Request] = []
        self._finished: list[Batch] = []
        self._sleeping = False
        self._rule: WakeRule | None = None  # set while the scheduler sleeps
        self._wake: queue.SimpleQueue[None] = queue.SimpleQueue()

    # -- callers and executors

    def post(self, request: Request) -> str | None:
        """Queue a caller's request; returns why it was refused, or None.

        A ``GroupRequest`` counts as its ``count`` requests, and is refused whole when
        they do not all fit (``coalesce.Gatherer`` posts only as many as fit).
        """
        deadline = request.deadline
        count = request.count
        with self.lock:
            if self.closing or not self.open:
                return f"model {self.name!r} is not serving (shutting down)"
            if self.depth + count > self.max_queue_size:
                return self._overloaded()
            self._inbox.append(request)
            if self.stats is not None:
                self.stats.requests += count
            self.depth += count
            self.queued_rows += request.rows
            rule = self._rule
            wake = rule is not None and rule.wakes(self.queued_rows, self.depth, deadline)
            if wake:
                # One wake-up per sleep: the callers behind this one need not pay for
                # another (bench_batcher: with 1,024 callers, nearly every arrival
                # during a batch used to put a token).
                self._rule = None
                self._sleeping = False
        if wake:
            self._wake.put(None)
        return None

    def count_accepted(self, requests: int) -> None:
        """Count requests as accepted that never reach the queue (``coalesce``: their
        callers gave up before their group was posted; they end as cancelled)."""
        with self.lock:
            if self.stats is not None:
                self.stats.requests += requests

    def refusal(self) -> str:
        """Why a request would be refused now (``coalesce.Gatherer``, past the queue limit)."""
        with self.lock:
            if self.closing or not self.open:
                return f"model {self.name!r} is not serving (shutting down)"
            return self._overloaded()

    def _overloaded(self) -> str:
        return (
            f"model {self.name!r} is overloaded: {self.depth} requests queued "
            f"(MAX_QUEUE_SIZE={self.max_queue_size}); retry later"
        )

    def post_finished(self, batch: Batch) -> None:
        with self.lock:
            self._finished.append(batch)
            wake = self._sleeping
            self._sleeping = False
            self._rule = None
        if wake:
            self._wake.put(None)

    def close(self) -> None:
        with self.lock:
            self.closing = True
        self._wake.put(None)

    # -- the scheduler

    def take(self) -> tuple[list[Request], list[Batch], bool]:
        """New requests, finished batches, and whether the batcher is closing."""
        with self.lock:
            inbox, self._inbox = self._inbox, []
            finished, self._finished = self._finished, []
            return inbox, finished, self.closing

    def empty(self) -> bool:
        with self.lock:
            return not self._inbox and not self._finished

    def unqueue(self, requests: int, rows: int) -> None:
        """Requests and rows that left the queue (dispatched, expired, cancelled)."""
        with self.lock:
            self.depth -= requests
            self.queued_rows -= rows

    def requeue(self, requests: int, rows: int) -> None:
        """Requests and rows back in the queue (a group broken up into its members)."""
        with self.lock:
            self.depth += requests
            self.queued_rows += rows

    def sleep(self, wake_at: float, rule: WakeRule) -> None:
        """Block until ``wake_at`` (perf_counter time) or an arrival ``rule`` says is news."""
        with self.lock:
            if self._inbox or self._finished:
                return
            self._sleeping = True
            self._rule = rule
        # Every wait is bounded: a far-away wake-up (a huge deadline) is just a round
        # that finds nothing to do, never a timeout the queue cannot represent.
        timeout = min(max(wake_at - time.perf_counter(), 0.0), MAX_SLEEP)
        with contextlib.suppress(queue.Empty):
            self._wake.get(timeout=timeout)
        with self.lock:
            self._sleeping = False
            self._rule = None
        # Tokens put while we were waking up are stale: the next round sees their work.
        with contextlib.suppress(queue.Empty):
            while True:
                self._wake.get_nowait()
