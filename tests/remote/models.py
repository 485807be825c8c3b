"""Fake models for the worker tests, reachable from settings in another process.

``gated_runner`` holds every batch while its gate file exists, so a test decides from
outside the worker process when a batch may finish: what queues meanwhile is known
exactly, never timed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from tfbatch_django.batching import CallableRunner


def gated_runner(gate: str = "", width: int = 3) -> CallableRunner:
    """y = 2x; a row whose first value is -1 makes its batch raise."""
    gate_path = Path(gate or os.environ.get("TFBATCH_TEST_GATE", "/nonexistent"))

    def run(x: np.ndarray) -> np.ndarray:
        deadline = time.monotonic() + 30
        while gate_path.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        if np.any(x[:, 0] == -1):
            raise ValueError("poisoned row")
        return x * 2

    return CallableRunner(run, inputs={"x": ("float32", (None, width))}, outputs=("y",))
