"""Build one model input from many requests' rows, and pad it to an allowed size.

A batch is a list of segments: each a contiguous run of one request's rows, copied once
into the batch buffer (and cast there to the model's dtype). A request whose rows all fit
is its own segment (``Request`` has a segment's fields); a request with more rows than fit
is cut into ``Segment``s in successive batches, and the scheduler stitches their outputs
back together in order.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .request import Request
from .spec import TensorSpec

__all__ = ["CHUNK_BYTES", "Part", "Segment", "assemble", "filler_rows", "padded_size"]

#: Largest piece of a batch copied in one numpy call (see ``assemble``).
CHUNK_BYTES = 4 << 20


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


#: One entry of a batch: a whole request (its own segment) or a ``Segment`` of one.
Part = Segment | Request


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
    specs: Mapping[str, TensorSpec], segments: Sequence[Part], allowed: Sequence[int]
) -> tuple[dict[str, np.ndarray], int, int]:
    """Copy the segments' rows into one batch per input; returns (inputs, real rows, padded rows).

    Each row is copied exactly once, from the caller's array straight into a batch
    buffer of the model's dtype: a request sent as ``uint8`` for a ``float32`` model (4x
    fewer bytes on the wire) is cast during that copy, never copied twice. The model
    never sees (or writes into) a caller's own array. Batches over ``CHUNK_BYTES`` are
    copied in pieces of at most that size, so no single copy holds the GIL for long (a
    batch of 256 images of 224x224x3 float32 is 154 MB) and the event loop keeps
    running between pieces.

    Sets each segment's ``offset`` so its outputs can be sliced back out.
    """
    rows = 0
    for seg in segments:
        seg.offset = rows
        rows += seg.rows
    padded = padded_size(rows, allowed)
    inputs: dict[str, np.ndarray] = {}
    for name, spec in specs.items():
        parts: list[np.ndarray] = []
        for seg in segments:
            if type(seg) is Request:
                parts.append(seg.arrays[name])
            else:  # a segment of a request, or a group of callers' requests
                parts += seg.request.rows_of(name, seg.start, seg.stop)
        row_shape = parts[0].shape[1:]
        out = np.empty((padded, *row_shape), dtype=spec.dtype)
        row_bytes = out.itemsize * math.prod(row_shape)
        if rows * row_bytes <= CHUNK_BYTES:
            # One C call for the whole batch: the cheapest for many small requests.
            np.concatenate(parts, out=out[:rows] if padded > rows else out, casting="same_kind")
        else:
            _copy_in_chunks(parts, out, max(1, CHUNK_BYTES // max(row_bytes, 1)))
        if padded > rows:
            out[rows:] = b"" if spec.is_string else 0
        inputs[name] = out
    return inputs, rows, padded


def _copy_in_chunks(parts: list[np.ndarray], out: np.ndarray, step: int) -> None:
    at = 0
    for part in parts:
        n = part.shape[0]
        for i in range(0, n, step):
            j = min(i + step, n)
            np.copyto(out[at + i : at + j], part[i:j], casting="same_kind")
        at += n
