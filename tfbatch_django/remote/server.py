"""The worker side: take requests off the channel layer, batch them, answer each caller.

``manage.py tfbatch_worker <name>`` runs ``WorkerServer(name).run()``. The process's
registry serves the models whose ``WORKER`` is ``name`` with ordinary local batchers;
this loop only moves messages:

- a receiver takes request messages off ``tfbatch.w.<name>`` (several workers of one name
  share that channel: each message goes to whichever asks first) and starts one task per
  request, awaiting ``batcher.predict()`` with the deadline that travelled with it;
- a second receiver, on the worker's own channel (member of ``tfbatch.ctl.<name>``),
  takes cancellations (the task is cancelled, so the batcher drops its rows) and pings;
- a replier sends the answers finished together as one message per web process;
- a heartbeat every ``WORKER_HEARTBEAT_MS`` tells the web processes (group
  ``tfbatch.hb.<name>``) that it lives, what each model's status and statistics are, and
  which of their requests it holds, so that if it dies they fail exactly those.

SIGTERM/SIGINT: stop taking requests, finish the held ones (bounded), send a last
heartbeat saying it stops, exit.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import signal
import socket
import time
import uuid
from typing import Any

from ..conf import get_config
from ..exceptions import ModelNotFound, PredictTimeout, TFBatchError
from ..registry import registry
from . import protocol

__all__ = ["WorkerServer"]

logger = logging.getLogger("tfbatch_django.remote")

_CANCELLED_MEMORY = 120.0  # seconds a cancellation is remembered for a request not received yet


class WorkerServer:
    """One worker process serving the models whose ``WORKER`` is ``name``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.config = get_config()
        self.settings = self.config.workers
        self.models = [m for m, mc in self.config.models.items() if mc.worker == name]
        if not self.models:
            raise ModelNotFound(f"no model has WORKER = {name!r} in TFBATCH['MODELS']")
        self.key = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._held: dict[tuple[str, int], asyncio.Future[Any]] = {}  # tasks, or batchers' futures
        self._cancelled: dict[tuple[str, int], float] = {}
        self._outbox: dict[str, list[list[Any]]] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._closing = False  # the last heartbeat is sent: every loop ends
        self._layer: Any = None
        self._own: str | None = None
        self.received = 0

    def run(self) -> None:
        registry.serve_worker(self.name)
        asyncio.run(self.serve())

    async def serve(self) -> None:
        from .lean import make_layer

        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        self._layer = make_layer(self.settings.channel_layer, self.settings.transport)
        self._own = await self._layer.new_channel("tfbatch.worker")
        await self._layer.group_add(protocol.control_group(self.name), self._own)
        for model in self.models:  # load now, in the background: heartbeats say "loading"
            registry.get(model).start_loading()
        logger.info("tfbatch: worker %r (%s) serving %s", self.name, self.key, ", ".join(self.models))
        tasks = [
            asyncio.create_task(self._receive_requests()),
            asyncio.create_task(self._receive_control()),
            asyncio.create_task(self._replier()),
            asyncio.create_task(self._heartbeats()),
        ]
        await self._stopping.wait()
        logger.info("tfbatch: worker %r stopping; %d request(s) held", self.name, len(self._held))
        tasks[0].cancel()
        deadline = time.monotonic() + 10
        while self._held and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.05)  # the replier sends the last answers
        await self._heartbeat(stopping=True)
        # The loops check this flag too: once, in ~20 stops while profiling the hop, the
        # heartbeats went on after their cancel and the worker never exited (a cancellation
        # inside a redis-py command surfacing as another error, probably).
        self._closing = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._layer.group_discard(protocol.control_group(self.name), self._own)
        registry.reset(5.0)

    # ------------------------------------------------------------------ requests

    async def _receive_requests(self) -> None:
        channel = protocol.request_channel(self.name)
        if getattr(self._layer, "wire_ok", False):
            await self._receive_requests_on_wire(channel)
            return
        while not self._stopping.is_set():
            try:
                message = await self._layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis restarting: keep trying
                logger.warning("tfbatch: worker %r cannot receive: %s", self.name, exc)
                await asyncio.sleep(self.settings.heartbeat)
                continue
            if message.get("type") == protocol.PREDICT:
                self._accept(message)
                # Let the new requests reach their batcher before the next BLPOP is issued:
                # a lone request's batch then starts ~40 µs sooner (redis-py's Python for
                # the next command runs while the batcher's thread already works).
                await asyncio.sleep(0)

    async def _receive_requests_on_wire(self, channel: str) -> None:
        """The lean transport's receive as a ``RedisWire`` callback: no redis-py, no task wake-up.

        Each popped message is accepted in the callback itself (its requests' tasks start
        in this loop iteration), and the next ``BLPOP`` is one write.
        """
        import msgpack

        key = self._layer.key(channel)
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            lost: asyncio.Future[BaseException] = loop.create_future()

            def on_lost(exc: BaseException, lost: asyncio.Future[BaseException] = lost) -> None:
                if not lost.done():
                    lost.set_result(exc)

            try:
                wire = await self._layer.open_wire(on_lost)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis restarting: keep trying
                logger.warning("tfbatch: worker %r cannot receive: %s", self.name, exc)
                await asyncio.sleep(self.settings.heartbeat)
                continue

            def popped(reply: Any, wire: Any = wire) -> None:
                if isinstance(reply, BaseException):
                    return  # connection lost: on_lost says so
                if reply is not None:
                    try:
                        message = msgpack.unpackb(reply[1], raw=False)
                        if message.get("type") == protocol.PREDICT:
                            self._accept(message)
                    except Exception:  # a malformed message: its callers time out
                        logger.exception("tfbatch: worker %r: bad request message", self.name)
                # The next BLPOP after the new requests' tasks have started (scheduled first).
                loop.call_soon(listen, wire)

            def listen(wire: Any) -> None:
                if wire.usable:
                    wire.command(popped, "BLPOP", key, 5)

            listen(wire)
            try:
                error = await lost
                logger.warning("tfbatch: worker %r cannot receive: %s", self.name, error)
            finally:
                wire.on_lost = None
                wire.close()
            await asyncio.sleep(self.settings.heartbeat)

    def _accept(self, message: dict[str, Any]) -> None:
        reply = message["reply"]
        # The deadline travels as the time left when sent; the clocks of two hosts agree
        # well enough (NTP) to take the transit off it, and never add to it.
        transit = max(0.0, time.time() - message["sent"])
        for call_id, model, timeout, inputs in message["requests"]:
            self.received += 1
            key = (reply, call_id)
            if self._cancelled.pop(key, None) is not None:
                continue
            remaining = None if timeout is None else timeout - transit
            if remaining is not None and remaining <= 0:
                error = PredictTimeout(
                    f"model {model!r}: deadline of {timeout * 1e3:.0f} ms passed before the worker received it",
                    model=model,
                )
                self._answer(reply, call_id, False, protocol.encode_error(error))
                continue
            self._start(key, model, inputs, remaining)

    def _start(self, key: tuple[str, int], model: str, inputs: dict[str, Any], timeout: float | None) -> None:
        """Hand a request to its batcher now, no task: its future's callback answers it.

        ``Batcher.submit_async`` takes the request in this very call (in the read callback,
        on the lean transport): posted at once, or gathered with the others this loop
        iteration reads and posted at its end. Either way no task's first step is waited
        for; a model still loading takes ``_serve``'s task instead.
        """
        reply, call_id = key
        try:
            arrays: Any = protocol.decode_arrays(inputs)
            if set(arrays) == {""}:  # the caller could not name the single input (model was loading)
                arrays = arrays[""]
            batcher = registry.get(model).batcher
            submit = getattr(batcher, "submit_async", None)
            if submit is None:
                self._held[key] = asyncio.create_task(self._serve(key, model, arrays, timeout))
                return
            future = submit(arrays, timeout)  # cancelling it withdraws the request
        except TFBatchError as exc:
            self._answer(reply, call_id, False, protocol.encode_error(exc))
            return
        except Exception as exc:
            logger.exception("tfbatch: worker %r: request failed", self.name)
            self._answer(reply, call_id, False, protocol.encode_error(exc))
            return
        self._held[key] = future
        future.add_done_callback(functools.partial(self._finished, key))

    def _finished(self, key: tuple[str, int], future: asyncio.Future[Any]) -> None:
        self._held.pop(key, None)
        reply, call_id = key
        if future.cancelled():
            return  # withdrawn by its caller: nobody to answer
        error = future.exception()
        if error is None:
            self._answer(reply, call_id, True, protocol.encode_prediction(future.result()))
        elif isinstance(error, TFBatchError):
            self._answer(reply, call_id, False, protocol.encode_error(error))
        else:
            logger.error("tfbatch: worker %r: request failed", self.name, exc_info=error)
            self._answer(reply, call_id, False, protocol.encode_error(error))

    async def _serve(self, key: tuple[str, int], model: str, arrays: Any, timeout: float | None) -> None:
        """A request whose model is still loading: await the load, then the batcher."""
        reply, call_id = key
        try:
            handle = registry.get(model)
            batcher = handle.batcher or await handle.aload()
            prediction = await batcher.predict(arrays, timeout=timeout)
        except asyncio.CancelledError:
            return  # withdrawn by its caller: nobody to answer
        except TFBatchError as exc:
            self._answer(reply, call_id, False, protocol.encode_error(exc))
        except Exception as exc:
            logger.exception("tfbatch: worker %r: request failed", self.name)
            self._answer(reply, call_id, False, protocol.encode_error(exc))
        else:
            self._answer(reply, call_id, True, protocol.encode_prediction(prediction))
        finally:
            self._held.pop(key, None)

    def _answer(self, reply: str, call_id: int, ok: bool, payload: dict[str, Any]) -> None:
        self._outbox.setdefault(reply, []).append([call_id, ok, payload])
        self._wake.set()

    async def _replier(self) -> None:
        import msgpack

        wire: Any = None
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            outbox, self._outbox = self._outbox, {}
            if getattr(self._layer, "wire_ok", False) and (wire is None or not wire.usable):
                try:
                    wire = await self._layer.open_wire()
                except Exception as exc:  # noqa: BLE001 - Redis restarting: redis-py's send says so below
                    logger.debug("tfbatch: worker %r: no direct connection to Redis: %s", self.name, exc)
                    wire = None
            if wire is not None:
                # The lean transport on a RedisWire: each reply message one write, no await
                # (redis-py below only for what a connection failing meanwhile left).
                for reply, replies in list(outbox.items()):
                    if not wire.usable:
                        break
                    frame = msgpack.packb({"type": protocol.REPLY, "replies": replies}, use_bin_type=True)
                    wire.command(functools.partial(self._sent, reply), *self._layer.send_args(reply, frame))
                    del outbox[reply]
            if not outbox:
                continue
            sends = [self._layer.send(reply, {"type": protocol.REPLY, "replies": r}) for reply, r in outbox.items()]
            results = await asyncio.gather(*sends, return_exceptions=True)
            for reply, result in zip(outbox, results, strict=True):
                if isinstance(result, BaseException):
                    self._sent(reply, result)

    def _sent(self, reply: str, result: Any) -> None:
        if result == 1 or result is None:  # sent (None: through the layer API)
            return
        # The web process's channel is full or Redis is down: its callers time out.
        why = "its reply channel is full" if result == 0 else repr(result)
        logger.warning("tfbatch: worker %r could not answer %s: %s", self.name, reply, why)

    # ------------------------------------------------------------------ control and heartbeats

    async def _receive_control(self) -> None:
        assert self._own is not None
        while not self._closing:
            try:
                message = await self._layer.receive(self._own)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis restarting, or a read timing out while idle
                logger.debug("tfbatch: worker %r cannot receive control messages: %s", self.name, exc)
                await asyncio.sleep(self.settings.heartbeat)
                continue
            kind = message.get("type")
            if kind == protocol.CANCEL:
                now = time.monotonic()
                for call_id in message["ids"]:
                    task = self._held.get((message["reply"], call_id))
                    if task is not None:
                        task.cancel()  # the batcher drops its rows unless their batch runs already
                    else:  # not received yet (or answered already): remember for a while
                        self._cancelled[(message["reply"], call_id)] = now
            elif kind == protocol.PING:
                try:
                    await self._layer.send(message["reply"], self._heartbeat_message())
                except Exception as exc:  # noqa: BLE001
                    logger.debug("tfbatch: worker %r could not answer a ping: %s", self.name, exc)

    async def _heartbeats(self) -> None:
        while not self._closing:
            await self._heartbeat()
            cutoff = time.monotonic() - _CANCELLED_MEMORY
            self._cancelled = {k: t for k, t in self._cancelled.items() if t > cutoff}
            await asyncio.sleep(self.settings.heartbeat)

    async def _heartbeat(self, stopping: bool = False) -> None:
        try:
            if not stopping:  # a restarted Redis forgets groups: stay reachable for cancels and pings
                await self._layer.group_add(protocol.control_group(self.name), self._own)
            await self._layer.group_send(protocol.heartbeat_group(self.name), self._heartbeat_message(stopping))
        except Exception as exc:  # noqa: BLE001 - Redis restarting: the next one may pass
            logger.warning("tfbatch: worker %r could not send its heartbeat: %s", self.name, exc)

    def _heartbeat_message(self, stopping: bool = False) -> dict[str, Any]:
        holding: dict[str, list[int]] = {}
        for reply, call_id in self._held:
            holding.setdefault(reply, []).append(call_id)
        models = {m: registry.get(m).snapshot() for m in self.models}
        return {
            "type": protocol.HEARTBEAT,
            "worker": self.name,
            "key": self.key,
            "host": self.key.split(":")[0],
            "pid": os.getpid(),
            "stopping": stopping,
            # Plain JSON types: settings and runner facts may hold paths and tuples.
            "models": json.loads(json.dumps(models, default=str)),
            "holding": holding,
        }
