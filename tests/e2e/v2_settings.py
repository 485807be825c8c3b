"""The demo project serving TF Serving's test SavedModels and a Keras file, for the
Open Inference Protocol tests with ``tritonclient`` (``test_tritonclient.py``)."""

import os
from pathlib import Path

from demo_project.settings import *  # noqa: F403

TFSERVING = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "tfserving"

TFBATCH = {
    "MODELS": {
        "half_plus_two": {"PATH": TFSERVING / "saved_model_half_plus_two_cpu", "MAX_LATENCY_MS": 5},
        "half_plus_two_tf2": {"PATH": TFSERVING / "saved_model_half_plus_two_tf2_cpu"},
        "half_plus_three": {"PATH": TFSERVING / "saved_model_half_plus_three"},
        "classifier": {"PATH": Path(os.environ["TFBATCH_TEST_KERAS_MODEL"]), "MAX_LATENCY_MS": 5},
    },
    "PERMISSION": "any",
    "STATS_PUBLISH_INTERVAL": None,
}
