"""Where a lone request's hop to a worker goes: timestamps along the path, stage by stage.

    .venv/bin/python bench/trace_hop.py [--requests 500] [--thread] [--cnn]

Starts Debian's ``redis-server`` and one ``tfbatch_worker`` (this script again, with
``--worker``: the real server, its methods wrapped to stamp each request), then sends
lone coroutine requests from this process, one at a time, and prints the p50 of each
stage. Stamps are ``time.perf_counter()`` (CLOCK_MONOTONIC: one clock for both
processes on a host). The model is the worker tests' ``x * 2`` (``tests.remote``), or
the benchmark CNN (``--cnn``, as ``bench_workers.py`` serves it). ``--thread`` sends
through the client's background thread instead of the loop's lane (the path before
lanes, and still the path of threads and short-lived loops).

Profiling only: the wrappers reach into ``remote/server.py`` and ``remote/client.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STAGES = [
    "caller: predict() until the request is handed over",
    "handed over -> worker has the message",
    "worker: message -> handed to its batcher",
    "worker's batcher: -> the model starts",
    "the model",
    "worker's batcher: model done -> answer in the worker's loop",
    "worker: answer -> client has the reply",
    "client: reply -> caller resumes",
    "total",
]


def run_worker(name: str) -> None:
    """The real ``tfbatch_worker``, each reply's payload carrying the worker's stamps.

    Wraps only what every version of the server calls: ``_accept`` (a message arrives),
    ``Batcher.submit_async`` (the request reaches the batcher), the runner's ``run`` and
    ``_answer`` (the answer is in the worker's loop). Requests are lone: one at a time.
    """
    import django

    django.setup()
    from django.core.management import call_command

    from tfbatch_django.batching import Batcher
    from tfbatch_django.batching import runner as batching_runner
    from tfbatch_django.remote import server

    worker = server.WorkerServer
    accepted: dict[tuple[str, int], float] = {}
    last: dict[str, float] = {}

    accept = worker._accept

    def stamped_accept(self: server.WorkerServer, message: dict[str, Any]) -> None:
        now = time.perf_counter()
        for entry in message["requests"]:
            accepted[(message["reply"], entry[0])] = now
        accept(self, message)

    submit_async = Batcher.submit_async

    def stamped_submit(self: Batcher, inputs: Any, timeout: float | None = None) -> Any:
        last["handed"] = time.perf_counter()
        return submit_async(self, inputs, timeout)

    answer = worker._answer

    def stamped_answer(self: server.WorkerServer, reply: str, call_id: int, ok: bool, payload: dict[str, Any]) -> None:
        now = time.perf_counter()
        if ok:
            at = accepted.pop((reply, call_id), 0.0)
            payload["trace"] = [at, last.get("handed", 0.0), last.get("start", 0.0), last.get("end", 0.0), now]
        answer(self, reply, call_id, ok, payload)

    def timed(run: Any) -> Any:
        def wrapper(self: Any, inputs: dict[str, Any]) -> Any:
            last["start"] = time.perf_counter()
            try:
                return run(self, inputs)
            finally:
                last["end"] = time.perf_counter()

        return wrapper

    worker._accept = stamped_accept  # type: ignore[method-assign]
    worker._answer = stamped_answer  # type: ignore[method-assign]
    Batcher.submit_async = stamped_submit  # type: ignore[method-assign]
    batching_runner.CallableRunner.run = timed(batching_runner.CallableRunner.run)  # type: ignore[method-assign]
    try:
        from tfbatch_django.runners import tensorflow

        tensorflow.SavedModelRunner.run = timed(tensorflow.SavedModelRunner.run)  # type: ignore[method-assign]
    except ImportError:
        pass
    call_command("tfbatch_worker", name, "--no-publish")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--thread", action="store_true", help="through the client's thread, not the loop's lane")
    parser.add_argument("--cnn", action="store_true", help="the benchmark CNN instead of x * 2")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker)
        return

    from tests.remote.redis import redis_server

    with redis_server(Path(os.environ.get("TMPDIR", "/tmp"))) as url:
        name, model = ("bench-gpu", "cnn") if args.cnn else ("trace", "remote")
        settings = "bench.worker_settings" if args.cnn else "tests.remote.settings"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": settings,
            "TFBATCH_TEST_REDIS": url,
            "TFBATCH_TEST_WORKER": name,
            "TFBATCH_BENCH_REDIS": url,
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONPATH": str(ROOT),
        }
        os.environ.update(env)
        argv = [sys.executable, __file__, "--worker", name]
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            rows, local, load = trace(args, model)
        finally:
            import logging

            logging.getLogger("tfbatch_django.remote").setLevel(logging.ERROR)  # Redis stops before the client
            process.terminate()
            process.wait(30)
    path = "the client's thread" if args.thread else "the loop's lane"
    what = "the benchmark CNN" if args.cnn else "x * 2"
    print(f"{args.requests} lone coroutine requests through {path}, {what}; load average {load:.2f}\n")
    print("| stage | p50 µs | mean µs |")
    print("| --- | ---: | ---: |")
    for stage in STAGES:
        values = [row[stage] * 1e6 for row in rows]
        print(f"| {stage} | {statistics.median(values):.0f} | {statistics.fmean(values):.0f} |")
    if local:
        print(
            f"\nThe same model in this process (its own batcher), a lone request: p50 {statistics.median(local):.0f} µs"
        )


def trace(args: argparse.Namespace, model: str) -> tuple[list[dict[str, float]], list[float], float]:
    import django

    django.setup()
    import numpy as np

    from tfbatch_django import get_stats, predict
    from tfbatch_django.batching import Prediction
    from tfbatch_django.registry import registry
    from tfbatch_django.remote import client as remote_client
    from tfbatch_django.remote import protocol

    seen: dict[str, Any] = {}
    submit = remote_client.RemoteClient.submit
    decode = protocol.decode_prediction

    def stamped_submit(self: remote_client.RemoteClient, *args: Any) -> Any:
        seen["submit"] = time.perf_counter()
        return submit(self, *args)

    def stamped_decode(payload: dict[str, Any]) -> Prediction:
        seen["worker"] = payload.pop("trace", None)
        seen["received"] = time.perf_counter()
        return decode(payload)

    remote_client.RemoteClient.submit = stamped_submit  # type: ignore[method-assign,assignment]
    protocol.decode_prediction = stamped_decode
    if args.thread:
        remote_client.RemoteClient._lane = lambda self, loop: None  # type: ignore[method-assign]

    deadline = time.monotonic() + 120
    while get_stats(model)[model].get("status") != "ready":
        if time.monotonic() > deadline:
            raise SystemExit("the worker did not become ready")
        time.sleep(0.05)
    if args.cnn:
        x = np.random.default_rng(1).random((1, 32, 32, 3), dtype=np.float32).round(3)
    else:
        x = np.arange(3, dtype=np.float32).reshape(1, 3)

    async def run() -> tuple[list[dict[str, float]], list[float]]:
        client = registry.get(model).batcher.client  # type: ignore[union-attr]
        for _ in range(50):  # warm up; opens this loop's lane
            await predict(model, x)
            await asyncio.sleep(0.001)
        # (A client from before lanes has no lane_ready: it always uses its thread.)
        lane_ready = getattr(client, "lane_ready", lambda loop: False)
        assert lane_ready(asyncio.get_running_loop()) != args.thread, "run with --thread"
        rows = []
        for _ in range(args.requests):
            t0 = time.perf_counter()
            await predict(model, x)
            t1 = time.perf_counter()
            accepted, handed, model_start, model_end, answered = seen["worker"]
            submitted, received = seen["submit"], seen["received"]
            values = [
                submitted - t0,
                accepted - submitted,
                handed - accepted,
                model_start - handed,
                model_end - model_start,
                answered - model_end,
                received - answered,
                t1 - received,
                t1 - t0,
            ]
            rows.append(dict(zip(STAGES, values, strict=True)))
            await asyncio.sleep(0.001)  # lone: the worker's batcher sees no stream
        local = []
        for _ in range(0 if args.cnn else args.requests):  # tests.remote's "local": the same x * 2
            t0 = time.perf_counter()
            await predict("local", x)
            local.append((time.perf_counter() - t0) * 1e6)
            await asyncio.sleep(0.001)
        return rows, local

    rows, local = asyncio.run(run())
    return rows, local, os.getloadavg()[0]


if __name__ == "__main__":
    main()
