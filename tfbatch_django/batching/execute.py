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
from typing import Any

import numpy as np

from ..exceptions import ModelError, PredictTimeout
from .assemble import Part, assemble
from .request import Request
from .runner import Runner, call_model
from .spec import TensorSpec

__all__ = ["UNSTAGED", "Batch", "Outcome", "check_outputs", "execute", "left_out", "stage"]

#: ``Batch.staged`` before (or without) staging.
UNSTAGED: Any = object()

#: dtype kinds a client can be answered with: booleans, integers, floats, strings.
_ANSWERABLE = frozenset("biufSUO")


@dataclass(slots=True)
class Outcome:
    """The result for some segments of a batch: outputs, or the exception they raised."""

    segments: list[Part]
    outputs: dict[str, np.ndarray] | None
    error: BaseException | None
    padded: int


@dataclass(slots=True)
class Batch:
    """A batch from formation to completion; fields are filled in as it moves along."""

    segments: list[Part]
    inputs: dict[str, np.ndarray]
    rows: int
    padded: int
    t_dispatch: float
    outcomes: list[Outcome] = field(default_factory=list)
    run_s: float = 0.0
    calls: int = 0
    failed_calls: int = 0
    skipped: bool = False
    #: What the runner's ``stage`` returned for ``inputs`` (staging thread), if it stages.
    staged: Any = UNSTAGED


def check_outputs(outputs: object, rows: int, *, fresh: bool = True) -> dict[str, np.ndarray]:
    """A runner's result must be a dict of answerable arrays with one row per input row.

    Answerable means a client can be sent it: numbers and booleans, or strings (bytes or
    text, also in ``object`` arrays). Anything else (a Python ``set``, complex numbers,
    arbitrary objects) is the model's error, raised here so that every door (WebSocket,
    REST, ``predict()``) reports it the same way: ``ModelError``, counted as an error.

    Unless ``fresh`` (the runner promises new arrays every call), arrays the runner
    handed over as they are get copied, once per batch: callers receive views of these
    arrays, and a runner that reuses its output buffer would otherwise overwrite
    answers already given out.
    """
    if not isinstance(outputs, Mapping) or not outputs:
        raise TypeError(f"runner returned {type(outputs).__name__}, expected a non-empty dict of arrays")
    checked: dict[str, np.ndarray] = {}
    for name, value in outputs.items():
        if isinstance(value, np.ndarray):
            arr = value if fresh else value.copy()
        else:
            try:
                arr = np.asarray(value)
            except (ValueError, TypeError) as exc:
                raise TypeError(f"runner output {name!r} is not an array ({exc})") from None
        if arr.ndim == 0 or arr.shape[0] != rows:
            raise ValueError(f"runner output {name!r} has shape {arr.shape}, expected {rows} rows (one per input row)")
        kind = arr.dtype.kind
        if kind not in _ANSWERABLE:
            raise TypeError(f"runner output {name!r} has dtype {arr.dtype}, which cannot be sent to a client")
        if kind == "O":
            for item in arr.reshape(-1):
                if not isinstance(item, bytes | str):
                    raise TypeError(
                        f"runner output {name!r} holds a {type(item).__name__}; object outputs must hold strings"
                    )
        checked[str(name)] = arr
    return checked


def left_out(batch: Batch) -> list[Request]:
    """Unanswered requests of ``batch`` that appear in none of its outcomes.

    Bisection drops segments cancelled (or answered) while the batch was being split;
    their requests still need exactly one outcome.
    """
    if len(batch.outcomes) == 1 and batch.outcomes[0].segments is batch.segments:
        return []  # the common case: one outcome for every segment
    covered = {id(seg) for outcome in batch.outcomes for seg in outcome.segments}
    return [seg.request for seg in batch.segments if not (seg.request.done or id(seg) in covered)]


def stage(runner: Runner, batch: Batch) -> None:
    """On the staging thread: stage ``batch``'s inputs. Never raises.

    A failure leaves the batch unstaged: the executor stages it again inside its
    guarded model call, where the error is reported (and bisected) like a model error.
    """
    try:
        batch.staged = runner.stage(batch.inputs)  # type: ignore[attr-defined]
    except BaseException:  # noqa: BLE001 - reported by the executor's own attempt
        batch.staged = UNSTAGED


def execute(runner: Runner, specs: Mapping[str, TensorSpec], allowed: Sequence[int], batch: Batch) -> None:
    """Run ``batch`` and fill in its outcomes and timings. Never raises."""
    t0 = time.perf_counter()
    try:
        batch.outcomes = _run(runner, specs, allowed, batch, batch.segments, batch.inputs, batch.padded)
    except BaseException as exc:  # noqa: BLE001 - the executor thread must survive anything
        batch.outcomes = [Outcome(batch.segments, None, exc, batch.padded)]
    batch.run_s = time.perf_counter() - t0
    batch.staged = UNSTAGED  # device memory goes as soon as the batch is done


def _run(
    runner: Runner,
    specs: Mapping[str, TensorSpec],
    allowed: Sequence[int],
    batch: Batch,
    segments: list[Part],
    inputs: dict[str, np.ndarray],
    padded: int,
) -> list[Outcome]:
    batch.calls += 1
    fresh = getattr(runner, "fresh_outputs", False)
    try:
        if segments is batch.segments and batch.staged is not UNSTAGED:
            raw = runner.run(batch.staged)  # staged ahead, while the previous batch ran
        else:
            raw = call_model(runner, inputs)
        outputs = check_outputs(raw, padded, fresh=fresh)
        return [Outcome(segments, outputs, None, padded)]
    except (PredictTimeout, ModelError) as exc:  # the whole batch failed, whatever its rows
        batch.failed_calls += 1
        return [Outcome(segments, None, exc, padded)]
    except Exception as exc:  # noqa: BLE001 - any model failure is bisected, then reported
        batch.failed_calls += 1
        batch.staged = UNSTAGED
        live = [s for s in segments if not (s.request.done or s.request.cancelled)]
        if len(segments) == 1 or not live:
            return [Outcome(segments, None, exc, padded)]  # alone in the call: its own rows failed
        if len(live) == 1:
            # The others were answered (a deadline) or gave up while the call ran, but their
            # rows were in it: run the last one alone before blaming it.
            sub_inputs, _, sub_padded = assemble(specs, live, allowed)
            return _run(runner, specs, allowed, batch, live, sub_inputs, sub_padded)
        mid = len(live) // 2
        outcomes: list[Outcome] = []
        for half in (live[:mid], live[mid:]):
            sub_inputs, _, sub_padded = assemble(specs, half, allowed)
            outcomes += _run(runner, specs, allowed, batch, half, sub_inputs, sub_padded)
        return outcomes
