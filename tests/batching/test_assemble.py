from __future__ import annotations

import numpy as np

from tfbatch_django.batching.assemble import Segment, assemble, padded_size
from tfbatch_django.batching.request import Request, SyncWaiter
from tfbatch_django.batching.spec import TensorSpec

SPECS = {"x": TensorSpec.of("x", "float32", (None, 2)), "s": TensorSpec.of("s", "string", (None,))}


def request(n: int, start: float) -> Request:
    arrays = {
        "x": np.arange(start, start + 2 * n, dtype=np.float32).reshape(n, 2),
        "s": np.array([b"r%d" % i for i in range(n)], dtype=object),
    }
    return Request(arrays, n, None, 0.0, SyncWaiter(), None)


def test_padded_size():
    assert padded_size(3, ()) == 3
    assert padded_size(3, (1, 4, 8)) == 4
    assert padded_size(8, (1, 4, 8)) == 8
    assert padded_size(9, (1, 4, 8)) == 9  # beyond the largest: unpadded


def test_assemble_concatenates_segments_and_pads():
    a, b = request(3, 0), request(2, 100)
    segs = [Segment(a, 1, 3), Segment(b, 0, 2)]
    inputs, rows, padded = assemble(SPECS, segs, (8,))
    assert (rows, padded) == (4, 8)
    assert [s.offset for s in segs] == [0, 2]
    assert inputs["x"][:4].tolist() == [[2, 3], [4, 5], [100, 101], [102, 103]]
    assert inputs["x"][4:].tolist() == [[0, 0]] * 4
    assert inputs["s"].tolist() == [b"r1", b"r2", b"r0", b"r1"] + [b""] * 4


def test_single_whole_segment_is_copied():
    a = request(2, 0)
    inputs, _, _ = assemble(SPECS, [Segment(a, 0, 2)], ())
    assert inputs["x"] is not a.arrays["x"]
    np.testing.assert_array_equal(inputs["x"], a.arrays["x"])
