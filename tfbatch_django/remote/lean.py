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
"""

from __future__ import annotations

import fnmatch
import time
import uuid
from typing import Any

import msgpack

__all__ = ["LeanRedisLayer", "make_layer", "uses_lean"]

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
        self.redis = redis.asyncio.Redis(connection_pool=create_pool(host))
        self._send = self.redis.register_script(_SEND)

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
