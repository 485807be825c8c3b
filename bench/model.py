"""The benchmark's model: a small image CNN whose batch-1 call costs a few milliseconds.

32x32x3 input, three blocks of two convolutions (64, 128, 256 filters): measured here at
~2.4 ms per call at batch 1 and 900-990 rows/s at batch 32-64 (random weights:
throughput does not care). The export's folder name carries the architecture, so a
change to it exports afresh.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = ((64, 64), (128, 128), (256, 256))
MODEL_DIR = ROOT / "var" / "bench" / ("cnn-" + "-".join("x".join(map(str, block)) for block in BLOCKS))
INPUT_SHAPE = (32, 32, 3)


def build_cnn() -> Any:
    """The CNN as a Keras model, on whatever backend Keras runs (``bench_gpu.py`` uses JAX)."""
    import keras

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
    return keras.Model(inputs, outputs)


def export(path: Path = MODEL_DIR) -> Path:
    """Build the CNN and export it as a SavedModel (once; skipped when it exists)."""
    if (path / "saved_model.pb").is_file():
        return path
    import tensorflow as tf

    model = build_cnn()

    module = tf.Module()
    module.model = model

    @tf.function(  # type: ignore[untyped-decorator]
        input_signature=[tf.TensorSpec((None, *INPUT_SHAPE), tf.float32, name="image")]
    )
    def serve(image: Any) -> dict[str, Any]:
        return {"probabilities": model(image, training=False)}

    path.parent.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})
    return path


def offline(
    path: Path = MODEL_DIR, seconds: float = 2.0, callers: int = 1, sizes: tuple[int, ...] = (1, 16, 32, 64)
) -> dict[int, float]:
    """Rows/s of the exported signature per batch size, ``callers`` threads calling it at once.

    Run in a process of its own when TensorFlow's thread pools matter (``layouts()``).
    """
    import tensorflow as tf

    fn = tf.saved_model.load(str(path)).signatures["serving_default"]

    def call(x: Any, stop: float, counts: list[int], i: int) -> None:
        while time.perf_counter() < stop:
            fn(image=x)["probabilities"].numpy()
            counts[i] += len(x)

    result = {}
    for size in sizes:
        x = tf.constant(np.random.default_rng(0).random((size, *INPUT_SHAPE), dtype=np.float32))
        for _ in range(3):
            fn(image=x)
        counts = [0] * callers
        t0 = time.perf_counter()
        threads = [threading.Thread(target=call, args=(x, t0 + seconds, counts, i)) for i in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        result[size] = sum(counts) / (time.perf_counter() - t0)
    return result


#: The two ways to spend the cores on this model: every core on one call (TensorFlow's
#: default), or one core per call with a call per core at once (``INTRA_OP_THREADS = 1``
#: plus ``MAX_CONCURRENT_BATCHES = cores``, what ``bench/settings.py`` serves with).
LAYOUTS = {
    "one call on all cores": {"intra_op": 0, "callers": 1},
    "one call per core": {"intra_op": 1, "callers": os.cpu_count() or 1},
}


def layouts(path: Path = MODEL_DIR, seconds: float = 2.0) -> dict[str, dict[int, float]]:
    """``offline()`` under each of ``LAYOUTS``, each in a fresh process (thread pools are set once)."""
    results = {}
    for name, layout in LAYOUTS.items():
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.model",
                str(path),
                str(seconds),
                str(layout["intra_op"]),
                str(layout["callers"]),
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results[name] = {int(size): rate for size, rate in json.loads(out.splitlines()[-1]).items()}
    return results


if __name__ == "__main__":  # python -m bench.model PATH SECONDS INTRA_OP_THREADS CALLERS
    import tensorflow as tf

    if int(sys.argv[3]):
        tf.config.threading.set_intra_op_parallelism_threads(int(sys.argv[3]))
    print(json.dumps(offline(Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[4]))))
