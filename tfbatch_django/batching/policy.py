"""The dispatch policy: one object that decides when a batch goes and what wakes the scheduler.

A policy answers two questions, and nothing else in the batcher has an opinion on
either (so a new policy, say a latency target or priorities, is one file: subclass
``DispatchPolicy`` and pass it to ``Batcher(policy=...)``):

* ``next_dispatch(view)``: dispatch a batch now, wait a little, or wait for news;
* ``wake_rule(view, until)``: while the scheduler sleeps, which arrival is news (the
  ``Mailbox`` asks the rule under its lock, on the caller's thread, so it must be cheap).

``AdaptivePolicy`` is the default. It is evaluated whenever the runner could take a batch
(and again on every arrival that its wake rule lets through):

1. the queue already holds a full batch -> go;
2. the oldest queued request has waited ``max_latency`` -> go;
3. every caller seen recently is already waiting on us -> go. "Recently" is the peak
   number of outstanding requests over the last second or so: a lone sequential
   client never waits, and 64 closed-loop clients go the moment the 64th is in;
4. nothing else is arriving -> go. Arrivals are tracked as a stream: the typical gap
   between them (a moving average over gaps shorter than ``max_latency``); once no
   request has come for four typical gaps, the stream has stopped and waiting would
   only add latency (the stragglers of a burst go at once);
5. otherwise wait, at most until the oldest request's ``max_latency`` is up.

Batches also form while the runner is busy: one full batch may be assembled ahead (and
staged), and whatever queued meanwhile goes out as soon as the runner frees up, under
the same rules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from .config import BatchConfig

__all__ = [
    "MIN_PATIENCE",
    "AdaptivePolicy",
    "ArrivalTracker",
    "DispatchPolicy",
    "PeakTracker",
    "QueueView",
    "WakeRule",
    "dispatch_delay",
]

_INF = math.inf

#: Shortest wait for a next arrival: below this, thread wake-up jitter dominates.
MIN_PATIENCE = 0.0002
#: How many typical gaps without an arrival mean the stream has stopped.
PATIENCE_GAPS = 4.0


def dispatch_delay(
    *,
    queued_rows: int,
    max_batch_size: int,
    oldest_age: float,
    max_latency: float,
    outstanding: int,
    recent_peak: int,
    since_last_arrival: float,
    arrival_gap: float | None,
) -> float:
    """Seconds to keep waiting before dispatching; 0 means dispatch now."""
    if queued_rows >= max_batch_size:
        return 0.0
    remaining = max_latency - oldest_age
    if remaining <= 0.0:
        return 0.0
    if outstanding >= recent_peak or arrival_gap is None:
        return 0.0
    patience = max(PATIENCE_GAPS * arrival_gap, MIN_PATIENCE)
    if since_last_arrival >= patience:
        return 0.0
    return min(remaining, patience - since_last_arrival)


@dataclass
class ArrivalTracker:
    """Moving average of the gap between consecutive arrivals within a stream.

    A gap longer than ``max_gap`` (the model's max latency) starts a new stream and
    says nothing about the rate, so it is not averaged in.
    """

    alpha: float = 0.25
    gap: float | None = None
    last: float | None = None

    def observe(self, t: float, max_gap: float) -> None:
        last = self.last
        if last is None or t > last:
            if last is not None and t - last <= max_gap:
                g = t - last
                self.gap = g if self.gap is None else self.gap + self.alpha * (g - self.gap)
            self.last = t
        elif last - t <= max_gap:  # arrived out of order (another thread): a near-zero gap
            self.gap = 0.0 if self.gap is None else self.gap * (1 - self.alpha)


@dataclass
class PeakTracker:
    """Rolling maximum of a gauge over the last one to two ``window`` lengths.

    Two buckets: the current one and the previous one, rotated every ``window``
    seconds; cheap to update on every arrival.
    """

    window: float = 0.5
    _current: int = 0
    _previous: int = 0
    _rotate_at: float = 0.0

    def update(self, value: int, now: float) -> int:
        if now >= self._rotate_at:
            # A gap longer than two windows forgets everything.
            self._previous = self._current if now < self._rotate_at + self.window else 0
            self._current = 0
            self._rotate_at = now + self.window
        if value > self._current:
            self._current = value
        return self._current if self._current > self._previous else self._previous


class QueueView(NamedTuple):
    """What the scheduler knows when it asks the policy (one per decision, not per request)."""

    now: float
    queued_rows: int  # rows waiting to be dispatched
    queued_requests: int  # requests with rows waiting
    oldest_submit: float | None  # submit time of the oldest waiting request
    outstanding: int  # accepted and not yet answered (queued or in a running batch)
    running: int  # batches handed to the runner and not finished
    closing: bool  # the batcher is shutting down: drain, do not wait


class WakeRule:
    """Which arrival wakes the sleeping scheduler: checked by ``Mailbox.post`` under its lock.

    Thresholds, so that the check costs the caller a few comparisons: the queue reaching
    ``rows`` rows or ``depth`` requests, or a request whose deadline is before ``until``
    (the planned wake-up). ``math.inf`` disables a threshold.
    """

    __slots__ = ("depth", "rows", "until")

    def __init__(self, rows: float = _INF, depth: float = _INF, until: float = _INF) -> None:
        self.rows = rows
        self.depth = depth
        self.until = until

    def wakes(self, queued_rows: int, depth: int, deadline: float | None) -> bool:
        return queued_rows >= self.rows or depth >= self.depth or (deadline is not None and deadline < self.until)

    def __repr__(self) -> str:
        return f"WakeRule(rows={self.rows}, depth={self.depth}, until={self.until})"


class DispatchPolicy:
    """When a batch goes, and which arrival is worth waking the scheduler for.

    The scheduler calls these on its own thread only; ``WakeRule.wakes`` runs on callers'
    threads. ``max_batch_size`` and ``max_concurrent`` are the policy's to know (from
    ``BatchConfig``): a batch never exceeds the first, and at most the second run at once.
    """

    def __init__(self, max_batch_size: int, max_latency: float, max_concurrent: int = 1) -> None:
        self.max_batch_size = max_batch_size
        self.max_latency = max_latency
        self.max_concurrent = max_concurrent

    @classmethod
    def from_config(cls, config: BatchConfig) -> DispatchPolicy:
        return cls(config.max_batch_size, config.max_latency, config.max_concurrent_batches)

    def on_arrivals(self, submit_times: Sequence[float], outstanding: int, now: float) -> None:
        """New requests reached the scheduler (one call per round, not per request)."""

    def on_batch_done(self, outstanding: int, now: float) -> None:
        """A batch came back; its callers are still waiting on the scheduler."""

    def next_dispatch(self, view: QueueView) -> float:
        """Seconds to wait before dispatching: 0 now, ``math.inf`` until something changes."""
        raise NotImplementedError

    def wake_rule(self, view: QueueView, until: float) -> WakeRule:
        """What may wake the scheduler while it sleeps until ``until`` (perf_counter time)."""
        raise NotImplementedError


class AdaptivePolicy(DispatchPolicy):
    """The default: full batches, a latency budget, "everyone is here", "nobody else is coming".

    See the module docstring for the rules; ``dispatch_delay`` is their arithmetic.
    """

    def __init__(self, max_batch_size: int, max_latency: float, max_concurrent: int = 1) -> None:
        super().__init__(max_batch_size, max_latency, max_concurrent)
        self.arrivals = ArrivalTracker()
        self.peak = PeakTracker()
        self.recent_peak = 0

    def on_arrivals(self, submit_times: Sequence[float], outstanding: int, now: float) -> None:
        # ArrivalTracker.observe, inlined: this runs once per request.
        tracker, max_gap = self.arrivals, self.max_latency
        alpha, gap, last = tracker.alpha, tracker.gap, tracker.last
        times = iter(submit_times)
        if last is not None and gap is not None:
            # The usual state, with fewer tests per arrival (the same arithmetic).
            keep = 1 - alpha
            for t in times:
                d = t - last
                if d > 0:
                    if d <= max_gap:
                        gap += alpha * (d - gap)
                    last = t
                elif -d <= max_gap:
                    gap *= keep
        for t in times:
            if last is None or t > last:
                if last is not None and t - last <= max_gap:
                    gap = t - last if gap is None else gap + alpha * (t - last - gap)
                last = t
            elif last - t <= max_gap:  # arrived out of order (another thread): a near-zero gap
                gap = 0.0 if gap is None else gap * (1 - alpha)
        tracker.gap, tracker.last = gap, last
        self.recent_peak = self.peak.update(outstanding, now)

    def on_batch_done(self, outstanding: int, now: float) -> None:
        # Everyone in the batch is still waiting on us: they count towards the recent
        # peak, so their next requests wait for each other instead of trickling out.
        self.recent_peak = self.peak.update(outstanding, now)

    def next_dispatch(self, view: QueueView) -> float:
        if view.running >= self.max_concurrent:
            # Busy: only a full batch is worth assembling ahead of time (one at most).
            if view.running > self.max_concurrent or view.queued_rows < self.max_batch_size:
                return _INF
            return 0.0
        if view.closing or view.oldest_submit is None:
            return 0.0
        return dispatch_delay(
            queued_rows=view.queued_rows,
            max_batch_size=self.max_batch_size,
            oldest_age=view.now - view.oldest_submit,
            max_latency=self.max_latency,
            outstanding=view.outstanding,
            recent_peak=self.recent_peak,
            since_last_arrival=view.now - (self.arrivals.last or view.now),
            arrival_gap=self.arrivals.gap,
        )

    def wake_rule(self, view: QueueView, until: float) -> WakeRule:
        if view.running < self.max_concurrent:
            if not view.queued_requests:
                return WakeRule(rows=1, until=until)  # idle: the first arrival is news
            # Requests not queued are in running batches; once the queue holds the rest
            # of the recent peak, every caller is here.
            in_batches = view.outstanding - view.queued_requests
            return WakeRule(rows=self.max_batch_size, depth=self.recent_peak - in_batches, until=until)
        if view.running == self.max_concurrent:
            return WakeRule(rows=self.max_batch_size, until=until)  # a full batch can be assembled ahead
        return WakeRule(until=until)
