"""Answers on their way to callers: collected during a scheduler round, released at its end.

Threads' answers release their locks; coroutines' answers go to each caller's event loop
as one ``call_soon_threadsafe`` per loop per round. Both happen after the round's
statistics are recorded, so a caller never sees itself uncounted.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from .request import Prediction, Request, SyncWaiter

__all__ = ["Answers", "Failed", "deliver_async"]


class Failed:
    """An error to raise in a waiting coroutine (``deliver_async``'s marker)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def deliver_async(flat: list[Any]) -> None:
    """Runs on the caller's loop: resolve every future that is still waiting.

    ``flat`` alternates futures and their answers (a ``Prediction``, or ``Failed``): no
    tuple per request, which the garbage collector would have to track.
    """
    it = iter(flat)
    for future, value in zip(it, it, strict=True):
        if future.done():  # cancelled by its caller meanwhile
            continue
        if type(value) is Failed:
            future.set_exception(value.error)
        else:
            future.set_result(value)


class Answers:
    """The round's answers. The scheduler's hot path appends to the lists directly."""

    __slots__ = ("by_loop", "to_threads")

    def __init__(self) -> None:
        #: Per loop: futures and their answers, alternating (see ``deliver_async``).
        self.by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        self.to_threads: list[tuple[SyncWaiter, Prediction | None, BaseException | None]] = []

    def add(self, request: Request, value: Prediction | None, error: BaseException | None) -> None:
        waiter = request.waiter
        if waiter is not None:
            self.to_threads.append((waiter, value, error))
        else:
            assert request.loop is not None
            # (A GroupRequest's future is its Members, which answers each caller.)
            self.by_loop.setdefault(request.loop, []).extend(
                (request.future, value if error is None else Failed(error))
            )

    def release(self) -> None:
        """Hand every collected answer to its caller."""
        if self.to_threads:
            threads, self.to_threads = self.to_threads, []
            for waiter, value, error in threads:
                waiter.resolve(value, error)
        if not self.by_loop:
            return
        by_loop, self.by_loop = self.by_loop, {}
        for loop, flat in by_loop.items():
            # A closed loop (its caller is gone) raises RuntimeError: nobody is left to answer.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(deliver_async, flat)
