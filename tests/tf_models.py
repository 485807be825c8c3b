"""Real TensorFlow models for tests, built once per session (a pytest plugin).

A small Keras model is saved both ways — as a ``.keras`` archive and as a SavedModel
export — plus a two-input, two-output model; tests compare what the runners return
with direct calls of the same Keras objects.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

TFSERVING = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "tfserving"
UNLOADABLE = Path(tempfile.gettempdir()) / "tfbatch-django-tests" / "unloadable_savedmodel"


def unloadable_savedmodel() -> Path:
    """A SavedModel that no TensorFlow version can load: TF Serving's half_plus_two with
    an empty variables index. Its ``saved_model.pb`` is intact, so the system checks
    pass and the failure shows where it belongs, when TensorFlow loads it. Made once per
    machine (also for the daphne processes the monitoring tests start)."""
    if not (UNLOADABLE / "00000123" / "variables" / "variables.index").is_file():
        staging = UNLOADABLE.with_name(f"{UNLOADABLE.name}.{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(TFSERVING / "saved_model_half_plus_two_cpu", staging, copy_function=shutil.copyfile)
        for folder in (staging, *staging.rglob("*")):
            if folder.is_dir():
                folder.chmod(0o755)  # shared/ is read-only
        (staging / "00000123" / "variables" / "variables.index").write_bytes(b"")
        try:
            staging.rename(UNLOADABLE)
        except OSError:  # another process made it meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    return UNLOADABLE


@dataclass
class BuiltModel:
    keras_model: Any
    keras_path: Path
    savedmodel_path: Path

    def direct(self, x: Any) -> Any:
        return self.keras_model(x, training=False)


@pytest.fixture(scope="session")
def tf():
    from tfbatch_django.runners.tf_setup import import_tensorflow

    return import_tensorflow()


@pytest.fixture(scope="session")
def classifier(tf, tmp_path_factory) -> BuiltModel:
    import keras

    keras.utils.set_random_seed(7)
    inputs = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(16, activation="relu")(h)
    outputs = keras.layers.Dense(10, activation="softmax", name="probs")(h)
    model = keras.Model(inputs, outputs)
    base = tmp_path_factory.mktemp("classifier")
    model.save(base / "classifier.keras")
    model.export(str(base / "savedmodel"), verbose=False)
    return BuiltModel(model, base / "classifier.keras", base / "savedmodel")


@pytest.fixture(scope="session")
def two_headed(tf, tmp_path_factory) -> BuiltModel:
    import keras

    keras.utils.set_random_seed(11)
    a = keras.Input((3,), name="a")
    b = keras.Input((2,), name="b", dtype="int32")
    joined = keras.layers.Concatenate()([a, keras.layers.Flatten()(keras.layers.Embedding(10, 2)(b))])
    total = keras.layers.Dense(1, name="total")(joined)
    scores = keras.layers.Dense(4, activation="softmax", name="scores")(joined)
    model = keras.Model({"a": a, "b": b}, {"total": total, "scores": scores})
    base = tmp_path_factory.mktemp("two_headed")
    model.save(base / "two_headed.keras")
    model.export(str(base / "savedmodel"), verbose=False)
    return BuiltModel(model, base / "two_headed.keras", base / "savedmodel")


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(3).random((37, 8, 8, 1), dtype=np.float32)
