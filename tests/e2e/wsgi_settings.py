"""The test settings, served by Django's WSGI runserver (``runserver --noasgi``, which
daphne's runserver provides, hence ``daphne`` in the apps)."""

from tests.settings import *  # noqa: F403

INSTALLED_APPS = ["daphne", *INSTALLED_APPS]  # noqa: F405
ROOT_URLCONF = "tests.serving.urls"
TFBATCH = {
    "MODELS": {
        "slow": {"RUNNER": "tests.fakes.slow_runner", "OPTIONS": {"delay_ms": 30}, "MAX_BATCH_SIZE": 16},
    },
    "PERMISSION": "any",
}
