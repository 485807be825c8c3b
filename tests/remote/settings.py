"""Settings of a ``tfbatch_worker`` process (and of the test process, via ``tfbatch(...)``).

The Redis URL, the worker name and the gate file come from the environment, so the test
process and its worker subprocesses share one ``TFBATCH`` dict.
"""

import os
from typing import Any

from tests.settings import *  # noqa: F403


def tfbatch(worker: str, transport: str = "auto") -> dict[str, Any]:
    return {
        "STATS_PUBLISH_INTERVAL": None,
        "WORKER_TRANSPORT": transport,
        "WORKER_HEARTBEAT_MS": 100,
        "WORKER_DEAD_AFTER_MS": 1000,
        "MODELS": {
            "remote": {
                "RUNNER": "tests.remote.models.gated_runner",
                "MAX_BATCH_SIZE": 64,
                "MAX_LATENCY_MS": 2,
                "WORKER": worker,
            },
            "tiny_queue": {
                "RUNNER": "tests.remote.models.gated_runner",
                "MAX_BATCH_SIZE": 1,
                "MAX_QUEUE_SIZE": 1,
                "WORKER": worker,
            },
            "local": {"RUNNER": "tests.fakes.double_runner", "MAX_BATCH_SIZE": 8},
            "nowhere": {"RUNNER": "tests.fakes.double_runner", "WORKER": "nobody"},
        },
    }


def channel_layers(url: str) -> dict[str, Any]:
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [url], "channel_capacity": {"tfbatch.*": 1000}},
        }
    }


TFBATCH = tfbatch(os.environ.get("TFBATCH_TEST_WORKER", "tw"), os.environ.get("TFBATCH_TEST_TRANSPORT", "auto"))
if os.environ.get("TFBATCH_TEST_DB"):  # a worker that publishes its stats for the dashboard
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["TFBATCH_TEST_DB"]}}
    TFBATCH["STATS_PUBLISH_INTERVAL"] = 0.2
CHANNEL_LAYERS = channel_layers(os.environ.get("TFBATCH_TEST_REDIS", "redis://127.0.0.1:6379"))
