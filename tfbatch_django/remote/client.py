"""The web side: send requests for worker-served models over the channel layer, await replies.

One ``RemoteClient`` per process (and channel-layer alias) owns a background thread
running an event loop, and on it a private channel-layer instance, the process's one
reply channel, and three tasks: the sender, the receiver and the watchdog. Why a thread
of its own: gunicorn sync workers, Celery tasks and management commands have no loop, and
``async_to_sync`` per call would build a loop and a Redis connection per request; daphne's
loop would do for async callers, but a layer instance receives on one loop only. Callers on
any thread or loop post to it with one ``call_soon_threadsafe`` and wait on a future of
their own loop (coroutines) or a lock (threads), exactly as with a local batcher.

Coroutine callers on a long-lived loop (daphne's, uvicorn's) skip that thread: their
loop gets a *lane* (``lane.Lane``), raw Redis connections on the loop itself and a reply
channel of its own, with no cross-thread wake-up either way (the thread cost two,
~0.15-0.2 ms of a lone request's round trip here; see ``lane.py``). A loop's lane opens
at its second request (``async_to_sync`` builds a loop per call: those keep the thread)
and only on the lean transport over plain TCP or a Unix socket; until it is connected,
and for threads, the background thread serves. The lane closes with its loop
(``asyncio.run`` cancels its guard task; a loop closed otherwise is noticed by the
watchdog). Liveness stays in the thread: heartbeats say which requests a worker holds for
every reply channel of the process, and the watchdog fails a lane's requests as it fails
the thread's; withdrawals are sent by the thread too. The thread and the lanes share the
calls in flight (``calls.py``: a request's ``Call``, the answers a reply makes, their
delivery to callers).

Coalescing: the sender takes every request queued while its previous send was in flight
and sends them as one message per worker name, so a burst costs one Redis round trip
rather than one per request (``WORKER_COALESCE``; measured in ``bench/bench_workers.py``).

Failure: a worker that stops sending heartbeats fails the requests it held with
``WorkerUnavailable``; with no live worker at all, every pending request of that name
fails so; a request that no worker claims within ``WORKER_DEAD_AFTER_MS`` fails too. The
caller's own deadline is the backstop, and a caller that gives up (deadline, cancelled
task) withdraws its request from the worker.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..batching import TensorSpec
from ..batching.spec import coerce_inputs
from ..conf.workers import WorkerConfig
from ..exceptions import InvalidInput, ModelNotFound, WorkerUnavailable
from . import protocol
from .calls import MAX_PER_MESSAGE, Answer, Call, deliver, replied, send_failed
from .lane import Lane
from .liveness import WorkerBook

__all__ = ["RemoteClient", "get_client"]

logger = logging.getLogger("tfbatch_django.remote")


class RemoteClient:
    """Requests for worker-served models, from any thread or event loop of this process."""

    def __init__(self, alias: str, config: WorkerConfig) -> None:
        self.alias = alias
        self.config = config
        self.book = WorkerBook(config.dead_after)
        self.pid = os.getpid()
        self.reply_channel: str | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, Call] = {}  # in flight, shared with the lanes (see calls.py)
        self._outbox: list[Call] = []
        self._cancels: dict[tuple[str, str], list[int]] = {}  # (worker, reply channel) -> ids
        self._lanes: dict[asyncio.AbstractEventLoop, Lane] = {}
        self._replies: set[str] = set()  # every reply channel of this client: the thread's and the lanes'
        self.lane_requests = 0  # requests sent on lanes (the rest went through the thread)
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._layer: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribe_failing = False
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._thread = threading.Thread(target=self._thread_main, name=f"tfbatch-remote-{alias}", daemon=True)
        self._thread.start()
        self._started.wait(30)
        if self._start_error is not None:
            raise WorkerUnavailable(f"the channel layer {alias!r} cannot be used: {self._start_error}")

    # ------------------------------------------------------------------ callers (any thread)

    def watch(self, worker: str) -> None:
        """Listen to ``worker``'s heartbeats from now on (and ask its workers for one now)."""
        if worker in self.book.watched():
            return
        self.book.watch(worker)
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._subscribe(worker), self._loop)

    def specs(self, worker: str, model: str) -> dict[str, TensorSpec] | None:
        snap, _ = self.book.model(worker, model)
        inputs = (snap or {}).get("runner", {}).get("inputs")
        if not inputs:
            return None
        specs = {}
        for t in inputs:
            shape = None if t["shape"] is None else [None if d == -1 else d for d in t["shape"]]
            specs[t["name"]] = TensorSpec.of(t["name"], t["dtype"], shape)
        return specs

    def check_alive(self, worker: str, model: str) -> bool:
        """True when a live worker serves ``model``; False while it is too early to tell.

        Raises ``WorkerUnavailable`` (none alive) or ``ModelNotFound`` (the live workers
        do not have the model).
        """
        snap, live = self.book.model(worker, model)
        if snap is not None:
            return True
        if live:
            served = sorted({m for w in live for m in w.models})
            raise ModelNotFound(
                f"model {model!r}: the workers {worker!r} do not serve it "
                f"(they serve {', '.join(served) or 'nothing'}); check WORKER in their settings",
                model=model,
            )
        if self.book.still_listening(worker):
            return False
        raise WorkerUnavailable(
            f"model {model!r}: no worker {worker!r} is running (none sent a heartbeat in the last "
            f"{self.config.dead_after:g} s); start one with 'manage.py tfbatch_worker {worker}'",
            model=model,
        )

    def encode(self, worker: str, model: str, inputs: Any) -> dict[str, list[Any]]:
        """Validate ``inputs`` here, against the worker's specs, with the same messages as locally."""
        specs = self.specs(worker, model)
        if specs is not None:
            arrays, _ = coerce_inputs(specs, inputs, model=model)
            return protocol.encode_arrays(arrays)
        # The model is still loading on the worker: it validates the arrays itself.
        items = inputs.items() if isinstance(inputs, Mapping) else [("", inputs)]
        try:
            return protocol.encode_arrays({str(k): np.asarray(v) for k, v in items})
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"inputs are not rectangular arrays ({exc})", model=model) from None

    def submit(
        self, worker: str, model: str, encoded: dict[str, list[Any]], timeout: float | None, waiter: Any
    ) -> Call:
        """Send a request; ``waiter`` is a ``SyncWaiter``, or ``(loop, future)`` from a coroutine on ``loop``."""
        call_id = next(self._ids)
        call = Call(call_id, worker, model, [call_id, model, timeout, encoded], waiter)
        if type(waiter) is tuple:
            lane = self._lane(waiter[0])
            if lane is not None:
                call.lane = lane
                self.lane_requests += 1
                lane.post(call)
                return call
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._post, call)
        return call

    def withdraw(self, call: Call) -> None:
        """The caller gave up: forget the call and tell the worker to drop it."""
        if call.lane is not None and call.lane.unqueue(call):  # never left this process
            self._pending.pop(call.id, None)
            return
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._withdraw, call)

    def lane_ready(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether coroutines on ``loop`` are served by its lane now (not the thread)."""
        lane = self._lanes.get(loop)
        return lane is not None and lane.ready

    def _lane(self, loop: asyncio.AbstractEventLoop) -> Lane | None:
        """The caller's loop's lane when it is connected; else None (and open it at the second call)."""
        lane = self._lanes.get(loop)
        if lane is not None and lane.ready:
            return lane
        layer = self._lane_layer
        if layer is None:
            return None
        if lane is None:  # seen once: a loop per call needs none
            self._lanes[loop] = Lane(loop, layer, self._pending, self._replies, coalesce=self.config.coalesce)
        else:
            lane.seen()
        return None

    # ------------------------------------------------------------------ the client's loop

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._setup())
        except BaseException as exc:  # noqa: BLE001 - reported to the constructor
            self._start_error = exc
            self._started.set()
            return
        self._started.set()
        self._tasks = [loop.create_task(c) for c in (self._receiver(), self._sender(), self._watchdog())]
        loop.run_forever()

    async def _setup(self) -> None:
        from .lean import make_layer

        # A private instance: channels_redis receives on one loop per instance, and the
        # project's own consumers use the shared one on the server's loop.
        self._layer = make_layer(self.alias, self.config.transport)
        self._wake = asyncio.Event()
        self.reply_channel = await self._layer.new_channel("tfbatch.reply")
        self._replies.add(self.reply_channel)

    @property
    def _lane_layer(self) -> Any:
        """The lean layer when lanes can reach its Redis (plain TCP or a Unix socket), else None."""
        from .lean import LeanRedisLayer

        layer = self._layer
        return layer if isinstance(layer, LeanRedisLayer) and layer.wire_ok else None

    async def _subscribe(self, worker: str) -> None:
        try:
            await self._layer.group_add(protocol.heartbeat_group(worker), self.reply_channel)
            await self._layer.group_send(
                protocol.control_group(worker), {"type": protocol.PING, "reply": self.reply_channel}
            )
        except Exception as exc:  # noqa: BLE001 - retried by the watchdog; said once
            log = logger.debug if self._subscribe_failing else logger.warning
            log("tfbatch: cannot subscribe to worker %r heartbeats: %s", worker, exc)
            self._subscribe_failing = True
        else:
            self._subscribe_failing = False

    def _post(self, call: Call) -> None:
        self._pending[call.id] = call
        self._outbox.append(call)
        assert self._wake is not None
        self._wake.set()

    def _withdraw(self, call: Call) -> None:
        if self._pending.pop(call.id, None) is None:
            return
        if call in self._outbox:
            self._outbox.remove(call)
            return
        assert self.reply_channel is not None
        reply = call.lane.reply_channel if call.lane is not None else self.reply_channel
        self._cancels.setdefault((call.worker, reply), []).append(call.id)
        assert self._wake is not None
        self._wake.set()

    async def _sender(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            outbox, self._outbox = self._outbox, []
            cancels, self._cancels = self._cancels, {}
            by_worker: dict[str, list[Call]] = {}
            for call in outbox:
                by_worker.setdefault(call.worker, []).append(call)
            sends = []
            for worker, calls in by_worker.items():
                step = MAX_PER_MESSAGE if self.config.coalesce else 1
                sends += [self._send(worker, calls[i : i + step]) for i in range(0, len(calls), step)]
            for (worker, reply), ids in cancels.items():
                message = {"type": protocol.CANCEL, "reply": reply, "ids": ids}
                sends.append(self._layer.group_send(protocol.control_group(worker), message))
            await asyncio.gather(*sends, return_exceptions=True)

    async def _send(self, worker: str, calls: list[Call]) -> None:
        message = {
            "type": protocol.PREDICT,
            "reply": self.reply_channel,
            "sent": time.time(),
            "requests": [call.entry for call in calls],
        }
        try:
            await self._layer.send(protocol.request_channel(worker), message)
        except Exception as exc:  # noqa: BLE001 - every failure is answered to its callers
            deliver(send_failed(self._pending, worker, calls, exc))

    async def _receiver(self) -> None:
        failing = False
        while True:
            try:
                message = await self._layer.receive(self.reply_channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis down: keep trying, say it once
                (logger.debug if failing else logger.warning)("tfbatch: cannot receive from the channel layer: %s", exc)
                failing = True
                await asyncio.sleep(self.config.heartbeat)
                continue
            failing = False
            kind = message.get("type")
            if kind == protocol.REPLY:
                deliver(replied(self._pending, message))
            elif kind == protocol.HEARTBEAT:
                seen = self.book.heard(message)
                for reply, ids in message.get("holding", {}).items():
                    if reply not in self._replies:  # another process's
                        continue
                    for call_id in ids:
                        call = self._pending.get(call_id)
                        if call is not None:
                            call.claimed_by = seen.key

    async def _watchdog(self) -> None:
        resubscribe = time.monotonic() + 60
        while True:
            await asyncio.sleep(self.config.heartbeat)
            now = time.monotonic()
            for worker in self.book.watched():
                # Group membership expires (group_expiry) and a restarted Redis forgets it:
                # renew it every minute, and at each tick while no worker of the name is heard.
                if now >= resubscribe or not self.book.live(worker):
                    await self._subscribe(worker)
            if now >= resubscribe:
                resubscribe = now + 60
            for loop, lane in list(self._lanes.items()):
                if loop.is_closed():  # closed without cancelling its tasks: nobody is left to answer
                    lane.forget()
                    self._lanes.pop(loop, None)
            failed: list[Answer] = []
            for worker in self.book.watched():
                dead = {w.key: w for w in self.book.collect_dead(worker)}
                anyone = bool(self.book.live(worker)) or self.book.still_listening(worker)
                for call in [c for c in list(self._pending.values()) if c.worker == worker]:
                    why = None
                    if call.claimed_by in dead:
                        w = dead[call.claimed_by]
                        why = f"worker {w.host}:{w.pid} ({worker!r}) stopped while it held this request"
                    elif not anyone:
                        why = f"no worker {worker!r} is running (no heartbeat for {self.config.dead_after:g} s)"
                    elif call.claimed_by is None and now - call.sent_at > self.config.dead_after:
                        why = f"no worker {worker!r} took this request within {self.config.dead_after:g} s"
                    if why is not None and self._pending.pop(call.id, None) is not None:
                        failed.append((call, None, WorkerUnavailable(f"model {call.model!r}: {why}", model=call.model)))
            deliver(failed)


_clients: dict[tuple[str, WorkerConfig], RemoteClient] = {}
_clients_lock = threading.Lock()


def get_client(alias: str, config: WorkerConfig) -> RemoteClient:
    """This process's client for ``alias`` and these keys; a forked child builds its own."""
    key = (alias, config)
    client = _clients.get(key)
    if client is not None and client.pid == os.getpid():
        return client
    with _clients_lock:
        client = _clients.get(key)
        if client is None or client.pid != os.getpid():
            client = _clients[key] = RemoteClient(alias, config)
        return client


def _forget_after_fork() -> None:
    global _clients_lock
    _clients_lock = threading.Lock()
    _clients.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
