"""Input specs, and turning whatever a caller passed into checked numpy arrays.

Validation runs in the caller's thread at submit time, so a malformed request fails
there with a message naming the input, what was expected and what arrived, and never
reaches a batch where it could poison other callers' rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from ..exceptions import InvalidInput

__all__ = ["Inputs", "TensorSpec", "castable_to", "coerce_inputs", "format_shape"]

#: What callers may pass: one array-like for a single-input model, or a mapping of
#: input name to array-like.
Inputs = Any

_STRING = np.dtype(object)


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: its name, numpy dtype and shape.

    ``shape`` includes the leading batch dimension. ``None`` in it means "any size";
    ``shape=None`` means even the rank is unknown (some TF1 exports). String tensors
    use numpy's ``object`` dtype holding ``bytes``.
    """

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int | None, ...] | None

    @classmethod
    def of(cls, name: str, dtype: Any, shape: Sequence[int | None] | None) -> TensorSpec:
        dt = np.dtype(object) if dtype in ("string", "str", bytes, str) else np.dtype(dtype)
        return cls(name, dt, None if shape is None else tuple(shape))

    @property
    def batch_dim(self) -> int | None:
        """The fixed batch size the model demands, or None when any size works."""
        if not self.shape:
            return None
        return self.shape[0]

    @property
    def row_shape(self) -> tuple[int | None, ...] | None:
        """Shape of one row (everything after the batch dimension)."""
        return None if self.shape is None else self.shape[1:]

    @cached_property
    def exact_row_shape(self) -> tuple[int, ...] | None:
        """The one shape every row must have, when the spec pins it down completely."""
        if self.shape is None or any(d is None for d in self.shape[1:]):
            return None
        return tuple(d for d in self.shape[1:] if d is not None)

    @property
    def fully_defined(self) -> bool:
        """True when every row has one known shape, so any rows can share a batch."""
        return self.shape is not None and all(d is not None for d in self.shape[1:])

    @property
    def is_string(self) -> bool:
        return self.dtype == _STRING

    def describe(self) -> dict[str, Any]:
        """JSON-friendly form, used by stats and the metadata endpoints."""
        return {
            "name": self.name,
            "dtype": "string" if self.is_string else self.dtype.name,
            "shape": None if self.shape is None else [(-1 if d is None else d) for d in self.shape],
        }


def format_shape(shape: tuple[int | None, ...] | None) -> str:
    if shape is None:
        return "any shape"
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def coerce_inputs(
    specs: Mapping[str, TensorSpec], inputs: Inputs, *, model: str | None = None, cast: bool = True
) -> tuple[dict[str, np.ndarray], int]:
    """Check ``inputs`` against ``specs``; return arrays of the model's dtypes and the row count.

    Accepts a single array-like for a one-input model, or a mapping by input name.
    Casts are allowed when numpy calls them "same kind" (int -> float, float64 ->
    float32: what JSON numbers need; ``uint8`` images for a float model), refused
    otherwise (float -> int, str -> float). With ``cast=False`` an allowed cast is only
    checked, not done: the batcher casts while it copies rows into the batch, so a row is
    copied once, not twice.
    """
    if type(inputs) is np.ndarray and len(specs) == 1:
        # Hot path: one ndarray that already fits (most in-process callers).
        spec = next(iter(specs.values()))
        shape = inputs.shape
        dtype = inputs.dtype
        if dtype == spec.dtype and dtype.kind != "O" and shape[1:] == spec.exact_row_shape and shape and shape[0]:
            return {spec.name: inputs}, shape[0]
    if isinstance(inputs, Mapping):
        given = set(inputs)
        expected = set(specs)
        if given != expected:
            missing = sorted(expected - given)
            unknown = sorted(str(k) for k in given - expected)
            parts = []
            if missing:
                parts.append("missing " + ", ".join(repr(m) for m in missing))
            if unknown:
                parts.append("unknown " + ", ".join(repr(u) for u in unknown))
            raise InvalidInput(
                f"inputs do not match the model: {'; '.join(parts)}; expected inputs: "
                + ", ".join(repr(n) for n in specs),
                model=model,
                input=(missing or unknown)[0],
            )
        items = [(spec, inputs[name]) for name, spec in specs.items()]
    else:
        if len(specs) != 1:
            raise InvalidInput(
                f"this model has {len(specs)} inputs; pass a mapping of input name to array "
                "with keys " + ", ".join(repr(n) for n in specs),
                model=model,
            )
        items = [(next(iter(specs.values())), inputs)]

    arrays: dict[str, np.ndarray] = {}
    rows: int | None = None
    for spec, value in items:
        arr = _as_array(spec, value, model, cast)
        if rows is None:
            rows = arr.shape[0]
        elif arr.shape[0] != rows:
            first = next(iter(arrays))
            raise InvalidInput(
                f"input {spec.name!r} has {arr.shape[0]} rows but input {first!r} has {rows}; "
                "every input needs the same number of rows",
                model=model,
                input=spec.name,
            )
        arrays[spec.name] = arr
    assert rows is not None
    return arrays, rows


def _as_array(spec: TensorSpec, value: Any, model: str | None, cast: bool = True) -> np.ndarray:
    name = spec.name
    if spec.is_string:
        arr = _as_string_array(spec, value, model)
    else:
        if isinstance(value, np.ndarray):
            arr = value
        else:
            try:
                arr = np.asarray(value)
            except (ValueError, TypeError) as exc:
                raise InvalidInput(
                    f"input {name!r} is not a rectangular array of numbers ({exc}); "
                    f"expected {spec.dtype.name} of shape {format_shape(spec.shape)}",
                    model=model,
                    input=name,
                ) from None
        if arr.dtype != spec.dtype:
            if arr.dtype.kind not in "biuf" or not np.can_cast(arr.dtype, spec.dtype, "same_kind"):
                raise InvalidInput(
                    f"input {name!r} has dtype {_dtype_name(arr)}, which cannot be cast to "
                    f"{spec.dtype.name} without changing values' kind; send {spec.dtype.name}",
                    model=model,
                    input=name,
                )
            if cast:
                arr = arr.astype(spec.dtype)
    _check_shape(spec, arr, model)
    return arr


#: Every numeric dtype a caller might send (native byte order: numpy's own arrays and JSON's).
_NUMERIC = tuple(np.dtype(code) for code in "?bhilqpBHILQPefdg")


def castable_to(dtype: np.dtype[Any]) -> frozenset[np.dtype[Any]]:
    """The other numeric dtypes ``coerce_inputs`` accepts for an input of ``dtype`` (its cast
    rule, precomputed: the gathered path checks a caller's dtype with one set lookup)."""
    if dtype.kind not in "biuf":
        return frozenset()
    return frozenset(d for d in _NUMERIC if d != dtype and np.can_cast(d, dtype, "same_kind"))


def _dtype_name(arr: np.ndarray) -> str:
    if arr.dtype.kind in "OUS":
        return "string/object"
    return arr.dtype.name


def _as_string_array(spec: TensorSpec, value: Any, model: str | None) -> np.ndarray:
    arr = value if isinstance(value, np.ndarray) else np.asarray(value, dtype=object)
    if arr.dtype.kind in "US":
        arr = arr.astype(object)
    if arr.dtype != _STRING:
        raise InvalidInput(
            f"input {spec.name!r} expects strings, got dtype {arr.dtype.name}",
            model=model,
            input=spec.name,
        )
    flat = arr.reshape(-1)
    for i, item in enumerate(flat):
        if isinstance(item, str):
            if arr is value:
                arr = arr.copy()
                flat = arr.reshape(-1)
            flat[i] = item.encode("utf-8")
        elif not isinstance(item, bytes):
            raise InvalidInput(
                f"input {spec.name!r} expects strings, found {type(item).__name__} at flat index {i}",
                model=model,
                input=spec.name,
            )
    return arr


def _check_shape(spec: TensorSpec, arr: np.ndarray, model: str | None) -> None:
    name = spec.name
    if arr.ndim == 0:
        raise InvalidInput(
            f"input {name!r} is a scalar; it needs a leading batch dimension "
            f"(expected shape {format_shape(spec.shape)}, e.g. wrap one row in a list)",
            model=model,
            input=name,
        )
    if arr.shape[0] == 0:
        raise InvalidInput(f"input {name!r} has no rows", model=model, input=name)
    if spec.shape is None:
        return
    if arr.ndim != len(spec.shape):
        raise InvalidInput(
            f"input {name!r} has shape {format_shape(arr.shape)} (rank {arr.ndim}); expected rank "
            f"{len(spec.shape)}, shape {format_shape(spec.shape)} with the first dimension counting rows",
            model=model,
            input=name,
        )
    for got, want in zip(arr.shape[1:], spec.shape[1:], strict=True):
        if want is not None and got != want:
            raise InvalidInput(
                f"input {name!r} has shape {format_shape(arr.shape)}; expected "
                f"{format_shape(spec.shape)} (first dimension = rows)",
                model=model,
                input=name,
            )
