"""When to close a batch: now, or after waiting a little for batch-mates.

Evaluated whenever the runner could take a batch (and again on every arrival):

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

Batches also form while the runner is busy: whatever queued meanwhile goes out as soon
as the runner frees up, under the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIN_PATIENCE", "ArrivalTracker", "PeakTracker", "dispatch_delay"]

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
