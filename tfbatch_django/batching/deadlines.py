"""The requests with a deadline, earliest first (the scheduler's own, so no lock)."""

from __future__ import annotations

import heapq
import itertools
import math

from .request import Request

__all__ = ["Deadlines"]


class Deadlines:
    """A heap of (deadline, tie-breaker, request); answered requests are dropped lazily."""

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Request]] = []
        self._seq = itertools.count()

    def add(self, request: Request) -> None:
        assert request.deadline is not None
        heapq.heappush(self._heap, (request.deadline, next(self._seq), request))

    def due(self, now: float) -> list[Request]:
        """Unanswered requests whose deadline has passed, removed from the heap."""
        heap = self._heap
        expired = []
        while heap and heap[0][0] <= now:
            request = heapq.heappop(heap)[2]
            if not request.done:
                expired.append(request)
        return expired

    def next(self, outstanding: int) -> float:
        """The earliest deadline of an unanswered request (``math.inf`` if none).

        Drops answered requests first, so they cause no wake-ups; the whole heap is
        rebuilt when it holds many more entries than requests are outstanding.
        """
        heap = self._heap
        while heap and heap[0][2].done:
            heapq.heappop(heap)
        if len(heap) > 2 * outstanding + 64:
            self._heap = heap = [entry for entry in heap if not entry[2].done]
            heapq.heapify(heap)
        return heap[0][0] if heap else math.inf
