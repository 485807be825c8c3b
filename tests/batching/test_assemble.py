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


def test_rows_are_cast_while_copied_into_the_batch():
    specs = {"x": TensorSpec.of("x", "float32", (None, 2))}
    a = Request({"x": np.array([[1, 2], [3, 4]], np.uint8)}, 2, None, 0.0, SyncWaiter(), None)
    b = Request({"x": np.array([[5.5, 6.5]], np.float64)}, 1, None, 0.0, SyncWaiter(), None)
    inputs, rows, padded = assemble(specs, [Segment(a, 0, 2), Segment(b, 0, 1)], (4,))
    assert inputs["x"].dtype == np.float32
    assert inputs["x"].tolist() == [[1, 2], [3, 4], [5.5, 6.5], [0, 0]]
    assert (rows, padded) == (3, 4)


def test_big_batches_are_copied_in_bounded_pieces(monkeypatch):
    import tfbatch_django.batching.assemble as assemble_module

    copies: list[int] = []
    real_copyto = np.copyto

    def counting_copyto(dst, src, **kwargs):
        copies.append(dst.nbytes)
        return real_copyto(dst, src, **kwargs)

    monkeypatch.setattr(assemble_module, "CHUNK_BYTES", 32)  # 4 rows of 2 float32
    monkeypatch.setattr(assemble_module.np, "copyto", counting_copyto)
    specs = {"x": TensorSpec.of("x", "float32", (None, 2))}
    a = Request({"x": np.arange(20, dtype=np.uint8).reshape(10, 2)}, 10, None, 0.0, SyncWaiter(), None)
    b = Request({"x": np.arange(100, 112, dtype=np.float32).reshape(6, 2)}, 6, None, 0.0, SyncWaiter(), None)
    segs = [Segment(a, 1, 10), Segment(b, 0, 5)]
    inputs, rows, padded = assemble(specs, segs, (16,))
    assert (rows, padded) == (14, 16)
    expected = np.concatenate([np.arange(2, 20).reshape(9, 2), np.arange(100, 110).reshape(5, 2)]).astype(np.float32)
    np.testing.assert_array_equal(inputs["x"][:14], expected)
    assert inputs["x"][14:].tolist() == [[0, 0], [0, 0]]
    assert [s.offset for s in segs] == [0, 9]
    assert max(copies) <= 32  # no piece bigger than CHUNK_BYTES
    assert sum(copies) == 14 * 8  # and every row copied exactly once
