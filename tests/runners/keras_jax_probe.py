"""Run in a subprocess by test_keras_jax.py: the Keras runner on the JAX backend.

KERAS_BACKEND must be set before Keras is imported, and the test process has Keras on
TensorFlow already, hence a process of its own. Prints one JSON line.
"""

from __future__ import annotations

import json
import logging
import os
import sys

os.environ["KERAS_BACKEND"] = "jax"

import jax
import numpy as np

from tfbatch_django.batching import BatchConfig, Batcher
from tfbatch_django.runners.keras import KerasRunner

compiles: list[str] = []


class _Count(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if "compil" in record.getMessage().lower():
            compiles.append(record.getMessage())


def main(archive: str, inputs_path: str, outputs_path: str) -> None:
    logging.getLogger("jax").addHandler(_Count())
    logging.getLogger("jax").setLevel(logging.DEBUG)
    jax.config.update("jax_log_compiles", True)
    runner = KerasRunner(archive)
    batcher = Batcher(runner, BatchConfig(max_batch_size=8, allowed_batch_sizes=(4, 8)), name="jax").start()
    after_warmup = len(compiles)
    images = np.load(inputs_path)
    outputs = []
    for start, size in ((0, 1), (1, 3), (4, 5), (9, 8), (17, 20)):  # sizes 1..20, split and padded
        outputs.append(batcher.predict_sync(images[start : start + size]).outputs["probs"])
    batcher.close()
    staged = runner.stage({name: images[:2] for name in runner.input_specs})
    np.save(outputs_path, np.concatenate(outputs))
    print(
        json.dumps(
            {
                "backend": runner.describe()["backend"],
                "warmup_sizes": [w["size"] for w in batcher.warmup_report],
                "compiles_during_warmup": after_warmup,
                "compiles_during_requests": len(compiles) - after_warmup,
                "staging": batcher.staging,
                "staged_types": sorted({type(v).__module__.split(".")[0] for v in staged.values()}),
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:4])
