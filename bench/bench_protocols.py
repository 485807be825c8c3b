"""What each wire format costs the server per request, side by side in one run.

For one request of ``rows`` 32x32x3 float32 images (the serving benchmark's input) and
its 10-class float32 answer, the server-side work of each protocol, without a model or
a network: parse the body into arrays, then write the answer.

* TF Serving REST, row format (``{"instances": ...}`` -> ``{"predictions": ...}``);
* Open Inference Protocol, JSON tensors (flat ``data``);
* Open Inference Protocol, binary tensors (the binary tensor data extension, in and out).

Prints microseconds per request and each format's cost as a ratio of the binary one.
Run: ``python bench/bench_protocols.py [--rows N] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    django.setup()
    from tfbatch_django.batching import BatchInfo, Prediction
    from tfbatch_django.conf import get_config
    from tfbatch_django.serving import codec
    from tfbatch_django.serving.kserve_v2_body import parse_infer, render_infer
    from tfbatch_django.serving.tfserving import _predicted
    from tfbatch_django.serving.tfserving_body import parse_predict

    rng = np.random.default_rng(0)
    images = rng.random((args.rows, 32, 32, 3), dtype=np.float32)
    answer = Prediction({"probs": rng.random((args.rows, 10), dtype=np.float32)}, BatchInfo(1, 1, 0.0, 0.0))
    config = next(iter(get_config().models.values()))

    tfs_body = json.dumps({"instances": images.tolist()}).encode()
    tensor = {"name": "image", "shape": list(images.shape), "datatype": "FP32"}
    v2_json = json.dumps({"inputs": [{**tensor, "data": images.reshape(-1).tolist()}]}).encode()
    head = json.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": images.nbytes}}],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    v2_binary = head + images.tobytes()
    binary_headers = {"inference-header-content-length": str(len(head))}

    def tf_serving() -> None:
        with codec.collector_paused():
            parse_predict(tfs_body, config)
        _predicted(answer, columnar=False)

    def v2_json_tensors() -> None:
        with codec.collector_paused():
            request = parse_infer(v2_json, {})
        render_infer("m", 1, request, answer)

    def v2_binary_tensors() -> None:
        request = parse_infer(v2_binary, binary_headers)
        render_infer("m", 1, request, answer)

    cases: list[tuple[str, Callable[[], None], int]] = [
        ("TF Serving REST (JSON rows)", tf_serving, len(tfs_body)),
        ("Open Inference Protocol, JSON", v2_json_tensors, len(v2_json)),
        ("Open Inference Protocol, binary", v2_binary_tensors, len(v2_binary)),
    ]
    timings = {name: _best_us(fn, args.repeat) for name, fn, _ in cases}
    base = timings["Open Inference Protocol, binary"]
    print(f"{args.rows} x 32x32x3 float32 in, {args.rows} x 10 float32 out; best of {args.repeat} runs of 5")
    print(f"{'format':34} {'body bytes':>11} {'us/request':>11} {'x binary':>9}")
    for name, _, size in cases:
        print(f"{name:34} {size:>11,} {timings[name]:>11.1f} {timings[name] / base:>9.1f}")


def _best_us(fn: Callable[[], None], repeat: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(5):
            fn()
        best = min(best, (time.perf_counter() - t0) / 5)
    return best * 1e6


if __name__ == "__main__":
    main()
