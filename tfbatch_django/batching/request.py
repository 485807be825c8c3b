"""A submitted request, its result types, and the two ways a caller waits for it.

The batcher never touches a caller's event loop except through
``loop.call_soon_threadsafe``, and only with a whole list of answers at once. That is
what lets one batcher serve the ASGI server's loop, a fresh loop per ``async_to_sync``
call, ``asyncio.run`` twice in a row and plain threads alike: nothing in it is bound to
the loop that happened to touch it first.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from itertools import repeat
from typing import Any, NamedTuple

import numpy as np

__all__ = ["BatchInfo", "Prediction", "Request", "Split", "SyncWaiter", "merge_part", "predictions", "rounded_ms"]


class BatchInfo(NamedTuple):
    """How a request was served: the batch it rode in and how long each stage took.

    (Named tuples, not dataclasses: one is built per request on the hot path.)

    For a request split over several batches (more rows than ``MAX_BATCH_SIZE``),
    ``size`` is the largest of them, ``queue_ms`` the longest wait and ``run_ms`` the
    total model time.
    """

    size: int  # real rows in the batch (this request's and its batch-mates')
    padded_size: int  # rows the model actually ran, filler included
    queue_ms: float  # submit -> batch dispatched
    run_ms: float  # model call time for the batch
    batches: int = 1


class Prediction(NamedTuple):
    """A request's outputs (always a dict by output name) and its ``BatchInfo``."""

    outputs: dict[str, np.ndarray]
    batch: BatchInfo

    def value(self) -> np.ndarray | dict[str, np.ndarray]:
        """The single output array when the model has one output, else the dict."""
        if len(self.outputs) == 1:
            return next(iter(self.outputs.values()))
        return self.outputs


def rounded_ms(seconds: np.ndarray) -> list[float]:
    """Durations in milliseconds rounded to the µs (as ``round(x * 1e3, 3)`` would, for
    non-negative values), for a whole batch in one numpy expression."""
    result: list[float] = (np.floor(seconds * 1e6 + 0.5) / 1e3).tolist()
    return result


def predictions(
    parts: Iterable[dict[str, np.ndarray]],
    size: int,
    padded: int,
    queue_ms: Iterable[float],
    run_ms: float,
    batches: int = 1,
) -> Iterable[Prediction]:
    """One ``Prediction`` per caller of a batch, built by ``map`` over C iterators, not a
    Python step each (named tuples without their Python ``__new__``): the scheduler and a
    group's ``Members`` build hundreds at once (bench_batcher)."""
    new_tuple = tuple.__new__
    infos = map(
        new_tuple, repeat(BatchInfo), zip(repeat(size), repeat(padded), queue_ms, repeat(run_ms), repeat(batches))
    )
    return map(new_tuple, repeat(Prediction), zip(parts, infos, strict=False))  # infos: one per part


class SyncWaiter:
    """A blocking waiter for threads: a lock released once the answer is in."""

    __slots__ = ("_lock", "error", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.value: Prediction | None = None
        self.error: BaseException | None = None

    def resolve(self, value: Prediction | None, error: BaseException | None) -> None:
        self.value = value
        self.error = error
        self._lock.release()

    def wait(self, timeout: float | None = None) -> bool:
        return self._lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0))


class Split:
    """Bookkeeping for a request cut over several batches (more rows than fit in one)."""

    __slots__ = ("batch_size", "batches", "padded_size", "parts", "queue_s", "received", "run_s")

    def __init__(self) -> None:
        self.parts: list[tuple[int, dict[str, np.ndarray]]] = []  # (first row, outputs)
        self.received = 0  # rows whose outputs came back
        self.batch_size = 0
        self.padded_size = 0
        self.queue_s = 0.0
        self.run_s = 0.0
        self.batches = 0


class Request:
    """One caller's rows on their way through the batcher.

    A thread waits on ``waiter``; a coroutine on ``future``, resolved on ``loop``.
    ``done`` and the bookkeeping fields are written only by the scheduler thread;
    ``cancelled`` is the one flag a caller sets (when its task is cancelled). Kept
    small: one is built per request on the hot path.

    A request whose rows all ride in one batch is its own segment (``request``,
    ``start``, ``stop``, ``offset``, ``rows``: ``assemble.Segment``'s fields): one object
    per request in flight instead of two (bench_batcher: the second object cost ~0.1 µs
    to build and one more object for every garbage collection to walk). Only requests cut
    over several batches get ``Segment``s.
    """

    #: As a segment: the request's rows from the first (see ``stop``).
    start = 0
    #: How many callers' requests this is (``group.GroupRequest``: several).
    count = 1

    __slots__ = (
        "arrays",
        "cancelled",
        "deadline",
        "done",
        "future",
        "loop",
        "offset",
        "rows",
        "shape_key",
        "split",
        "t_submit",
        "taken",
        "waiter",
    )

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        rows: int,
        deadline: float | None,
        t_submit: float,
        waiter: SyncWaiter | None,
        shape_key: tuple[Any, ...] | None,
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[Prediction] | None = None,
    ) -> None:
        self.arrays = arrays
        self.rows = rows
        self.deadline = deadline
        self.t_submit = t_submit
        self.waiter = waiter
        self.loop = loop
        self.future = future
        self.shape_key = shape_key
        self.cancelled = False
        self.done = False
        self.taken = 0  # rows handed to batches so far (all of them once answered)
        self.split: Split | None = None
        self.offset = 0  # as its own segment: where its rows start in the batch

    def on_future_done(self, future: asyncio.Future[Prediction]) -> None:
        """The caller's future is done: if it was cancelled, the request is withdrawn."""
        if future.cancelled():
            self.cancelled = True

    def rows_of(self, name: str, start: int, stop: int) -> list[np.ndarray]:
        """Input ``name``'s rows ``start:stop``, as arrays to copy into a batch in order."""
        arr = self.arrays[name]
        return [arr if (start == 0 and stop == arr.shape[0]) else arr[start:stop]]

    @property
    def request(self) -> Request:
        """As a segment: the request it belongs to (itself)."""
        return self

    @property
    def stop(self) -> int:
        """As a segment: the end of its rows (all of them)."""
        return self.rows


def merge_part(
    request: Request,
    part: dict[str, np.ndarray],
    start: int,
    rows: int,
    batch_rows: int,
    padded: int,
    run_s: float,
    queue_s: float,
) -> tuple[dict[str, np.ndarray], BatchInfo] | None:
    """Collect one segment (rows ``start:start+rows``) of a split request; its whole
    outputs once all are in, in row order.

    Segments come back in the order their batches finish, which with
    ``MAX_CONCURRENT_BATCHES`` > 1 need not be the order of their rows.
    """
    split = request.split
    if split is None:
        split = request.split = Split()
    split.batches += 1
    split.batch_size = max(split.batch_size, batch_rows)
    split.padded_size = max(split.padded_size, padded)
    split.queue_s = max(split.queue_s, queue_s)
    split.run_s += run_s
    split.parts.append((start, part))
    split.received += rows
    if split.received < request.rows:
        return None
    parts, split.parts = sorted(split.parts, key=lambda item: item[0]), []
    outputs = {k: np.concatenate([p[k] for _, p in parts]) for k in part}
    info = BatchInfo(
        split.batch_size,
        split.padded_size,
        round(split.queue_s * 1e3, 3),
        round(split.run_s * 1e3, 3),
        split.batches,
    )
    return outputs, info
