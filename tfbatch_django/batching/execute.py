"""Run one assembled batch, isolating poisonous requests by bisection.

When a batched model call raises, the batch is split in two halves (on request
boundaries) and each half is run again, recursively, until the failing requests are
alone. Only they get ``ModelError``; their batch-mates get their answers. A batch of
n requests with k bad ones costs at most about 2·k·log2(n) extra calls.

A runner that raises ``PredictTimeout`` or ``ModelError`` itself says the failure is
not about the rows (a remote engine timing out or unreachable): the whole batch gets
that error at once, without bisection, which could only repeat the wait for each half.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..exceptions import ModelError, PredictTimeout
from .assemble import Segment, assemble
from .runner import Runner
from .spec import TensorSpec

__all__ = ["Batch", "Outcome", "check_outputs", "execute"]


@dataclass(slots=True)
class Outcome:
    """The result for some segments of a batch: outputs, or the exception they raised."""

    segments: list[Segment]
    outputs: dict[str, np.ndarray] | None
    error: BaseException | None
    padded: int


@dataclass(slots=True)
class Batch:
    """A batch from formation to completion; fields are filled in as it moves along."""

    segments: list[Segment]
    inputs: dict[str, np.ndarray]
    rows: int
    padded: int
    t_dispatch: float
    outcomes: list[Outcome] = field(default_factory=list)
    run_s: float = 0.0
    calls: int = 0
    failed_calls: int = 0
    skipped: bool = False


def check_outputs(outputs: object, rows: int) -> dict[str, np.ndarray]:
    """A runner's result must be a dict of arrays with one row per input row."""
    if not isinstance(outputs, Mapping) or not outputs:
        raise TypeError(f"runner returned {type(outputs).__name__}, expected a non-empty dict of arrays")
    checked: dict[str, np.ndarray] = {}
    for name, value in outputs.items():
        arr = value if isinstance(value, np.ndarray) else np.asarray(value)
        if arr.ndim == 0 or arr.shape[0] != rows:
            raise ValueError(f"runner output {name!r} has shape {arr.shape}, expected {rows} rows (one per input row)")
        checked[str(name)] = arr
    return checked


def execute(runner: Runner, specs: Mapping[str, TensorSpec], allowed: Sequence[int], batch: Batch) -> None:
    """Run ``batch`` and fill in its outcomes and timings. Never raises."""
    t0 = time.perf_counter()
    try:
        batch.outcomes = _run(runner, specs, allowed, batch, batch.segments, batch.inputs, batch.padded)
    except BaseException as exc:  # noqa: BLE001 - the executor thread must survive anything
        batch.outcomes = [Outcome(batch.segments, None, exc, batch.padded)]
    batch.run_s = time.perf_counter() - t0


def _run(
    runner: Runner,
    specs: Mapping[str, TensorSpec],
    allowed: Sequence[int],
    batch: Batch,
    segments: list[Segment],
    inputs: dict[str, np.ndarray],
    padded: int,
) -> list[Outcome]:
    batch.calls += 1
    try:
        outputs = check_outputs(runner.run(inputs), padded)
        return [Outcome(segments, outputs, None, padded)]
    except (PredictTimeout, ModelError) as exc:  # the whole batch failed, whatever its rows
        batch.failed_calls += 1
        return [Outcome(segments, None, exc, padded)]
    except Exception as exc:  # noqa: BLE001 - any model failure is bisected, then reported
        batch.failed_calls += 1
        live = [s for s in segments if not (s.request.done or s.request.cancelled)]
        if len(live) <= 1:
            return [Outcome(segments, None, exc, padded)]
        mid = len(live) // 2
        outcomes: list[Outcome] = []
        for half in (live[:mid], live[mid:]):
            sub_inputs, _, sub_padded = assemble(specs, half, allowed)
            outcomes += _run(runner, specs, allowed, batch, half, sub_inputs, sub_padded)
        return outcomes
