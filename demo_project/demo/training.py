"""Train the demo's digit classifier on scikit-learn's bundled 8x8 digits and export it.

The data ships inside scikit-learn (no download). The SavedModel has stable names:
input ``pixels`` (float32, shape (None, 8, 8), values 0..16 like the data set, ink
high) and output ``probabilities`` (float32, shape (None, 10)).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

INPUT_NAME = "pixels"
OUTPUT_NAME = "probabilities"


@dataclass(frozen=True)
class TrainingReport:
    path: Path
    train_rows: int
    test_accuracy: float
    seconds: float


def load_digits_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): images (n, 8, 8) float32 in 0..16, labels int."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.images.astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    return x_train, y_train, x_test, y_test


def build_model(keras: Any) -> Any:
    inputs = keras.Input(shape=(8, 8), name=INPUT_NAME)
    x = keras.layers.Rescaling(1 / 16)(inputs)
    x = keras.layers.Reshape((8, 8, 1))(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name=OUTPUT_NAME)(x)
    return keras.Model(inputs, outputs, name="digits")


def train_and_export(path: Path, *, epochs: int = 20, seed: int = 0) -> TrainingReport:
    """Train, then write the SavedModel to ``path`` atomically (a half-written model never appears)."""
    import time

    import keras
    import tensorflow as tf

    t0 = time.perf_counter()
    keras.utils.set_random_seed(seed)
    x_train, y_train, x_test, y_test = load_digits_split(seed)
    model = build_model(keras)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0)
    accuracy = float(np.mean(np.argmax(model.predict_on_batch(x_test), axis=1) == y_test))

    module = tf.Module()
    module.model = model

    @tf.function(input_signature=[tf.TensorSpec((None, 8, 8), tf.float32, name=INPUT_NAME)])  # type: ignore[untyped-decorator]
    def serve(pixels: Any) -> dict[str, Any]:
        return {OUTPUT_NAME: model(pixels, training=False)}

    module.serve = serve
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        tf.saved_model.save(module, str(staging), signatures={"serving_default": serve})
        if path.exists():
            shutil.rmtree(path)
        staging.rename(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return TrainingReport(path, len(x_train), accuracy, time.perf_counter() - t0)
