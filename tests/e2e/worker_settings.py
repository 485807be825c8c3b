"""The demo project with its model served by a ``tfbatch_worker`` over a real Redis.

daphne, gunicorn and the worker all run these settings; the Redis URL comes from the
environment. ``sync/`` mounts the sync views for gunicorn's sync workers.
"""

import os

from demo_project.settings import *  # noqa: F403

ROOT_URLCONF = "tests.e2e.worker_urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["TFBATCH_TEST_DB"]}}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [os.environ["TFBATCH_TEST_REDIS"]], "channel_capacity": {"tfbatch.*": 1000}},
    }
}
TFBATCH = {
    **TFBATCH,  # noqa: F405
    "MODELS": {"digits": {**TFBATCH["MODELS"]["digits"], "WORKER": "gpu-e2e"}},  # noqa: F405
    "WORKER_HEARTBEAT_MS": 200,
    "WORKER_DEAD_AFTER_MS": 2000,
    "STATS_PUBLISH_INTERVAL": None,
}
