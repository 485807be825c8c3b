"""The hop on Redis itself: one command each way instead of channels_redis's machinery.

When ``CHANNEL_LAYERS[alias]`` is a ``channels_redis`` layer, the client and the worker
talk to the same Redis (its ``CONFIG["hosts"][0]``, connected the way channels_redis
connects, sentinels included) through this class, which has the five channel-layer calls
they use (``new_channel``, ``send``, ``receive``, ``group_add``/``group_discard``,
``group_send``) and the layer's semantics that matter here:

- a channel is a Redis list ``<prefix><channel>``: ``send`` is one ``EVALSHA`` (refuse with
  ``ChannelFull`` at the channel's capacity, ``RPUSH`` the msgpack frame, renew its
  ``expiry``), ``receive`` one ``BLPOP``; several receivers of one channel (several workers
  of one name) each take whole messages, each message exactly once;
- a group is a sorted set of channels scored by when they joined; ``group_send`` pushes
  to each live member (a full member is skipped, as channels_redis does).

Why: measured on the 2-core development machine, a channels_redis message costs ~0.55 ms
of Python (send plus receive: its per-message random prefix, a sorted set per channel,
the receive lock and buffers of process-local channels) against ~0.13 ms for a bare
``LPUSH`` + ``BRPOP``; a lone request crosses the hop twice (see the README's worker
benchmark). Any other layer backend keeps the channel-layer API (``make_layer``).

``RedisWire`` is the same Redis without redis-py, for the hot path of coroutine callers
(the per-loop lanes, ``lane.py``): a raw ``asyncio.Protocol`` whose commands are written at
once (no await, so a cancelled caller never interrupts one) and whose replies go, in
order, to the callbacks given with them. Measured here: a command round trip ~23 µs
against ~65 µs through ``redis.asyncio`` (its pool, locks and parser per command).
"""

from __future__ import annotations

import asyncio
import fnmatch
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import msgpack

__all__ = ["LeanRedisLayer", "RedisWire", "ReplyError", "make_layer", "uses_lean"]

_SEND = """
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

_BLOCK_S = 5  # one BLPOP waits at most this long (then the next), so a lost connection is noticed


def uses_lean(layer_config: Any, transport: str) -> bool:
    """The lean path: ``WORKER_TRANSPORT`` allows it and the layer is a channels_redis one."""
    backend = str((layer_config or {}).get("BACKEND", ""))
    return transport == "auto" and backend.startswith("channels_redis.")


def make_layer(alias: str, transport: str = "auto") -> Any:
    """The lean layer for a channels_redis alias (and ``transport="auto"``), else the layer itself."""
    from channels.layers import channel_layers

    config = channel_layers.configs.get(alias)
    if uses_lean(config, transport):
        return LeanRedisLayer(config.get("CONFIG") or {})
    return channel_layers.make_backend(alias)


class LeanRedisLayer:
    """The channel-layer calls of ``client.py`` and ``server.py`` as single Redis commands."""

    def __init__(self, config: dict[str, Any]) -> None:
        import redis.asyncio
        from channels_redis.utils import create_pool, decode_hosts

        self.prefix = str(config.get("prefix", "asgi")) + ":tfbatch:"
        self.expiry = int(config.get("expiry", 60))
        self.group_expiry = int(config.get("group_expiry", 86400))
        self.capacity = int(config.get("capacity", 100))
        self.channel_capacity = dict(config.get("channel_capacity") or {})
        host = decode_hosts(config.get("hosts"))[0]
        pool = create_pool(host)
        self.redis = redis.asyncio.Redis(connection_pool=pool)
        self._send = self.redis.register_script(_SEND)
        self.wire_target = _wire_target(pool)

    @property
    def wire_ok(self) -> bool:
        """Whether ``open_wire`` can reach this Redis (plain TCP or a Unix socket; not TLS or sentinels)."""
        return self.wire_target is not None

    async def open_wire(self, on_lost: Callable[[BaseException], None] | None = None) -> RedisWire:
        """A new ``RedisWire`` to this Redis on the running loop, authenticated and on the layer's db."""
        assert self.wire_target is not None
        loop = asyncio.get_running_loop()
        kind, where, auth, db = self.wire_target
        if kind == "unix":
            _, wire = await loop.create_unix_connection(RedisWire, where[0])
        else:
            _, wire = await loop.create_connection(RedisWire, where[0], where[1])
        try:
            if auth:
                await wire.call("AUTH", *auth)
            if db:
                await wire.call("SELECT", db)
        except BaseException:
            wire.close()
            raise
        wire.on_lost = on_lost
        return wire

    def send_args(self, channel: str, frame: bytes) -> tuple[Any, ...]:
        """``send``'s command for a ``RedisWire``: the same script (``EVAL``: no script cache to miss)."""
        return ("EVAL", _SEND, 1, self.prefix + channel, frame, self._capacity(channel), self.expiry)

    def key(self, channel: str) -> str:
        return self.prefix + channel

    def _capacity(self, channel: str) -> int:
        for pattern, value in self.channel_capacity.items():
            if fnmatch.fnmatchcase(channel, pattern):
                return int(value)
        return self.capacity

    async def new_channel(self, prefix: str = "specific") -> str:
        return f"{prefix}.{uuid.uuid4().hex}"

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        from channels.exceptions import ChannelFull

        frame = msgpack.packb(message, use_bin_type=True)
        if not await self._send(keys=[self.prefix + channel], args=[frame, self._capacity(channel), self.expiry]):
            raise ChannelFull(channel)

    async def receive(self, channel: str) -> dict[str, Any]:
        key = self.prefix + channel
        while True:
            item = await self.redis.blpop([key], timeout=_BLOCK_S)
            if item is not None:
                message: dict[str, Any] = msgpack.unpackb(item[1], raw=False)
                return message

    async def group_add(self, group: str, channel: str) -> None:
        key = self.prefix + "group:" + group
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {channel: time.time()})
            pipe.expire(key, self.group_expiry)
            await pipe.execute()

    async def group_discard(self, group: str, channel: str) -> None:
        await self.redis.zrem(self.prefix + "group:" + group, channel)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        key = self.prefix + "group:" + group
        await self.redis.zremrangebyscore(key, 0, time.time() - self.group_expiry)
        members = await self.redis.zrange(key, 0, -1)
        frame = msgpack.packb(message, use_bin_type=True)
        async with self.redis.pipeline(transaction=False) as pipe:
            for member in members:
                channel = member.decode() if isinstance(member, bytes) else str(member)
                await self._send(
                    keys=[self.prefix + channel], args=[frame, self._capacity(channel), self.expiry], client=pipe
                )
            await pipe.execute()


def _wire_target(pool: Any) -> tuple[str, tuple[Any, ...], tuple[str, ...], int] | None:
    """How ``RedisWire`` connects to the pool's Redis, or None where only redis-py can (TLS, sentinels)."""
    from redis.asyncio.connection import Connection, UnixDomainSocketConnection

    kwargs = pool.connection_kwargs
    if kwargs.get("credential_provider") is not None:
        return None
    password, username = kwargs.get("password"), kwargs.get("username")
    auth = () if not password else ((username, password) if username else (password,))
    db = int(kwargs.get("db") or 0)
    if pool.connection_class is Connection:
        return "tcp", (kwargs.get("host", "localhost"), int(kwargs.get("port", 6379))), auth, db
    if pool.connection_class is UnixDomainSocketConnection:
        return "unix", (kwargs["path"],), auth, db
    return None


class ReplyError(Exception):
    """Redis answered a command with an error (``-ERR ...``)."""


_Reply = Any  # bytes, str, int, None, a list of these, or a ReplyError / ConnectionError


def _encode(args: tuple[Any, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(parts)


_INCOMPLETE = object()


def _parse(buf: bytearray, pos: int) -> tuple[_Reply, int]:
    """One RESP2 reply at ``pos``: (reply, the position after it), or (_INCOMPLETE, pos)."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return _INCOMPLETE, pos
    kind, line, after = buf[pos], bytes(buf[pos + 1 : end]), end + 2
    if kind == 0x3A:  # ':' integer
        return int(line), after
    if kind == 0x24:  # '$' bulk string
        size = int(line)
        if size < 0:
            return None, after
        if len(buf) < after + size + 2:
            return _INCOMPLETE, pos
        return bytes(buf[after : after + size]), after + size + 2
    if kind == 0x2A:  # '*' array
        count = int(line)
        if count < 0:
            return None, after
        items = []
        for _ in range(count):
            item, after = _parse(buf, after)
            if item is _INCOMPLETE:
                return _INCOMPLETE, pos
            items.append(item)
        return items, after
    if kind == 0x2B:  # '+' simple string
        return line.decode(), after
    if kind == 0x2D:  # '-' error
        return ReplyError(line.decode(errors="replace")), after
    raise ConnectionError(f"unexpected reply from Redis: {bytes(buf[pos : pos + 40])!r}")


class RedisWire(asyncio.Protocol):
    """One Redis connection on one loop: ``command()`` writes now; replies reach their callbacks in order.

    A callback gets the reply, or a ``ReplyError``, or a ``ConnectionError`` once the
    connection is lost (then ``on_lost`` is called too, once). Nothing here awaits, so
    commands can be issued from plain callbacks and from coroutines that may be cancelled.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.on_lost: Callable[[BaseException], None] | None = None
        self.closed = False
        self._buf = bytearray()
        self._callbacks: deque[Callable[[_Reply], None]] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    @property
    def usable(self) -> bool:
        """Connected and not closing: ``command()`` will not raise."""
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def command(self, callback: Callable[[_Reply], None], *args: Any) -> None:
        if not self.usable:
            raise ConnectionError("the connection to Redis is closed")
        assert self.transport is not None
        self.transport.write(_encode(args))
        self._callbacks.append(callback)

    def call(self, *args: Any) -> asyncio.Future[_Reply]:
        """``command()`` as an awaitable; a ``ReplyError`` is raised."""
        future: asyncio.Future[_Reply] = asyncio.get_running_loop().create_future()

        def done(reply: _Reply) -> None:
            if not future.done():
                if isinstance(reply, BaseException):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)

        self.command(done, *args)
        return future

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        try:
            while pos < len(buf):
                reply, pos = _parse(buf, pos)
                if reply is _INCOMPLETE:
                    break
                self._callbacks.popleft()(reply)
        except (ConnectionError, ValueError, IndexError) as exc:  # a garbled stream: start over
            if self.transport is not None:
                self.transport.abort()
            self._lost(ConnectionError(f"bad reply from Redis: {exc}"))
            return
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(ConnectionError(f"connection to Redis lost ({exc or 'closed'})"))

    def _lost(self, error: ConnectionError) -> None:
        if self.closed:
            return
        self.closed = True
        callbacks, self._callbacks = self._callbacks, deque()
        for callback in callbacks:
            callback(error)
        if self.on_lost is not None:
            self.on_lost(error)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
