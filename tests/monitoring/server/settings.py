"""Settings of the daphne processes the multi-process and browser tests start.

They share one SQLite file (``TFBATCH_TEST_DB``), as the workers of one deployment
share one database. ``TFBATCH_TEST_MODELS=tensorflow`` adds TF Serving's test
SavedModels: one that serves, one that TensorFlow refuses to load (a corrupted copy).
"""

import os
from pathlib import Path

from tests.settings import *  # noqa: F403

TFSERVING = Path(__file__).resolve().parents[4] / "shared" / "testdata" / "tfserving"  # as in tests/tf_models.py

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["TFBATCH_TEST_DB"],
        # Several processes write: WAL lets readers and a writer overlap, IMMEDIATE
        # makes writers queue for the lock instead of failing to upgrade it.
        "OPTIONS": {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL", "transaction_mode": "IMMEDIATE"},
    }
}
ROOT_URLCONF = "tests.monitoring.server.urls"
STATIC_URL = "/static/"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # test logins only

MODELS = {"double": {"RUNNER": "tests.fakes.double_runner", "MAX_BATCH_SIZE": 8, "MAX_LATENCY_MS": 2}}
if os.environ.get("TFBATCH_TEST_MODELS") == "tensorflow":
    MODELS["half_plus_two"] = {"PATH": TFSERVING / "saved_model_half_plus_two_cpu", "MAX_BATCH_SIZE": 8}
    from tests.tf_models import unloadable_savedmodel

    # Named after TF Serving's half_plus_three, which it replaced: a model no TensorFlow can load.
    MODELS["half_plus_three"] = {"PATH": unloadable_savedmodel(), "MAX_BATCH_SIZE": 8}

TFBATCH = {
    "MODELS": MODELS,
    "STATS_PUBLISH_INTERVAL": 0.5,
    "STATS_STALE_AFTER": 3,
    "STATS_HISTORY_INTERVAL": 1,
    "DASHBOARD_REFRESH_SECONDS": 1,
    "PROMETHEUS": True,
}
