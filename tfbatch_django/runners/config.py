"""What it takes to load one model, and the process-wide framework options."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FrameworkOptions", "RunnerConfig", "detect_format", "generated_names_note"]

# Names Keras makes up for unnamed inputs: "input_layer_3" in .keras archives,
# "keras_tensor_12" in SavedModel exports. They change when the model is rebuilt.
_GENERATED = re.compile(r"^(keras_tensor|input_layer)(_\d+)?$")


@dataclass(frozen=True)
class RunnerConfig:
    """How to load one model: a file/directory (``path``), a custom factory (``runner``), or a URL."""

    path: Path | None = None
    runner: str | None = None  # dotted path to a factory returning a Runner
    options: Mapping[str, Any] = field(default_factory=dict)  # keyword arguments for the factory
    signature: str = "serving_default"
    device: str = "auto"  # "auto", "cpu", "gpu", "gpu:N"
    jit_compile: bool | None = None  # None: the framework's default (see the runners)
    url: str | None = None  # a model on an engine (KServe v2 or TF Serving REST)
    remote_timeout: float = 30.0  # seconds, each call to that engine
    connections: int = 1  # connections kept to that engine (one per concurrent batch)

    @property
    def format(self) -> str:
        """ "custom", "remote_v2", "remote_tfserving", "keras" or "savedmodel"."""
        if self.runner:
            return "custom"
        if self.path is None:  # then URL: the settings demand exactly one of the three
            from .remote_http import remote_format

            return remote_format(self.url or "")
        return detect_format(self.path)


def detect_format(path: Path) -> str:
    """ "keras" for a Keras 3 archive (``.keras``), else "savedmodel"."""
    return "keras" if path.suffix == ".keras" else "savedmodel"


@dataclass(frozen=True)
class FrameworkOptions:
    """Settings that TensorFlow takes once per process, before its first operation."""

    intra_op_threads: int | None = None
    inter_op_threads: int | None = None
    gpu_memory_growth: bool = True
    quiet: bool = True  # hide the C++ log lines TensorFlow prints while importing


def generated_names_note(names: Iterable[str]) -> str | None:
    """A note for the admin page when inputs carry names Keras generated."""
    generated = [n for n in names if _GENERATED.match(n)]
    if not generated:
        return None
    return (
        f"inputs have generated names {generated}, which change when the model is rebuilt; "
        "name them with keras.Input(name=...) before saving or exporting"
    )
