"""TensorFlow SavedModel runner: calls one signature's concrete function directly.

``model.predict`` costs ~45 ms a call here whatever the batch (it builds a dataset and
runs callbacks); a signature's concrete function costs well under 1 ms at batch 1 and
never retraces, because its batch dimension is already ``None``.

Real exports have quirks this runner absorbs:

* TF1 exports (``tf.compat.v1`` builders) load as wrapped graph functions; their
  signatures may take serialized ``tf.Example`` strings of unknown rank.
* Some TF2 exports fix the batch dimension (``shape=(1,)``): such a signature can only
  run one row per call, so the runner loops over rows, and says so in the log and in
  ``describe()``.
* TF Serving's layout (a base directory of numbered versions) serves the highest one.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..batching.runner import Runner
from ..batching.spec import TensorSpec
from ..exceptions import InvalidInput, ModelLoadError
from .config import FrameworkOptions, generated_names_note
from .savedmodel_meta import is_tf1_export, resolve_savedmodel_dir
from .tf_setup import import_tensorflow, resolve_device

__all__ = ["TF1_NOTE", "SavedModelRunner", "op_error_message", "tf_dtype_to_numpy"]

TF1_NOTE = "TF1 export: loaded with TensorFlow's v1 compatibility loader (graph signatures, read-only variables)"

logger = logging.getLogger("tfbatch_django.runners")


def tf_dtype_to_numpy(dtype: Any) -> np.dtype[Any]:
    """numpy dtype for a ``tf.DType``; strings become ``object`` (bytes)."""
    if dtype.name == "string":
        return np.dtype(object)
    return np.dtype(dtype.as_numpy_dtype)  # type: ignore[no-any-return]


def op_error_message(message: str) -> str:
    """A TensorFlow op error's own words, without the Python stack eager execution adds
    ("Detected at node ... defined at (most recent call last): File ...", server paths
    a client must not see) and the internal function name: what TensorFlow Serving says."""
    kept = [
        part
        for part in message.split("\n\n")
        if part.strip() and part != "Graph execution error:" and not part.startswith(("Detected at node", "  File "))
    ]
    text = "\n\n".join(kept) or message
    return re.sub(r"\s*\[Op:[^\]]*\]\s*$", "", text)


@contextlib.contextmanager
def _captured_warnings(tf: Any, notes: list[str]) -> Iterator[None]:
    """Turn TensorFlow's load-time warnings into notes (once each) instead of log spam.

    They are facts about the model, shown in ``describe()`` and on the admin page. TF1
    exports log one warning per reference variable, the first time only: those are left
    out, the runner notes TF1 exports itself (``is_tf1_export``).
    """

    class _Collect(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            message = record.getMessage()
            if "reference variable" not in message and message not in notes:
                notes.append(message)
            return False

    tf_logger = tf.get_logger()
    collect = _Collect()
    tf_logger.addFilter(collect)
    try:
        yield
    finally:
        tf_logger.removeFilter(collect)


def _shape(tf_shape: Any) -> tuple[int | None, ...] | None:
    if tf_shape.rank is None:
        return None
    return tuple(tf_shape.as_list())


class SavedModelRunner(Runner):
    """Serve one signature of a SavedModel."""

    thread_safe = True  # concrete functions may be called from several threads
    fresh_outputs = True  # every call's outputs are new tensors' memory

    def __init__(
        self,
        path: str | Path,
        *,
        signature: str = "serving_default",
        device: str = "auto",
        jit_compile: bool = False,
        framework: FrameworkOptions | None = None,
    ) -> None:
        tf = import_tensorflow(framework)
        self._tf = tf
        try:
            directory, self.version = resolve_savedmodel_dir(path)
        except FileNotFoundError as exc:
            raise ModelLoadError(str(exc)) from exc
        self.path = directory
        self.device = resolve_device(tf, device)
        self.notes: list[str] = []
        if is_tf1_export(directory):
            self.notes.append(TF1_NOTE)
        try:
            with tf.device(self.device), _captured_warnings(tf, self.notes):
                self._loaded = tf.saved_model.load(str(directory))
        except Exception as exc:
            raise ModelLoadError(
                f"TensorFlow {tf.__version__} could not load the SavedModel at {directory}: {type(exc).__name__}: {exc}"
            ) from exc
        signatures = self._loaded.signatures
        if signature not in signatures:
            raise ModelLoadError(
                f"the SavedModel at {directory} has no signature {signature!r}; "
                f"available: {', '.join(sorted(signatures)) or 'none'}"
            )
        self.signature = signature
        fn = signatures[signature]
        args, kwargs = fn.structured_input_signature
        if args:
            raise ModelLoadError(f"signature {signature!r} takes positional arguments; only named inputs are supported")
        self.input_specs = {
            name: TensorSpec(name, tf_dtype_to_numpy(spec.dtype), _shape(spec.shape)) for name, spec in kwargs.items()
        }
        outputs = fn.structured_outputs
        if not isinstance(outputs, dict):
            raise ModelLoadError(f"signature {signature!r} returns {type(outputs).__name__}, expected named outputs")
        self.output_specs = {
            name: TensorSpec(name, tf_dtype_to_numpy(t.dtype), _shape(t.shape)) for name, t in outputs.items()
        }
        self.fixed_batch = self._fixed_batch_size()
        note = generated_names_note(self.input_specs)
        if note:
            self.notes.append(note)
        if self.fixed_batch is not None:
            note = (
                f"signature {signature!r} has a fixed batch dimension of {self.fixed_batch}: "
                f"rows run {self.fixed_batch} at a time, one model call each"
            )
            self.notes.append(note)
            logger.warning("SavedModel %s: %s", directory, note)
        self.jit_compile = jit_compile
        self._names = list(self.input_specs)
        self._fn = self._compiled(fn) if jit_compile else fn

    def _fixed_batch_size(self) -> int | None:
        dims = {spec.batch_dim for spec in self.input_specs.values()}
        if len(dims) == 1:
            dim = dims.pop()
            if isinstance(dim, int):
                return dim
        return None

    def _compiled(self, fn: Any) -> Any:
        tf = self._tf
        names = self._names
        signature = [fn.structured_input_signature[1][n] for n in names]

        @tf.function(input_signature=signature, jit_compile=True)  # type: ignore[untyped-decorator]
        def call(*args: Any) -> Any:
            return fn(**dict(zip(names, args, strict=True)))

        return lambda **kw: call(*(kw[n] for n in names))

    def stage(self, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        """Copy a batch onto the model's device (the batcher's staging thread, see Runner).

        On a GPU this is the host -> device copy, done while the previous batch computes.
        Models with a fixed batch dimension are cut into chunks on the host: they stay
        numpy here.
        """
        if self.fixed_batch is not None:
            return inputs
        tf = self._tf
        with tf.device(self.device):
            return {k: tf.identity(tf.convert_to_tensor(v)) for k, v in inputs.items()}

    def run(self, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
        tf = self._tf
        step = self.fixed_batch
        with tf.device(self.device):
            if step is None:
                return self._call(inputs)
            rows = next(iter(inputs.values())).shape[0]
            if rows == step:
                return self._call(inputs)
            parts = [self._call(self._chunk(inputs, start, step)) for start in range(0, rows, step)]
        return {k: np.concatenate([p[k] for p in parts])[:rows] for k in parts[0]}

    def _chunk(self, inputs: dict[str, np.ndarray], start: int, step: int) -> dict[str, np.ndarray]:
        chunk = {k: v[start : start + step] for k, v in inputs.items()}
        short = step - next(iter(chunk.values())).shape[0]
        if short:  # the last rows do not fill a fixed-size call: repeat the last row
            chunk = {k: np.concatenate([v, np.repeat(v[-1:], short, axis=0)]) for k, v in chunk.items()}
        return chunk

    def _call(self, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
        tf = self._tf
        try:
            result = self._fn(**{k: tf.convert_to_tensor(v) for k, v in inputs.items()})
        except tf.errors.InvalidArgumentError as exc:
            # The graph refused these inputs (a shape the signature could not check, a
            # tf.Example feature of the wrong type): the caller's error, with the model's words.
            raise InvalidInput(op_error_message(exc.message)) from exc
        return {k: v.numpy() for k, v in result.items()}

    def describe(self) -> dict[str, Any]:
        return {
            "runner": "tensorflow-savedmodel",
            "path": str(self.path),
            "version": self.version,
            "signature": self.signature,
            "device": self.device,
            "jit_compile": self.jit_compile,
            "fixed_batch_size": self.fixed_batch,
            "tensorflow": self._tf.__version__,
            "notes": list(self.notes),
        }

    def close(self) -> None:
        self._loaded = None
        self._fn = None
