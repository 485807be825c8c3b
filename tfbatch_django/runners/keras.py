"""Keras 3 runner for ``.keras`` archives, on whatever backend Keras runs on.

It goes through Keras' own API only (``load_model`` and ``predict_on_batch``), so the
same runner serves a model on the TensorFlow, JAX or PyTorch backend; that is how GPU
runs are checked on machines without TensorFlow. ``predict_on_batch`` compiles one
predict function (``tf.function`` / ``jax.jit``) and skips ``predict``'s dataset and
callback machinery; backends that compile per shape (JAX, XLA) should be given
``ALLOWED_BATCH_SIZES`` so warm-up covers every shape.

``jit_compile=None`` (the default) leaves Keras' own default in force, which Keras
resolves per backend: JAX compiles the predict function with ``jax.jit`` (when every
layer supports it), TensorFlow uses XLA only where it has a GPU (a ``tf.function``
graph otherwise), PyTorch runs eagerly. Forcing ``False`` on JAX runs the model op by
op: measured on an H200, ResNet-50 gave 1,020 rows/s that way against 5,069 compiled,
and a batch-1 call took 221 ms against 13.5 ms.

Archives are loaded with ``compile=False``: serving needs no optimizer or loss, and
custom losses would otherwise have to be importable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..batching.runner import Runner
from ..batching.spec import TensorSpec
from ..exceptions import ModelLoadError
from .config import FrameworkOptions, generated_names_note

__all__ = ["KerasRunner"]


def _keras_backend() -> str:
    return os.environ.get("KERAS_BACKEND", "tensorflow")


class KerasRunner(Runner):
    """Serve a Keras 3 model saved as a ``.keras`` file."""

    thread_safe = False  # Keras-on-JAX crashes with concurrent calls ("Array has been deleted")
    fresh_outputs = True  # every call's outputs are new arrays

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "auto",
        jit_compile: bool | None = None,
        framework: FrameworkOptions | None = None,
    ) -> None:
        if _keras_backend() == "tensorflow":
            from .tf_setup import import_tensorflow

            import_tensorflow(framework)
        import keras

        self._keras = keras
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"no Keras archive at {self.path}")
        self.device = self._device_name(device)
        try:
            with self._device_scope():
                self.model = keras.saving.load_model(str(self.path), compile=False)
        except Exception as exc:
            raise ModelLoadError(
                f"Keras {keras.__version__} could not load {self.path}: {type(exc).__name__}: {exc}"
            ) from exc
        if jit_compile is not None:
            self.model.jit_compile = jit_compile  # Keras falls back to False (with a warning) if unsupported
        # Read back what is in force: Keras resolves its "auto" default on first read.
        self.jit_compile = bool(self.model.jit_compile)
        self.jit_compile_source = "Keras default" if jit_compile is None else "JIT_COMPILE"
        model = self.model
        self._input_struct = getattr(model, "_inputs_struct", None)
        tensors = list(model.inputs)
        self.input_specs = {t.name: TensorSpec.of(t.name, t.dtype, t.shape) for t in tensors}
        if len(self.input_specs) != len(tensors):
            raise ModelLoadError(f"{self.path}: model inputs have duplicate names {[t.name for t in tensors]}")
        self._input_names = [t.name for t in tensors]
        self.output_names = list(model.output_names)
        outputs = list(model.outputs)
        if len(outputs) == len(self.output_names):
            self.output_specs = {
                name: TensorSpec.of(name, t.dtype, t.shape) for name, t in zip(self.output_names, outputs, strict=True)
            }
        self.notes: list[str] = []
        note = generated_names_note(self._input_names)
        if note:
            self.notes.append(note)

    def _device_name(self, device: str) -> str:
        kind, _, index = device.lower().partition(":")
        if kind == "auto":
            return "auto"
        return f"{kind}:{index or 0}"

    def _device_scope(self) -> Any:
        if self.device == "auto":
            import contextlib

            return contextlib.nullcontext()
        return self._keras.device(self.device)

    def _model_inputs(self, inputs: dict[str, Any]) -> Any:
        struct = self._input_struct
        if isinstance(struct, Mapping):
            return {key: inputs[tensor.name] for key, tensor in struct.items()}
        if len(self._input_names) == 1:
            return inputs[self._input_names[0]]
        return [inputs[name] for name in self._input_names]

    def stage(self, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        """Copy a batch onto the model's device (the batcher's staging thread, see Runner).

        JAX: ``jax.device_put``; TensorFlow: a tensor on the device. Done while the
        previous batch computes; the model itself is not called here, so a model that is
        not thread-safe (Keras on JAX) is still called by one thread at a time. String
        inputs, and other backends, stay numpy.
        """
        backend = self._keras.backend.backend()
        if backend not in ("jax", "tensorflow"):
            return inputs
        with self._device_scope():
            if backend == "jax":
                import jax

                return {k: v if v.dtype.kind == "O" else jax.device_put(v) for k, v in inputs.items()}
            import tensorflow as tf

            return {k: tf.identity(tf.convert_to_tensor(v)) for k, v in inputs.items()}

    def run(self, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
        with self._device_scope():
            result = self.model.predict_on_batch(self._model_inputs(inputs))
        if isinstance(result, Mapping):
            return {str(k): np.asarray(v) for k, v in result.items()}
        if isinstance(result, Sequence) and not isinstance(result, np.ndarray):
            return {name: np.asarray(v) for name, v in zip(self.output_names, result, strict=True)}
        return {self.output_names[0]: np.asarray(result)}

    def describe(self) -> dict[str, Any]:
        return {
            "runner": "keras",
            "path": str(self.path),
            "backend": self._keras.backend.backend(),
            "keras": self._keras.__version__,
            "device": self.device,
            "jit_compile": self.jit_compile,
            "jit_compile_source": self.jit_compile_source,
            "notes": list(self.notes),
        }
