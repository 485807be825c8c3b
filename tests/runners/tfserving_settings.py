"""A TF Serving REST endpoint for the TF Serving remote-runner tests: this project's own
REST API (tested against TF Serving's documented answers in tests/serving/) served by
daphne, with TF Serving's test SavedModel and two fakes that fail and dawdle."""

from pathlib import Path

from tests.settings import *  # noqa: F403

ROOT_URLCONF = "tests.serving.urls"
TFSERVING = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "tfserving"
TFBATCH = {
    "STATS_PUBLISH_INTERVAL": None,
    "PERMISSION": "any",
    "MODELS": {
        "half_plus_two": {"PATH": TFSERVING / "saved_model_half_plus_two_cpu"},
        "failing": {"RUNNER": "tests.fakes.failing_runner", "WARMUP": False},
        "slow": {"RUNNER": "tests.fakes.slow_runner", "OPTIONS": {"delay_ms": 3000}, "WARMUP": False},
    },
}
