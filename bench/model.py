"""The benchmark's model: a small image CNN whose batch-1 call costs a few milliseconds.

32x32x3 input, three blocks of two convolutions (64, 128, 256 filters): measured here at
~2.4 ms per call at batch 1 and ~960 rows/s at batch 64, on both cores (random weights:
throughput does not care). The export's folder name carries the architecture, so a
change to it exports afresh.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = ((64, 64), (128, 128), (256, 256))
MODEL_DIR = ROOT / "var" / "bench" / ("cnn-" + "-".join("x".join(map(str, block)) for block in BLOCKS))
INPUT_SHAPE = (32, 32, 3)


def export(path: Path = MODEL_DIR) -> Path:
    """Build the CNN and export it as a SavedModel (once; skipped when it exists)."""
    if (path / "saved_model.pb").is_file():
        return path
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = inputs
    for block in BLOCKS:
        for filters in block:
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, activation="relu")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs)

    module = tf.Module()
    module.model = model

    @tf.function(input_signature=[tf.TensorSpec((None, *INPUT_SHAPE), tf.float32, name="image")])
    def serve(image: Any) -> dict[str, Any]:
        return {"probabilities": model(image, training=False)}

    path.parent.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})
    return path


def offline(path: Path = MODEL_DIR, seconds: float = 3.0) -> dict[int, float]:
    """Calls of the exported signature per batch size: {batch size: ms per call}."""
    import tensorflow as tf

    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    result = {}
    for size in (1, 32, 64):
        x = tf.constant(np.random.default_rng(0).random((size, *INPUT_SHAPE), dtype=np.float32))
        for _ in range(5):
            fn(image=x)
        calls, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            fn(image=x)["probabilities"].numpy()
            calls += 1
        result[size] = (time.perf_counter() - t0) / calls * 1000
    return result
