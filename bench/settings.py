"""The demo project's settings, serving the benchmark CNN twice: batched, and one row per call.

``TFBATCH_BENCH_MIDDLEWARE=none`` drops Django's middleware, to show what it costs;
``TFBATCH_BENCH_LAYOUT=per-core`` serves with one core per model call and a call per core
at once instead of TensorFlow's default (every core on one call).
"""

import os

from demo_project.settings import *  # noqa: F403

from .model import MODEL_DIR

DEBUG = False
ROOT_URLCONF = "bench.urls"
ASGI_APPLICATION = "bench.asgi.application"
LOGGING = {"version": 1, "disable_existing_loggers": False}

# One core per model call and a call per core at once (``bench.model.LAYOUTS``), or
# TensorFlow's default: every core on one call.
_PER_CORE = os.environ.get("TFBATCH_BENCH_LAYOUT") == "per-core"
# TFBATCH_BENCH_TIMEOUT_MS: the soak (bench_soak.py) sheds overload with a short deadline.
_TIMEOUT_MS = int(os.environ.get("TFBATCH_BENCH_TIMEOUT_MS", "30000"))
_MODEL = {"PATH": MODEL_DIR, "MAX_LATENCY_MS": 5, "MAX_QUEUE_SIZE": 4096, "TIMEOUT_MS": _TIMEOUT_MS}
if _PER_CORE:
    _MODEL["MAX_CONCURRENT_BATCHES"] = os.cpu_count() or 1
TFBATCH = {
    "MODELS": {
        "cnn": {**_MODEL, "MAX_BATCH_SIZE": 64},
        "cnn_b1": {**_MODEL, "MAX_BATCH_SIZE": 1},
    },
    "PERMISSION": "any",
    "INTRA_OP_THREADS": 1 if _PER_CORE else None,
}

if os.environ.get("TFBATCH_BENCH_MIDDLEWARE") == "none":
    MIDDLEWARE = []
