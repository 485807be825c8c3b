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

__all__ = ["CallableRunner", "Runner", "SpecLike"]

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
    """

    input_specs: Mapping[str, TensorSpec]
    #: Output specs when the model declares them (metadata endpoints); may be empty.
    output_specs: Mapping[str, TensorSpec] = {}
    #: True when ``run`` may be called from several threads at once.
    thread_safe: bool = False
    #: True when every ``run`` returns arrays nobody else holds or writes to later.
    fresh_outputs: bool = False

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

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
