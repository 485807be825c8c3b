"""Import and configure TensorFlow once per process, before its first operation.

Thread pools and GPU memory growth can only be set before TensorFlow initialises its
runtime, so every runner goes through ``import_tensorflow`` rather than importing it
directly.

Quieting the import (``QUIET_TENSORFLOW``). Measured with TensorFlow 2.21 (CPU) here,
``import tensorflow`` writes to file descriptor 2, from C++:

* twice, ``WARNING: All log messages before absl::InitializeLog() is called are written
  to STDERR`` followed by ``I0000 ... port.cc:153] oneDNN custom operations are on ...``
  (one pair per native library); no setting hides them: absl prints them before any
  logging configuration is read (``TF_ENABLE_ONEDNN_OPTS=0`` would, by switching the
  oneDNN kernels off, which changes speed and results);
* ``I0000 ... cpu_feature_guard.cc:227] This TensorFlow binary is optimized ...`` and a
  second line, hidden by ``TF_CPP_MIN_LOG_LEVEL=2``, which is set (unless already set).

The first kind is removed by filtering, never by discarding: while the import runs,
fd 2 points at a pipe, and a thread copies every line to the real standard error
except those two kinds of line (INFO and WARNING lines in absl's C++ format, and
absl's pre-initialisation notice). What any other thread writes meanwhile, a
traceback say, still reaches standard error. Errors in absl's format (``E...``,
``F...``) pass too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
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

#: What TensorFlow's native libraries print at import that no setting hides (see above).
_IMPORT_NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|[IW]\d{4} [\d:.]+ +\d+ [\w.-]+\.cc:\d+\] .*)\r?$"
)


def _forward(read_fd: int, write_fd: int) -> None:
    """Copy lines from ``read_fd`` to ``write_fd`` until EOF, dropping import noise; then
    close both (a process started during the import may hold the pipe open longer)."""
    pending = b""
    try:
        with open(read_fd, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                kept = b"".join(line + b"\n" for line in lines if not _IMPORT_NOISE.match(line))
                if kept:
                    os.write(write_fd, kept)
        if pending and not _IMPORT_NOISE.match(pending):
            os.write(write_fd, pending)
    finally:
        os.close(write_fd)


@contextlib.contextmanager
def _import_noise_filtered() -> Iterator[None]:
    """Point fd 2 at a filtering pipe for the duration (see the module docstring)."""
    try:
        saved = os.dup(2)
    except OSError:  # no real fd 2 (some embedded interpreters)
        yield
        return
    read_fd, write_fd = os.pipe()
    forward_to = os.dup(saved)  # the forwarder's own, closed by it
    forwarder = threading.Thread(target=_forward, args=(read_fd, forward_to), name="tfbatch-stderr", daemon=True)
    forwarder.start()
    try:
        sys.stderr.flush()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last writer is gone: the forwarder reads EOF
        os.close(saved)
        forwarder.join(5)  # its last lines out before the caller goes on


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
        if options.quiet:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        first_import = "tensorflow" not in sys.modules
        with _import_noise_filtered() if (options.quiet and first_import) else contextlib.nullcontext():
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
        "gpu_memory_growth": _memory_growth(tf),
        "configured_with": dataclasses.asdict(_configured) if _configured is not None else None,
        "notes": list(_notes),
    }


def _memory_growth(tf: Any) -> dict[str, bool]:
    """Whether each GPU grows its memory (``GPU_MEMORY_GROWTH``), by device name."""
    growth = {}
    for gpu in tf.config.list_physical_devices("GPU"):
        with contextlib.suppress(RuntimeError, ValueError):
            growth[gpu.name] = bool(tf.config.experimental.get_memory_growth(gpu))
    return growth
