"""The lean transport (``remote/lean.py``) against a real Redis: the layer semantics the hop relies on."""

from __future__ import annotations

import asyncio

import pytest
from channels.exceptions import ChannelFull

from tfbatch_django.remote.lean import LeanRedisLayer, RedisWire, ReplyError, make_layer, uses_lean

REDIS_LAYER = "channels_redis.core.RedisChannelLayer"


def _run(url, body):
    async def main():
        layer = LeanRedisLayer({"hosts": [url], "channel_capacity": {"small.*": 2}, "prefix": "lean-test"})
        try:
            return await body(layer)
        finally:
            await layer.redis.aclose()

    return asyncio.run(main())


def test_a_message_travels_as_sent(redis_url):
    message = {"type": "tfbatch.predict", "requests": [[1, "m", 0.5, {"x": ["<f4", [1, 3], b"\x00" * 12]}]]}

    async def body(layer):
        channel = await layer.new_channel("tfbatch.reply")
        await layer.send(channel, message)
        return await layer.receive(channel)

    assert _run(redis_url, body) == message


def test_receivers_of_one_channel_each_take_whole_messages_once(redis_url):
    async def body(layer):
        got: list[int] = []

        async def receiver():
            while True:
                got.append((await layer.receive("tfbatch.w.shared"))["n"])

        tasks = [asyncio.create_task(receiver()) for _ in range(3)]
        await asyncio.sleep(0.1)  # all three blocked on the list
        for n in range(30):
            await layer.send("tfbatch.w.shared", {"n": n})
        for _ in range(500):
            if len(got) == 30:
                break
            await asyncio.sleep(0.01)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return got

    assert sorted(_run(redis_url, body)) == list(range(30))


def test_a_full_channel_refuses_with_channel_full(redis_url):
    async def body(layer):
        await layer.send("small.a", {"n": 1})
        await layer.send("small.a", {"n": 2})
        with pytest.raises(ChannelFull):
            await layer.send("small.a", {"n": 3})
        await layer.receive("small.a")
        await layer.send("small.a", {"n": 3})  # room again
        return [(await layer.receive("small.a"))["n"] for _ in range(2)]

    assert _run(redis_url, body) == [2, 3]


def test_groups_reach_their_members_until_discarded(redis_url):
    async def body(layer):
        a, b = await layer.new_channel("a"), await layer.new_channel("b")
        await layer.group_add("tfbatch.hb.g", a)
        await layer.group_add("tfbatch.hb.g", b)
        await layer.group_send("tfbatch.hb.g", {"type": "hb", "n": 1})
        first = [await layer.receive(a), await layer.receive(b)]
        await layer.group_discard("tfbatch.hb.g", b)
        await layer.group_send("tfbatch.hb.g", {"type": "hb", "n": 2})
        await layer.group_send("tfbatch.hb.nobody", {"type": "hb"})  # no members: nothing to do
        return first, await layer.receive(a), await layer.redis.llen(layer.prefix + b)

    first, second, left_for_b = _run(redis_url, body)
    assert first == [{"type": "hb", "n": 1}] * 2 and second == {"type": "hb", "n": 2} and left_for_b == 0


def test_a_receive_cancelled_while_blocked_leaves_the_layer_usable(redis_url):
    async def body(layer):
        waiting = asyncio.create_task(layer.receive("nothing.here"))
        await asyncio.sleep(0.1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await layer.send("after", {"ok": True})
        return await layer.receive("after")

    assert _run(redis_url, body) == {"ok": True}


def test_only_channels_redis_layers_take_the_lean_path(settings, redis_url):
    assert uses_lean({"BACKEND": REDIS_LAYER}, "auto")
    assert uses_lean({"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer"}, "auto")
    assert not uses_lean({"BACKEND": REDIS_LAYER}, "layer")
    assert not uses_lean({"BACKEND": "channels.layers.InMemoryChannelLayer"}, "auto")
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": REDIS_LAYER, "CONFIG": {"hosts": [redis_url]}},
        "memory": {"BACKEND": "channels.layers.InMemoryChannelLayer"},
    }
    from channels.layers import InMemoryChannelLayer
    from channels_redis.core import RedisChannelLayer

    assert isinstance(make_layer("default"), LeanRedisLayer)
    assert isinstance(make_layer("default", "layer"), RedisChannelLayer)
    assert isinstance(make_layer("memory"), InMemoryChannelLayer)


def test_a_wire_speaks_the_layers_protocol_and_answers_in_order(redis_url):
    """``RedisWire`` (the lanes' connection) and ``LeanRedisLayer`` share channels and frames."""
    import msgpack

    async def body(layer):
        wire = await layer.open_wire()
        try:
            channel = await layer.new_channel("tfbatch.reply")
            message = {"type": "tfbatch.reply", "replies": [[1, True, {"y": b"\x00\xff" * 600}]]}
            sent = await wire.call(*layer.send_args(channel, msgpack.packb(message, use_bin_type=True)))
            got = await layer.receive(channel)  # written by the wire, read by redis-py
            await layer.send("small.x", {"n": 1})
            await layer.send("small.x", {"n": 2})
            full = await wire.call(*layer.send_args("small.x", b"\x80"))  # capacity 2: refused
            replies = []  # several commands in flight on one connection: replies in order
            for args in (("PING",), ("RPUSH", "lean-test:l", "a", "b"), ("LRANGE", "lean-test:l", 0, -1), ("NOPE",)):
                wire.command(replies.append, *args)
            popped = await wire.call("BLPOP", layer.key(channel), 1)  # empty: a null after the timeout
            return sent, got == message, full, replies, popped
        finally:
            wire.close()

    sent, same, full, replies, popped = _run(redis_url, body)
    assert sent == 1 and same and full == 0 and popped is None
    assert replies[:3] == ["PONG", 2, [b"a", b"b"]]
    assert isinstance(replies[3], ReplyError) and "unknown command" in str(replies[3])


def test_a_wire_parses_replies_cut_anywhere():
    wire = RedisWire()
    got: list = []
    for _ in range(5):
        wire._callbacks.append(got.append)
    stream = b"*2\r\n$7\r\nchannel\r\n$5\r\nhello\r\n:42\r\n$-1\r\n*-1\r\n-ERR wrong\r\n"
    for i in range(len(stream)):  # one byte at a time
        wire.data_received(stream[i : i + 1])
    assert got[:4] == [[b"channel", b"hello"], 42, None, None]
    assert isinstance(got[4], ReplyError) and str(got[4]) == "ERR wrong"


def test_a_lost_wire_fails_its_waiting_commands_and_says_so(redis_url):
    async def body(layer):
        lost: list[BaseException] = []
        wire = await layer.open_wire(lost.append)
        killer = await layer.open_wire()
        try:
            own_id = await wire.call("CLIENT", "ID")
            blocked = wire.call("BLPOP", "lean-test:never", 5)
            await asyncio.sleep(0.05)
            await killer.call("CLIENT", "KILL", "ID", own_id)  # as when Redis restarts
            with pytest.raises(ConnectionError):
                await blocked
            with pytest.raises(ConnectionError):
                wire.command(print, "PING")
            return len(lost)
        finally:
            wire.close()
            killer.close()

    assert _run(redis_url, body) == 1
