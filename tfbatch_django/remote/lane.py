"""A coroutine caller's loop's own way to the workers: a *lane*.

Coroutine callers on a long-lived loop (daphne's, uvicorn's) need not go through the
client's thread (``client.py``): their loop gets two raw Redis connections of its own
(``lean.RedisWire``) and a reply channel of its own, so a request is written to Redis from
the caller's coroutine and its reply resolves the caller's future from the loop's own
reading callback, with no cross-thread wake-up either way (the thread cost two: each a
self-pipe write and a GIL hand-off, ~0.15-0.2 ms of a lone request's round trip here; see
the README's worker benchmark).

The client decides when a loop gets one (at its second request, on the lean transport
over plain TCP or a Unix socket) and keeps liveness: its watchdog fails a lane's calls
with the thread's, and withdrawals go through the thread. A lane shares with the client
only what it is given: the calls in flight (by id; whoever pops a call answers it), the
set of the process's reply channels (the heartbeats say which calls a worker holds per
reply channel), and the lean layer.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import msgpack

from ..exceptions import WorkerUnavailable
from . import protocol
from .calls import MAX_PER_MESSAGE, Call, deliver_here, replied, send_failed

__all__ = ["Lane"]

logger = logging.getLogger("tfbatch_django.remote")


class Lane:
    """A loop's own way to the workers: requests written and replies read on the loop itself.

    Two ``RedisWire`` connections: one sends (``EVAL`` of the lean layer's send script,
    replies in order), one blocks in ``BLPOP`` on the lane's reply channel. Coalescing as
    in the thread's sender: a request goes out at once when no send of the lane is
    waiting for Redis; the ones queued meanwhile go together when it returns.
    """

    _RETRY_AFTER = 5.0  # seconds before a loop whose lane failed tries another

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        layer: Any,
        pending: dict[int, Call],
        replies: set[str],
        *,
        coalesce: bool,
    ) -> None:
        self.loop = loop
        self.layer = layer  # the client's LeanRedisLayer
        self.pending = pending  # the client's calls in flight, by id
        self.replies = replies  # the client's reply channels
        self.coalesce = coalesce
        self.reply_channel = f"tfbatch.reply.{uuid.uuid4().hex}"
        self.ready = False
        self.closed = False
        self._opening = False
        self._retry_at = 0.0
        self._send_wire: Any = None
        self._recv_wire: Any = None
        self._outbox: list[Call] = []
        self._in_flight = 0
        self._guard: asyncio.Task[None] | None = None

    def seen(self) -> None:
        """A coroutine of this loop called again: open the lane (once; again a while after a failure)."""
        if self._opening or self.closed or time.monotonic() < self._retry_at:
            return
        self._opening = True
        self._guard = self.loop.create_task(self._live(), name="tfbatch-remote-lane")

    async def _live(self) -> None:
        """Connect, then wait for the loop's end (``asyncio.run`` cancels this task) and close."""
        try:
            self._send_wire = await self.layer.open_wire(self._lost)
            self._recv_wire = await self.layer.open_wire(self._lost)
            self.replies.add(self.reply_channel)
            self._listen()
            self.ready = True
            await self.loop.create_future()  # until the loop's end
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # noqa: BLE001 - the thread keeps serving this loop
            logger.debug("tfbatch: no lane to Redis for this event loop: %s", exc)
            self._retry_at = time.monotonic() + self._RETRY_AFTER
        finally:
            self._close()
            self._opening = False

    def _lost(self, error: BaseException) -> None:
        if not self.closed and self._guard is not None:
            logger.warning("tfbatch: an event loop's connection to Redis failed: %s", error)
            self._retry_at = time.monotonic() + self._RETRY_AFTER
            self._guard.cancel()

    def _close(self) -> None:
        """Stop serving; fail this lane's pending calls (their replies would come here)."""
        self.ready = False
        self.replies.discard(self.reply_channel)
        for wire in (self._send_wire, self._recv_wire):
            if wire is not None:
                wire.on_lost = None
                wire.close()
        self._send_wire = self._recv_wire = None
        self._outbox = []
        self._in_flight = 0
        why = "the event loop's connection to Redis closed while the request was out"
        deliver_here(
            [
                (call, None, WorkerUnavailable(f"model {call.model!r}: {why}", model=call.model))
                for call in list(self.pending.values())
                if call.lane is self and self.pending.pop(call.id, None) is not None
            ]
        )
        # A new lane (a new reply channel) for this loop at its next calls.
        self.reply_channel = f"tfbatch.reply.{uuid.uuid4().hex}"

    def forget(self) -> None:
        """The loop closed without cancelling this lane's task: drop its calls (nobody is left to answer)."""
        self.closed = True
        self.ready = False
        self.replies.discard(self.reply_channel)
        for call in [c for c in list(self.pending.values()) if c.lane is self]:
            self.pending.pop(call.id, None)

    # -- sending

    def post(self, call: Call) -> None:
        self.pending[call.id] = call
        self._outbox.append(call)
        if not self._in_flight or not self.coalesce:
            self._flush()

    def unqueue(self, call: Call) -> bool:
        """Take back a call not sent yet; False when it has left."""
        if call in self._outbox:
            self._outbox.remove(call)
            return True
        return False

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, []
        by_worker: dict[str, list[Call]] = {}
        for call in outbox:
            by_worker.setdefault(call.worker, []).append(call)
        step = MAX_PER_MESSAGE if self.coalesce else 1
        for worker, calls in by_worker.items():
            for i in range(0, len(calls), step):
                self._send(worker, calls[i : i + step])

    def _send(self, worker: str, calls: list[Call]) -> None:
        message = {
            "type": protocol.PREDICT,
            "reply": self.reply_channel,
            "sent": time.time(),
            "requests": [call.entry for call in calls],
        }
        frame = msgpack.packb(message, use_bin_type=True)
        args = self.layer.send_args(protocol.request_channel(worker), frame)
        wire = self._send_wire

        def sent(reply: Any) -> None:
            if wire is not self._send_wire:  # the lane closed meanwhile (and failed these calls)
                return
            self._in_flight -= 1
            if reply != 1:
                deliver_here(send_failed(self.pending, worker, calls, None if reply == 0 else reply))
            if not self._in_flight and self._outbox and self.ready:
                self._flush()

        try:
            wire.command(sent, *args)
        except Exception as exc:  # noqa: BLE001 - the connection is gone: these calls fail now
            deliver_here(send_failed(self.pending, worker, calls, exc))
            return
        self._in_flight += 1

    # -- receiving

    def _listen(self) -> None:
        self._recv_wire.command(self._popped, "BLPOP", self.layer.key(self.reply_channel), 5)

    def _popped(self, reply: Any) -> None:
        if isinstance(reply, BaseException):  # connection lost: _lost says so
            return
        if reply is not None:
            try:
                message = msgpack.unpackb(reply[1], raw=False)
                if message.get("type") == protocol.REPLY:
                    deliver_here(replied(self.pending, message))
            except Exception:  # a malformed message: its callers time out, or the watchdog fails them
                logger.exception("tfbatch: bad message on an event loop's reply channel")
        # The next BLPOP after the callers just answered have run (they were scheduled first).
        self.loop.call_soon(self._relisten, self._recv_wire)

    def _relisten(self, wire: Any) -> None:
        if wire is not None and wire is self._recv_wire and wire.usable:
            self._listen()
