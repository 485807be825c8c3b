"""Import and configure TensorFlow once per process, before its first operation.

Thread pools and GPU memory growth can only be set before TensorFlow initialises its
runtime, so every runner goes through ``import_tensorflow`` rather than importing it
directly. Importing also prints a handful of C++ log lines (oneDNN, absl) that
``TF_CPP_MIN_LOG_LEVEL`` does not hide; with ``quiet`` they are swallowed by pointing
file descriptor 2 at /dev/null for the duration of the import only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

from .config import FrameworkOptions

__all__ = ["import_tensorflow", "resolve_device", "tensorflow_info"]

logger = logging.getLogger("tfbatch_django.runners")

_lock = threading.Lock()
_configured: FrameworkOptions | None = None
_notes: list[str] = []


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    try:
        saved = os.dup(2)
    except OSError:  # no real fd 2 (some embedded interpreters)
        yield
        return
    try:
        sys.stderr.flush()
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_tensorflow(options: FrameworkOptions | None = None) -> Any:
    """TensorFlow, imported and configured with ``options`` (first caller wins)."""
    global _configured
    options = options or FrameworkOptions()
    with _lock:
        if _configured is not None:
            if options != _configured:
                logger.debug("TensorFlow already configured with %s; ignoring %s", _configured, options)
            import tensorflow as tf

            return tf
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        first_import = "tensorflow" not in sys.modules
        with _stderr_silenced() if (options.quiet and first_import) else contextlib.nullcontext():
            import tensorflow as tf
        _configure(tf, options)
        _configured = options
        return tf


def _configure(tf: Any, options: FrameworkOptions) -> None:
    threading_cfg = tf.config.threading
    try:
        if options.intra_op_threads is not None:
            threading_cfg.set_intra_op_parallelism_threads(options.intra_op_threads)
        if options.inter_op_threads is not None:
            threading_cfg.set_inter_op_parallelism_threads(options.inter_op_threads)
    except RuntimeError as exc:  # the runtime already started (TF used before us)
        _notes.append(f"thread pool settings not applied: {exc}")
        logger.warning("tfbatch: TensorFlow thread settings not applied: %s", exc)
    if options.gpu_memory_growth:
        for gpu in tf.config.list_physical_devices("GPU"):
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except (RuntimeError, ValueError) as exc:
                _notes.append(f"memory growth not set on {gpu.name}: {exc}")


def resolve_device(tf: Any, device: str) -> str:
    """A TensorFlow device string for "auto", "cpu", "gpu" or "gpu:N"."""
    kind, _, index = device.lower().partition(":")
    gpus = tf.config.list_logical_devices("GPU")
    if kind == "auto":
        return str(gpus[0].name) if gpus else "/device:CPU:0"
    if kind == "cpu":
        return "/device:CPU:0"
    n = int(index or 0)
    if n >= len(gpus):
        raise RuntimeError(f"DEVICE {device!r} requested but this process sees {len(gpus)} GPU(s)")
    return str(gpus[n].name)


def tensorflow_info() -> dict[str, Any]:
    """Version, visible GPUs and configuration notes, for stats and the admin page."""
    if "tensorflow" not in sys.modules:
        return {"loaded": False}
    tf = sys.modules["tensorflow"]
    return {
        "loaded": True,
        "version": tf.__version__,
        "gpus": [d.name for d in tf.config.list_logical_devices("GPU")],
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "notes": list(_notes),
    }
