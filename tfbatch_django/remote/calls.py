"""A request on its way to the workers, and its answer on the way back to its caller.

``Call`` is what the web process remembers of a request it sent: its entry as sent, its
worker, and who waits for it (a thread's ``SyncWaiter``, or a coroutine's loop and
future). The client keeps the calls in flight in one dict by id (its ``_pending``), which
the client's thread and the lanes (``lane.Lane``) share: whoever pops a call from it
answers that call (its reply, its failed send, the watchdog, a closing lane), unless
nobody is left to answer (withdrawn by its caller, its loop closed), so none is answered
twice.

The functions here make those answers (from a ``REPLY`` message, or for a message that
could not be sent) and deliver them: from the client's thread with one
``call_soon_threadsafe`` per loop (``deliver``), or on the callers' own loop at once
(``deliver_here``, a lane's replies).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..batching import Prediction
from ..batching.answers import Failed, deliver_async
from ..batching.request import SyncWaiter
from ..exceptions import Overloaded, TFBatchError, WorkerUnavailable
from . import protocol

if TYPE_CHECKING:
    from .lane import Lane

__all__ = ["MAX_PER_MESSAGE", "Answer", "Call", "deliver", "deliver_here", "replied", "send_failed"]

MAX_PER_MESSAGE = 64  # requests coalesced into one message at most


@dataclass(eq=False)
class Call:
    id: int
    worker: str
    model: str
    entry: list[Any]  # [id, model, timeout, inputs] as sent
    waiter: SyncWaiter | tuple[asyncio.AbstractEventLoop, asyncio.Future[Prediction]]
    sent_at: float = field(default_factory=time.monotonic)
    claimed_by: str | None = None
    lane: Lane | None = None  # sent and answered on the caller's loop, not the client's thread


#: A call and its answer: a prediction, or the error to raise in its caller.
Answer = tuple[Call, Prediction | None, BaseException | None]


def replied(pending: dict[int, Call], message: dict[str, Any]) -> list[Answer]:
    """The answers a ``REPLY`` message carries, for the calls still ``pending`` (popped)."""
    answers: list[Answer] = []
    for call_id, ok, payload in message["replies"]:
        call = pending.pop(call_id, None)
        if call is None:  # withdrawn, or failed already
            continue
        try:
            if ok:
                answers.append((call, protocol.decode_prediction(payload), None))
            else:
                answers.append((call, None, protocol.decode_error(payload, call.model)))
        except Exception as exc:  # noqa: BLE001 - a malformed reply fails only its call
            answers.append((call, None, WorkerUnavailable(f"bad reply from worker: {exc}", model=call.model)))
    return answers


def send_failed(pending: dict[int, Call], worker: str, calls: list[Call], exc: BaseException | None) -> list[Answer]:
    """The answers for ``calls`` whose message could not be sent (``exc`` None: the channel is full)."""
    from channels.exceptions import ChannelFull

    if exc is None or isinstance(exc, ChannelFull):
        error: type[TFBatchError] = Overloaded
        why = f"the channel layer's queue for worker {worker!r} is full (its capacity)"
    else:
        error, why = WorkerUnavailable, f"the channel layer could not send to worker {worker!r}: {exc}"
    return [
        (call, None, error(f"model {call.model!r}: {why}", model=call.model))
        for call in calls
        if pending.pop(call.id, None) is not None
    ]


def deliver(answers: list[Answer]) -> None:
    """Answer callers from the client's thread: threads at once, coroutines with one hop per loop."""
    per_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}  # future, answer, future, answer...
    for call, value, error in answers:
        waiter = call.waiter
        if isinstance(waiter, SyncWaiter):
            waiter.resolve(value, error)
        else:
            per_loop.setdefault(waiter[0], []).extend((waiter[1], Failed(error) if error is not None else value))
    for loop, items in per_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: its callers are gone
            loop.call_soon_threadsafe(deliver_async, items)


def deliver_here(answers: list[Answer]) -> None:
    """Answer coroutine callers now: we are on their loop (a lane's)."""
    flat: list[Any] = []
    for call, value, error in answers:
        assert type(call.waiter) is tuple
        flat += [call.waiter[1], Failed(error) if error is not None else value]
    deliver_async(flat)
