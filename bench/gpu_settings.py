"""Settings for ``bench_gpu.py``'s daphne: the demo project serving two ``.keras`` models.

``bench_gpu.py`` saves the models and passes their paths and batch sizes in the
environment (``TFBATCH_GPU_BENCH``, JSON: ``{name: {"PATH": ..., "MAX_BATCH_SIZE": ...,
"ALLOWED_BATCH_SIZES": [...]}}``); every other setting is the default, so the models are
served as a project that does not set ``JIT_COMPILE`` would serve them.
"""

import json
import os

from demo_project.settings import *  # noqa: F403

DEBUG = False
ROOT_URLCONF = "bench.urls"
ASGI_APPLICATION = "bench.asgi.application"
LOGGING = {"version": 1, "disable_existing_loggers": False}

TFBATCH = {
    "MODELS": {
        name: {**model, "MAX_LATENCY_MS": 5, "MAX_QUEUE_SIZE": 65_536, "TIMEOUT_MS": 60_000}
        for name, model in json.loads(os.environ.get("TFBATCH_GPU_BENCH", "{}")).items()
    },
    "PERMISSION": "any",
    "MAX_REQUEST_BYTES": 16 * 1024 * 1024,
}
