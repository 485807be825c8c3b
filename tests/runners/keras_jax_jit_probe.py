"""Run in a subprocess by test_keras_jax.py: is a ``.keras`` model served compiled on JAX?

Builds a model with a layer that counts how often its Python ``call`` runs, saves it,
and serves it through settings -> registry -> batcher three times: with default settings,
with ``JIT_COMPILE: False`` and with ``JIT_COMPILE: True``. Compiled, ``call`` runs only
while ``jax.jit`` traces a new shape (during warm-up), never during requests of warmed-up
shapes; op by op, it runs on every model call. Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ["KERAS_BACKEND"] = "jax"

import keras
import numpy as np

CALLS = [0]


@keras.saving.register_keras_serializable(package="tfbatch_probe")
class CountCalls(keras.layers.Layer):  # type: ignore[misc]
    """Identity that counts Python-side executions."""

    def call(self, x: Any) -> Any:
        CALLS[0] += 1
        return x


MODES: dict[str, dict[str, Any]] = {"default": {}, "off": {"JIT_COMPILE": False}, "on": {"JIT_COMPILE": True}}


def main(folder: str) -> None:
    keras.utils.set_random_seed(3)
    inputs = keras.Input((6,), name="x")
    hidden = CountCalls()(keras.layers.Dense(5)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, name="y")(hidden))
    archive = Path(folder) / "counting.keras"
    model.save(archive)

    from django.conf import settings

    base = {"PATH": archive, "MAX_BATCH_SIZE": 8, "ALLOWED_BATCH_SIZES": [4, 8]}
    settings.configure(
        INSTALLED_APPS=["tfbatch_django"],
        TFBATCH={"MODELS": {name: {**base, **extra} for name, extra in MODES.items()}},
    )
    import django

    django.setup()
    from tfbatch_django import model_info, predict_sync
    from tfbatch_django.registry import registry

    rows = np.random.default_rng(0).random((20, 6), dtype=np.float32)
    report: dict[str, Any] = {}
    for name in MODES:
        registry.get(name).load()  # loads and warms up sizes 4 and 8
        CALLS[0] = 0
        outputs = [predict_sync(name, rows[start : start + size]) for start, size in ((0, 1), (1, 3), (4, 8), (12, 8))]
        outputs += [predict_sync(name, rows[:5]) for _ in range(5)]
        runner = model_info(name)["runner"]
        report[name] = {
            "calls_during_requests": CALLS[0],
            "jit_compile": runner["jit_compile"],
            "jit_compile_source": runner["jit_compile_source"],
            "backend": runner["backend"],
            "setting": model_info(name)["settings"]["JIT_COMPILE"],
            "outputs": np.concatenate(outputs).tolist(),
        }
    registry.reset()
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
