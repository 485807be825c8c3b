"""The worker keys: models served by ``manage.py tfbatch_worker`` over the channel layer."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .problems import Problem, is_number

__all__ = [
    "WORKER_DEFAULTS",
    "WORKER_NAME_RE",
    "WORKER_TRANSPORTS",
    "WorkerConfig",
    "check_channel_layer",
    "parse_workers",
]

WORKER_DEFAULTS: dict[str, Any] = {
    "WORKER_CHANNEL_LAYER": "default",  # alias in settings.CHANNEL_LAYERS (channels_redis)
    "WORKER_HEARTBEAT_MS": 500,  # how often a worker says it is alive (and what it holds)
    "WORKER_DEAD_AFTER_MS": 3000,  # silence after which callers give up on a worker
    "WORKER_COALESCE": True,  # one channel-layer message per burst of requests (see remote/client.py)
    "WORKER_TRANSPORT": "auto",  # "auto": straight on channels_redis's Redis (remote/lean.py); "layer": the layer API
}

#: The values of ``WORKER_TRANSPORT``.
WORKER_TRANSPORTS = ("auto", "layer")

#: A worker name becomes part of channel and group names (letters, digits, ``-_.``; < 80).
WORKER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")


@dataclass(frozen=True)
class WorkerConfig:
    """The worker keys, times in seconds."""

    channel_layer: str = "default"
    heartbeat: float = 0.5
    dead_after: float = 3.0
    coalesce: bool = True
    transport: str = "auto"


def parse_workers(top: Mapping[str, Any], problems: list[Problem]) -> WorkerConfig:
    """E031 for a bad worker key (the key falls back to its default)."""
    values = dict(top)
    if not isinstance(values["WORKER_CHANNEL_LAYER"], str):
        problems.append(Problem("E031", "TFBATCH['WORKER_CHANNEL_LAYER'] must be a CHANNEL_LAYERS alias (a string)."))
        values["WORKER_CHANNEL_LAYER"] = "default"
    for key in ("WORKER_HEARTBEAT_MS", "WORKER_DEAD_AFTER_MS"):
        if not (is_number(values[key]) and values[key] > 0):
            problems.append(Problem("E031", f"TFBATCH[{key!r}] must be a positive number, got {values[key]!r}."))
            values[key] = WORKER_DEFAULTS[key]
    if values["WORKER_DEAD_AFTER_MS"] <= 2 * values["WORKER_HEARTBEAT_MS"]:
        problems.append(
            Problem(
                "E031",
                "TFBATCH['WORKER_DEAD_AFTER_MS'] must be more than twice WORKER_HEARTBEAT_MS "
                "(one late heartbeat would declare a live worker dead).",
            )
        )
        values["WORKER_HEARTBEAT_MS"], values["WORKER_DEAD_AFTER_MS"] = (
            WORKER_DEFAULTS["WORKER_HEARTBEAT_MS"],
            WORKER_DEFAULTS["WORKER_DEAD_AFTER_MS"],
        )
    if values["WORKER_TRANSPORT"] not in WORKER_TRANSPORTS:
        problems.append(
            Problem(
                "E031", f"TFBATCH['WORKER_TRANSPORT'] must be 'auto' or 'layer', got {values['WORKER_TRANSPORT']!r}."
            )
        )
        values["WORKER_TRANSPORT"] = "auto"
    return WorkerConfig(
        channel_layer=values["WORKER_CHANNEL_LAYER"],
        heartbeat=values["WORKER_HEARTBEAT_MS"] / 1000.0,
        dead_after=values["WORKER_DEAD_AFTER_MS"] / 1000.0,
        coalesce=bool(values["WORKER_COALESCE"]),
        transport=values["WORKER_TRANSPORT"],
    )


def check_channel_layer(workers: WorkerConfig, uses_workers: bool, channel_layers: Any) -> list[Problem]:
    """E032: models have a WORKER but the channel layer cannot reach another process."""
    if not uses_workers:
        return []
    hint = (
        "Use channels_redis: CHANNEL_LAYERS = {'default': {'BACKEND': 'channels_redis.core.RedisChannelLayer', ...}}."
    )
    alias = workers.channel_layer
    config = channel_layers.get(alias) if isinstance(channel_layers, Mapping) else None
    if not isinstance(config, Mapping):
        return [Problem("E032", f"models have a WORKER, but CHANNEL_LAYERS has no {alias!r} layer.", hint)]
    backend = str(config.get("BACKEND", ""))
    if backend.endswith("InMemoryChannelLayer"):
        message = f"models have a WORKER, but CHANNEL_LAYERS[{alias!r}] is in memory: it cannot reach a worker process."
        return [Problem("E032", message, hint)]
    return []
