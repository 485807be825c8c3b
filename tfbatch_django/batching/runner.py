"""What the batcher needs from a model: specs in, a batched call, a description.

Framework adapters (``tfbatch_django.runners``) subclass ``Runner``; ``CallableRunner``
wraps a plain numpy function, which is how custom models (and tests) plug in without
TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .spec import TensorSpec

__all__ = ["CallableRunner", "Runner", "SpecLike", "call_model", "stages"]

#: ``(dtype, shape)`` or a ``TensorSpec``; shape includes the batch dimension.
SpecLike = TensorSpec | tuple[Any, Sequence[int | None] | None]


class Runner:
    """A loaded model the batcher can call with whole batches.

    Contract:

    * ``input_specs`` is ordered and complete; the batcher validates requests against it.
    * ``run`` gets one array per input, all with the same number of rows, and returns one
      array per output with that many rows: numbers, booleans or strings (anything else
      is the model's error, ``ModelError`` for the batch's callers).
    * Callers receive views of the output arrays. A runner may reuse its output buffers
      from call to call: the batcher copies each output array once per batch (cheap next
      to any model: bench_batcher measures it) unless the runner sets ``fresh_outputs``
      to promise new arrays every call (the TensorFlow and Keras runners do).
    * ``run`` is called from one thread at a time unless ``thread_safe`` is true and the
      model is configured for concurrent batches.
    * An exception from ``run`` is bisected over the batch's requests (only the requests
      that fail alone get ``ModelError``), except ``PredictTimeout`` and ``ModelError``
      raised by the runner itself: they fail every request of the batch as they are
      (e.g. a remote engine that timed out or cannot be reached).

    Optional stage (host work overlapped with device compute): a runner that defines
    ``stage(inputs)`` gets each assembled batch there first, on the batcher's staging
    thread, and ``run`` then receives what ``stage`` returned instead of the numpy dict.
    ``stage`` moves data (e.g. ``jax.device_put``, a copy to the GPU) and must not call
    the model: it runs while ``run`` works on the previous batch, so batch k+1 is copied
    to the device while batch k computes. ``run`` keeps its one-thread-at-a-time
    guarantee. Runners without ``stage`` (``CallableRunner``, existing custom runners)
    are called exactly as before. A batch split to isolate a failing request is staged
    again, piece by piece, on the executor thread; an exception in ``stage`` counts as
    the model's failure for that batch (and is bisected the same way).
    """

    input_specs: Mapping[str, TensorSpec]
    #: Output specs when the model declares them (metadata endpoints); may be empty.
    output_specs: Mapping[str, TensorSpec] = {}
    #: True when ``run`` may be called from several threads at once.
    thread_safe: bool = False
    #: True when every ``run`` returns arrays nobody else holds or writes to later.
    fresh_outputs: bool = False

    def run(self, inputs: Any) -> dict[str, np.ndarray]:
        """One batched model call: numpy inputs, or what ``stage`` returned for them."""
        raise NotImplementedError

    # def stage(self, inputs: dict[str, np.ndarray]) -> Any: optional; see the class docstring.

    def describe(self) -> dict[str, Any]:
        """Facts for stats and the admin page (device, signature, quirks)."""
        return {}

    def close(self) -> None:
        """Release the model; called when its batcher shuts down."""


def _to_spec(name: str, spec: SpecLike) -> TensorSpec:
    if isinstance(spec, TensorSpec):
        return spec if spec.name == name else TensorSpec(name, spec.dtype, spec.shape)
    dtype, shape = spec
    return TensorSpec.of(name, dtype, shape)


class CallableRunner(Runner):
    """Run a plain Python function of numpy arrays as a batched model.

    ``fn`` receives one keyword argument per input and returns an array (one output
    named ``outputs[0]``), or a mapping of output name to array::

        CallableRunner(lambda x: x * 2, inputs={"x": ("float32", (None, 4))})
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        inputs: Mapping[str, SpecLike],
        outputs: Sequence[str] | Mapping[str, SpecLike] = ("output_0",),
        thread_safe: bool = False,
        description: Mapping[str, Any] | None = None,
    ) -> None:
        if not inputs:
            raise ValueError("CallableRunner needs at least one input spec")
        self.fn = fn
        self.input_specs = {name: _to_spec(name, s) for name, s in inputs.items()}
        if isinstance(outputs, Mapping):
            self.output_specs = {name: _to_spec(name, s) for name, s in outputs.items()}
            self._output_names: tuple[str, ...] = tuple(outputs)
        else:
            self._output_names = tuple(outputs)
        self.thread_safe = thread_safe
        self._description = dict(description or {})

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.fn(**inputs)
        if isinstance(result, Mapping):
            return {name: np.asarray(value) for name, value in result.items()}
        return {self._output_names[0]: np.asarray(result)}

    def describe(self) -> dict[str, Any]:
        name = getattr(self.fn, "__qualname__", type(self.fn).__name__)
        return {"runner": "callable", "callable": f"{getattr(self.fn, '__module__', '?')}.{name}", **self._description}


def stages(runner: object) -> bool:
    """Whether ``runner`` has a ``stage`` step (see ``Runner``)."""
    return callable(getattr(runner, "stage", None))


def call_model(runner: Runner, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stage (when the runner stages) and run one batch on this thread."""
    if stages(runner):
        return runner.run(runner.stage(inputs))  # type: ignore[attr-defined]
    return runner.run(inputs)
