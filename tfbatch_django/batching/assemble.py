"""Build one model input from many requests' rows, and pad it to an allowed size.

A batch is a list of ``Segment``s: a contiguous run of one request's rows. A request
with more rows than fit is cut into several segments in successive batches; the
scheduler stitches their outputs back together in order.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .request import Request
from .spec import TensorSpec

__all__ = ["Segment", "assemble", "filler_rows", "padded_size"]


@dataclass(slots=True)
class Segment:
    """Rows ``start:stop`` of ``request``, placed at ``offset`` in the batch."""

    request: Request
    start: int
    stop: int
    offset: int = 0

    @property
    def rows(self) -> int:
        return self.stop - self.start


def padded_size(rows: int, allowed: Sequence[int]) -> int:
    """The smallest allowed batch size that holds ``rows``; ``rows`` when unrestricted."""
    if not allowed:
        return rows
    i = bisect.bisect_left(allowed, rows)
    return allowed[i] if i < len(allowed) else rows


def filler_rows(spec: TensorSpec, count: int, row_shape: tuple[int, ...]) -> np.ndarray:
    """Rows that only exist to fill a batch: zeros, or empty strings for string inputs."""
    if spec.is_string:
        arr = np.empty((count, *row_shape), dtype=object)
        arr.fill(b"")
        return arr
    return np.zeros((count, *row_shape), dtype=spec.dtype)


def assemble(
    specs: Mapping[str, TensorSpec], segments: Sequence[Segment], allowed: Sequence[int]
) -> tuple[dict[str, np.ndarray], int, int]:
    """Concatenate the segments' rows per input; returns (inputs, real rows, padded rows).

    Sets each segment's ``offset`` so its outputs can be sliced back out.
    """
    rows = 0
    for seg in segments:
        seg.offset = rows
        rows += seg.rows
    padded = padded_size(rows, allowed)
    inputs: dict[str, np.ndarray] = {}
    for name, spec in specs.items():
        parts = []
        for seg in segments:
            arr = seg.request.arrays[name]
            parts.append(arr if (seg.start == 0 and seg.stop == arr.shape[0]) else arr[seg.start : seg.stop])
        if padded > rows:
            parts.append(filler_rows(spec, padded - rows, parts[0].shape[1:]))
        # np.concatenate always copies, so the model never sees (or writes into) a
        # caller's own array; a single part is copied for the same reason.
        inputs[name] = np.concatenate(parts) if len(parts) > 1 else parts[0].copy()
    return inputs, rows, padded
