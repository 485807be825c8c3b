"""The WebSocket consumer: many requests in flight per socket, batched with everyone's.

A Channels consumer handles one message at a time, so awaiting ``predict()`` inside
``receive`` would make a socket wait for each answer before reading its next request,
and a client could never contribute more than one row to a batch. Here each request
becomes a task of its own, capped per socket in requests (``MAX_IN_FLIGHT_PER_SOCKET``)
and in bytes held for it (``MAX_BYTES_PER_SOCKET``: its requests in flight, and its
answers until the server has taken them); a request over either cap is refused at once
with ``overloaded``. When the client goes away every task is cancelled, which withdraws
its queued rows from the batcher before they are computed.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from . import core, messages
from .channels_base import LeanDispatch, host_refusal, scope_context
from .errors import ServingError
from .messages import FrameError, Message, MessageId, failure, parse_binary_message, parse_message
from .options import ServingOptions, serving_options

__all__ = ["PredictConsumer"]


class PredictConsumer(LeanDispatch, AsyncWebsocketConsumer):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tasks: set[asyncio.Task[None]] = set()
        self._context: core.Context | None = None
        #: Bytes of requests in flight and of answers the server has not taken yet.
        self.held_bytes = 0
        self._answer_bytes = 0  # of which answers
        self._sending = asyncio.Lock()

    @property
    def context(self) -> core.Context:
        """This socket's caller (and the permission verdicts it was given)."""
        assert self._context is not None, "set when the socket is accepted"
        return self._context

    async def connect(self) -> None:
        """Accept the socket unless its Host is one ``ALLOWED_HOSTS`` refuses (DNS rebinding)
        or it presents an API key that is not valid: closing before accepting refuses
        the handshake (HTTP 403)."""
        if host_refusal(self.scope) is not None:
            await self.close()
            return
        try:
            self._context = await scope_context(self.scope, "websocket", refreshable=True)
        except ServingError:
            await self.close()
            return
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        options = serving_options()
        try:
            if text_data is not None:
                message = parse_message(text_data, options.max_request_bytes)
            else:
                message = parse_binary_message(bytes_data or b"", options.max_request_bytes)
        except FrameError as exc:
            await self._send_frame(failure(exc.message_id, exc))
            return
        except Exception as exc:  # noqa: BLE001 - a parser bug must cost one frame, not the socket
            await self._send_frame(failure(None, exc))
            return
        size = len(text_data) if text_data is not None else len(bytes_data or b"")
        full = self._full(options, size)
        if full is not None:
            await self._send_frame(failure(message.id, full))
            return
        self.held_bytes += size
        task = asyncio.create_task(self._serve_holding(message, size))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _full(self, options: ServingOptions, size: int) -> ServingError | None:
        """``overloaded`` when this request would pass the socket's limits, in requests or bytes."""
        if len(self._tasks) >= options.max_in_flight_per_socket:
            return ServingError(
                "overloaded",
                f"this socket already has {len(self._tasks)} requests in flight, the most allowed "
                "(TFBATCH['MAX_IN_FLIGHT_PER_SOCKET']); wait for answers before sending more",
            )
        if self.held_bytes + size > options.max_bytes_per_socket:
            return ServingError(
                "overloaded",
                f"this socket holds {self.held_bytes} bytes of requests in flight and answers not yet taken by "
                f"the server; this {size}-byte request would pass TFBATCH['MAX_BYTES_PER_SOCKET'] "
                f"({options.max_bytes_per_socket}): read your answers before sending more",
            )
        return None

    async def _serve_holding(self, message: Message, size: int) -> None:
        try:
            await self._serve(message)
        finally:
            self.held_bytes -= size

    async def _serve(self, message: Message) -> None:
        try:
            reply = await core.run(messages.flow(self.context, message))
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error frame
            reply = failure(message.id, exc)
        await self._reply(reply, message.id)

    async def _reply(self, frame: str | bytes, message_id: MessageId = None) -> None:
        """Hand an answer to the server; its bytes count against the socket until the server
        has taken it (a server with backpressure, such as uvicorn, keeps ``send`` waiting
        while the client does not read; daphne takes every frame at once: see README).

        An answer that would take the answers waiting for the server past
        ``MAX_BYTES_PER_SOCKET`` is replaced by an ``overloaded`` error frame (one answer
        larger than the limit still goes when nothing else waits): a client that does
        not read cannot make the server hold more for it.

        A server may refuse a frame: daphne will not send one over its
        ``--websocket-max-message-size`` (1 MiB by default) and raises instead. The
        client then gets a ``too_large`` error frame in its place, never silence.
        """
        size = len(frame)
        limit = serving_options().max_bytes_per_socket
        if self._answer_bytes and self._answer_bytes + size > limit:
            frame = failure(
                message_id,
                ServingError(
                    "overloaded",
                    f"this socket's answers not yet taken by the server hold {self._answer_bytes} bytes; this "
                    f"{size}-byte answer would pass TFBATCH['MAX_BYTES_PER_SOCKET'] ({limit}), so it was dropped: "
                    "read your answers before sending more",
                ),
            )
            size = len(frame)
        self.held_bytes += size
        self._answer_bytes += size
        try:
            await self._send_frame(frame)
        except Exception as exc:  # noqa: BLE001 - refused by the server, or the client is gone
            refused = ServingError(
                "too_large",
                f"the answer has {size} {'bytes' if isinstance(frame, bytes) else 'characters'}, more than the "
                f"server sends in one WebSocket frame ({type(exc).__name__}: {exc}); send fewer rows per request",
            )
            with contextlib.suppress(Exception):  # the client went away meanwhile: nobody to tell
                await self._send_frame(failure(message_id, refused))
        finally:
            self.held_bytes -= size
            self._answer_bytes -= size

    async def _send_frame(self, frame: str | bytes) -> None:
        """One frame at a time: a server with backpressure may not support concurrent sends
        (uvicorn's websockets protocol asserts when two wait for the buffer to drain)."""
        async with self._sending:
            if isinstance(frame, bytes):
                await self.send(bytes_data=frame)
            else:
                await self.send(frame)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        # Channels' version also leaves groups (this consumer joins none) and closes
        # database connections (it opens none).
        await self.disconnect(message.get("code", 1000))
        raise StopConsumer()

    async def disconnect(self, code: int) -> None:
        """Cancel every request still in flight: the batcher drops their queued rows."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
