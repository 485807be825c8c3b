"""Per-model counters and latency histograms, cheap enough to leave on.

Latencies go into fixed log-spaced buckets (about 19 % wide, 10 µs to 100 s) rather
than a sample window: recording is one ``bisect`` and an increment, and histograms with
the same buckets can be summed across worker processes and subtracted between two
snapshots to get "the last minute" percentiles. Percentiles are read back at the upper
edge of the bucket that holds them, so they are never optimistic by more than a bucket.

Every field is written by the batcher's scheduler thread, except the few counters that
callers bump at submit time, which the batcher guards with its own lock.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

__all__ = [
    "LATENCY_BOUNDS",
    "OUTCOMES",
    "BatcherStats",
    "LatencyHistogram",
    "StatsListener",
    "derived_figures",
    "percentile_from_buckets",
]

logger = logging.getLogger("tfbatch_django.batching")

#: How a request ended. "overloaded" and "invalid" never entered the queue.
OUTCOMES = ("ok", "timeout", "error", "cancelled", "overloaded", "invalid")


class StatsListener(Protocol):
    """Receives every recorded event, e.g. to feed Prometheus metrics.

    Called on the batcher's threads (the scheduler, or a caller for "overloaded" and
    "invalid"): keep it fast and non-blocking. Exceptions are logged and ignored.
    """

    def on_request(self, model: str, outcome: str, queue_wait: float | None, latency: float | None) -> None: ...

    def on_batch(self, model: str, rows: int, padded: int, run_time: float, queue_depth: int) -> None: ...


# Upper bounds in seconds: 10 µs * 2**(k/4), up to ~100 s. The last bucket is +inf.
LATENCY_BOUNDS: tuple[float, ...] = tuple(1e-5 * 2 ** (k / 4) for k in range(94))

_BOUNDS = np.array(LATENCY_BOUNDS)

#: The percentiles every latency summary reports.
PERCENTILES = (50, 95, 99)


def derived_figures(rows: int, batches: int, padding_rows: int) -> dict[str, float | None]:
    """Mean batch size and padding share from the counters (also over windows and sums)."""
    return {
        "mean_batch_size": round(rows / batches, 3) if batches else None,
        "padding_share": round(padding_rows / (rows + padding_rows), 4) if rows + padding_rows else 0.0,
    }


def percentile_from_buckets(counts: list[int], q: float, bounds: tuple[float, ...] = LATENCY_BOUNDS) -> float | None:
    """The q-th percentile (0-100) of a bucketed distribution, in seconds, or None if empty."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q / 100.0 * total
    running = 0
    for i, c in enumerate(counts):
        running += c
        if c and running >= rank:
            return bounds[i] if i < len(bounds) else bounds[-1]
    return bounds[-1]


@dataclass
class LatencyHistogram:
    """Count of observations per bucket plus their sum (for the mean).

    ``observe_many`` (a batch's worth) only keeps the array; arrays are bucketed together
    when ``FOLD_EVERY`` have piled up, or when the histogram is read. numpy's
    ``searchsorted`` lets go of the GIL, and the scheduler thread then waits to get it
    back from the event loop: two of those per batch cost the batcher more than the
    bucketing itself (bench_batcher: the scheduler's CPU per request).
    """

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))
    total: float = 0.0
    count: int = 0
    _unfolded: list[np.ndarray] = field(default_factory=list, repr=False, compare=False)

    #: Batches of observations kept before they are bucketed.
    FOLD_EVERY: ClassVar[int] = 64

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BOUNDS, seconds)] += 1
        self.total += seconds
        self.count += 1

    def observe_many(self, seconds: np.ndarray) -> None:
        """``observe`` each value (same buckets: ``bisect_left``), a batch at a time."""
        self._unfolded.append(seconds)
        self.count += len(seconds)
        if len(self._unfolded) >= self.FOLD_EVERY:
            self.fold()

    def fold(self) -> None:
        """Bucket the observations kept by ``observe_many``."""
        if not self._unfolded:
            return
        seconds = self._unfolded[0] if len(self._unfolded) == 1 else np.concatenate(self._unfolded)
        self._unfolded = []
        counts = np.bincount(np.searchsorted(_BOUNDS, seconds, side="left"), minlength=len(self.counts))
        mine = self.counts
        for i in np.flatnonzero(counts).tolist():
            mine[i] += int(counts[i])
        self.total += float(seconds.sum())

    def summary(self) -> dict[str, float | int | None]:
        """Percentiles and mean in milliseconds."""
        self.fold()
        out: dict[str, float | int | None] = {"count": self.count}
        out["mean_ms"] = round(self.total / self.count * 1e3, 4) if self.count else None
        for q in PERCENTILES:
            v = percentile_from_buckets(self.counts, q)
            out[f"p{q}_ms"] = None if v is None else round(v * 1e3, 4)
        return out

    def export(self) -> dict[str, Any]:
        """Raw form for aggregation, summable across processes.

        ``buckets`` is sparse: bucket index (as a string, for JSON) -> count; bucket i
        holds values up to ``LATENCY_BOUNDS[i]`` seconds (the last one, anything above).
        """
        self.fold()
        return {
            "buckets": {str(i): c for i, c in enumerate(self.counts) if c},
            "sum": self.total,
            "count": self.count,
        }


@dataclass
class BatcherStats:
    """Counters for one batcher. ``snapshot()`` returns a plain, JSON-ready dict."""

    max_batch_size: int
    name: str = "model"
    #: Shared, mutable list: listeners added later (to the registry) apply at once.
    listeners: list[StatsListener] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    requests: int = 0  # accepted (passed validation and the queue bound); the mailbox counts them
    rows: int = 0  # real rows computed
    completed: int = 0  # requests answered with a result
    batches: int = 0  # model calls on real batches (bisection retries counted apart)
    padding_rows: int = 0
    rejected: int = 0  # Overloaded at submit
    invalid: int = 0  # InvalidInput at submit
    timeouts: int = 0
    cancelled: int = 0
    errors: int = 0  # requests answered with ModelError
    failed_batches: int = 0  # model calls that raised (bisection retries included)
    bisect_calls: int = 0  # extra model calls made to isolate failing requests
    queue_wait: LatencyHistogram = field(default_factory=LatencyHistogram)
    run_time: LatencyHistogram = field(default_factory=LatencyHistogram)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    batch_sizes: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if not self.batch_sizes:
            self.batch_sizes = [0] * (self.max_batch_size + 1)

    def record_accepted(self) -> None:
        """A request passed validation and is being queued (the batcher's mailbox counts
        its own requests under its lock; this is for other users of these stats)."""
        with self.lock:
            self.requests += 1

    def record_refused(self) -> None:
        """The request counted by ``record_accepted`` was refused: the queue was full."""
        with self.lock:
            self.requests -= 1
        self.record_request("overloaded")

    def record_batch(
        self, rows: int, padded: int, run_seconds: float, failed_calls: int, extra_calls: int, queue_depth: int
    ) -> None:
        with self.lock:
            self.batches += 1
            self.rows += rows
            self.padding_rows += padded - rows
            self.batch_sizes[min(rows, self.max_batch_size)] += 1
            self.run_time.observe(run_seconds)
            self.failed_batches += failed_calls
            self.bisect_calls += extra_calls
        for listener in self.listeners:
            try:
                listener.on_batch(self.name, rows, padded, run_seconds, queue_depth)
            except Exception:
                logger.exception("stats listener %r failed", listener)

    def record_completions(self, timings: list[tuple[float, float]]) -> None:
        """Count requests answered with a result: (queue wait, end-to-end latency) each.

        One lock round per batch instead of one per request.
        """
        with self.lock:
            self.completed += len(timings)
            queue_wait, latency = self.queue_wait.observe, self.latency.observe
            for wait, total in timings:
                queue_wait(wait)
                latency(total)
        for listener in self.listeners:
            for wait, total in timings:
                try:
                    listener.on_request(self.name, "ok", wait, total)
                except Exception:
                    logger.exception("stats listener %r failed", listener)

    def record_completions_at(self, now: float, waits: np.ndarray, submits: np.ndarray) -> None:
        """Count requests answered with a result at ``now``: their queue waits and submit times.

        The batch's form of ``record_completions``: the histograms take the whole batch
        in a few numpy calls (bench_batcher: a per-request ``bisect`` was a visible part
        of the batcher's cost per request).
        """
        latency_arr = now - submits
        with self.lock:
            self.completed += len(waits)
            self.queue_wait.observe_many(waits)
            self.latency.observe_many(latency_arr)
        if self.listeners:
            for listener in self.listeners:
                for wait, total in zip(waits.tolist(), latency_arr.tolist(), strict=True):
                    try:
                        listener.on_request(self.name, "ok", wait, total)
                    except Exception:
                        logger.exception("stats listener %r failed", listener)

    def record_request(
        self, outcome: str, queue_wait: float | None = None, latency: float | None = None, *, count: int = 1
    ) -> None:
        """Count ``count`` requests' outcome (see ``OUTCOMES``); timings only for one "ok"."""
        with self.lock:
            if outcome == "ok":
                self.completed += count
                assert queue_wait is not None and latency is not None and count == 1
                self.queue_wait.observe(queue_wait)
                self.latency.observe(latency)
            elif outcome == "timeout":
                self.timeouts += count
            elif outcome == "error":
                self.errors += count
            elif outcome == "cancelled":
                self.cancelled += count
            elif outcome == "overloaded":
                self.rejected += count
            elif outcome == "invalid":
                self.invalid += count
            else:
                raise ValueError(f"unknown outcome {outcome!r}")
        for listener in self.listeners:
            for _ in range(count):
                try:
                    listener.on_request(self.name, outcome, queue_wait, latency)
                except Exception:
                    logger.exception("stats listener %r failed", listener)

    def snapshot(self, *, queue_depth: int, in_flight_batches: int) -> dict[str, Any]:
        with self.lock:
            now = time.time()
            figures = derived_figures(self.rows, self.batches, self.padding_rows)
            return {
                "started_at": self.started_at,
                "taken_at": now,
                "uptime_s": round(now - self.started_at, 3),
                "requests": self.requests,
                "rows": self.rows,
                "completed": self.completed,
                "batches": self.batches,
                "mean_batch_size": figures["mean_batch_size"],
                "batch_size_histogram": {str(size): n for size, n in enumerate(self.batch_sizes) if n},
                "padding_rows": self.padding_rows,
                "padding_share": figures["padding_share"],
                "queue_depth": queue_depth,
                "in_flight_batches": in_flight_batches,
                "rejected": self.rejected,
                "invalid": self.invalid,
                "timeouts": self.timeouts,
                "cancelled": self.cancelled,
                "errors": self.errors,
                "failed_batches": self.failed_batches,
                "bisect_calls": self.bisect_calls,
                "latency_ms": {
                    "queue_wait": self.queue_wait.summary(),
                    "run": self.run_time.summary(),
                    "end_to_end": self.latency.summary(),
                },
                "histograms": {
                    "queue_wait": self.queue_wait.export(),
                    "run": self.run_time.export(),
                    "end_to_end": self.latency.export(),
                },
            }
