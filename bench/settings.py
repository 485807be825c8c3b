"""The demo project's settings, serving the benchmark CNN twice: batched, and one row per call.

``TFBATCH_BENCH_MIDDLEWARE=none`` drops Django's middleware, to show what it costs.
"""

import os

from demo_project.settings import *  # noqa: F403

from .model import MODEL_DIR

DEBUG = False
ROOT_URLCONF = "bench.urls"
ASGI_APPLICATION = "bench.asgi.application"
LOGGING = {"version": 1, "disable_existing_loggers": False}

_MODEL = {"PATH": MODEL_DIR, "MAX_LATENCY_MS": 5, "MAX_QUEUE_SIZE": 4096, "TIMEOUT_MS": 30_000}
TFBATCH = {
    "MODELS": {
        "cnn": {**_MODEL, "MAX_BATCH_SIZE": 64},
        "cnn_b1": {**_MODEL, "MAX_BATCH_SIZE": 1},
    },
    "PERMISSION": "any",
}

if os.environ.get("TFBATCH_BENCH_MIDDLEWARE") == "none":
    MIDDLEWARE: list[str] = []
