"""Deterministic fake models for batcher tests (real TF models are tested separately).

``GatedModel`` lets a test hold the runner inside a batch, so what queues meanwhile
forms the next batch exactly: batch composition is asserted, never timed.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from tfbatch_django.batching import CallableRunner, Runner, TensorSpec


class GatedModel(Runner):
    """y = 2x (+ a per-row checksum output). Records every batch; can block and fail.

    * ``hold()``: the next ``run`` blocks until ``release()``.
    * ``poison``: a value; any batch containing a row whose first element equals it raises.
    """

    def __init__(
        self, width: int = 3, *, dtype: str = "float32", poison: float | None = None, delay: float = 0.0
    ) -> None:
        self.input_specs = {"x": TensorSpec.of("x", dtype, (None, width))}
        self.output_specs = {"y": TensorSpec.of("y", dtype, (None, width)), "sum": TensorSpec.of("sum", dtype, (None,))}
        self.batches: list[np.ndarray] = []
        self.poison = poison
        self.delay = delay
        self._gate = threading.Event()
        self._gate.set()
        self.entered = threading.Event()
        self.lock = threading.Lock()

    def hold(self) -> None:
        self._gate.clear()
        self.entered.clear()

    def release(self) -> None:
        self._gate.set()

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        with self.lock:
            self.batches.append(x.copy())
        self.entered.set()
        if not self._gate.wait(30):
            raise RuntimeError("test gate never released")
        if self.delay:
            time.sleep(self.delay)
        if self.poison is not None and np.any(x[:, 0] == self.poison):
            raise ValueError("poisoned row in batch")
        return {"y": x * 2, "sum": x.sum(axis=1)}

    @property
    def sizes(self) -> list[int]:
        return [b.shape[0] for b in self.batches]

    def describe(self) -> dict[str, Any]:
        return {"runner": "fake-gated"}


def double_runner() -> CallableRunner:
    """Factory used from settings (RUNNER = "tests.fakes.double_runner")."""
    return CallableRunner(lambda x: x * 2, inputs={"x": ("float32", (None, 3))}, outputs=("y",))


def slow_runner(delay_ms: float = 50.0) -> CallableRunner:
    def slow(x: np.ndarray) -> np.ndarray:
        time.sleep(delay_ms / 1000)
        return x + 1

    return CallableRunner(slow, inputs={"x": ("float32", (None, 2))}, outputs=("y",))


def failing_runner() -> CallableRunner:
    def fail(x: np.ndarray) -> np.ndarray:
        raise RuntimeError("this model always fails")

    return CallableRunner(fail, inputs={"x": ("float32", (None, 2))}, outputs=("y",))


def broken_factory() -> CallableRunner:
    raise OSError("weights file is corrupt")


def not_a_runner() -> object:
    return object()


NOT_CALLABLE = 42


def slow_loading_runner(load_seconds: float = 0.3) -> CallableRunner:
    time.sleep(load_seconds)
    return double_runner()
