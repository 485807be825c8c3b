"""``bench.settings`` for ``bench_workers.py``: the CNN served locally, or by a worker over Redis.

``TFBATCH_BENCH_REDIS`` (a ``redis://`` URL) puts the model behind ``WORKER = "bench-gpu"``;
``TFBATCH_BENCH_COALESCE=0`` sends one channel-layer message per request;
``TFBATCH_BENCH_TRANSPORT=layer`` goes through channels_redis's API instead of Redis itself.
"""

import os
from typing import Any

from bench.settings import *  # noqa: F403
from bench.settings import TFBATCH as _BASE

ROOT_URLCONF = "bench.worker_urls"
_REDIS = os.environ.get("TFBATCH_BENCH_REDIS")
_CNN: dict[str, Any] = {**_BASE["MODELS"]["cnn"]}  # type: ignore[index]
if _REDIS:
    _CNN["WORKER"] = "bench-gpu"
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [_REDIS], "channel_capacity": {"tfbatch.*": 10_000}},  # type: ignore[dict-item]
        }
    }
TFBATCH = {
    **_BASE,
    "MODELS": {"cnn": _CNN},
    "WORKER_COALESCE": os.environ.get("TFBATCH_BENCH_COALESCE", "1") == "1",
    "WORKER_TRANSPORT": os.environ.get("TFBATCH_BENCH_TRANSPORT", "auto"),
    "STATS_PUBLISH_INTERVAL": None,
    # A/B knob for the worker's GIL hand-offs (see README, GIL_SWITCH_INTERVAL_MS).
    "GIL_SWITCH_INTERVAL_MS": float(os.environ["TFBATCH_BENCH_GIL_MS"])
    if os.environ.get("TFBATCH_BENCH_GIL_MS")
    else None,
}
