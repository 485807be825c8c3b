"""The WebSocket consumer: many requests in flight per socket, batched with everyone's.

A Channels consumer handles one message at a time, so awaiting ``predict()`` inside
``receive`` would make a socket wait for each answer before reading its next request,
and a client could never contribute more than one row to a batch. Here each request
becomes a task of its own, capped per socket (``MAX_IN_FLIGHT_PER_SOCKET``); a request
over the cap is refused at once with ``overloaded``. When the client goes away every
task is cancelled, which withdraws its queued rows from the batcher before they are
computed.
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
from .messages import FrameError, Message, failure, parse_binary_message, parse_message
from .options import serving_options

__all__ = ["PredictConsumer"]


class PredictConsumer(LeanDispatch, AsyncWebsocketConsumer):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tasks: set[asyncio.Task[None]] = set()
        self._context: core.Context | None = None

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
            await self.send(failure(exc.message_id, exc))
            return
        except Exception as exc:  # noqa: BLE001 - a parser bug must cost one frame, not the socket
            await self.send(failure(None, exc))
            return
        if len(self._tasks) >= options.max_in_flight_per_socket:
            full = ServingError(
                "overloaded",
                f"this socket already has {len(self._tasks)} requests in flight, the most allowed "
                "(TFBATCH['MAX_IN_FLIGHT_PER_SOCKET']); wait for answers before sending more",
            )
            await self.send(failure(message.id, full))
            return
        task = asyncio.create_task(self._serve(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, message: Message) -> None:
        try:
            reply = await core.run(messages.flow(self.context, message))
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error frame
            reply = failure(message.id, exc)
        await self._reply(reply)

    async def _reply(self, frame: str | bytes) -> None:
        with contextlib.suppress(Exception):  # the client went away meanwhile: nobody to tell
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
