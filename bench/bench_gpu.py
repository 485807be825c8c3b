"""GPU benchmark: Keras 3 models served compiled and op by op, offline and through the batcher.

    python bench/bench_gpu.py [--quick] [--out FILE] [--backend jax|tensorflow]

Three models with random weights, built here (nothing is downloaded): ResNet-50
(``keras.applications``, ``weights=None``, 224x224x3), the small CNN of
``bench/model.py`` (32x32x3), and the host path: a model that costs next to nothing
(average pooling and a dense layer) on ResNet's 224x224x3 frames, so that its rows show
what the door and the batcher themselves cost per large frame (issue 8's third target is
that ratio, over daphne, with ResNet-50 on a GPU; this row measures it on any machine).
Each is saved as a ``.keras`` file and served through the real path (settings ->
registry -> batcher -> Keras runner) on Keras' JAX backend (or TensorFlow, where it has
a GPU). One table, every ratio measured in the same run:

* **offline limit**: the runner called back to back with full batches, the best rows/s
  over a few batch sizes, with default settings (``JIT_COMPILE`` unset: Keras compiles);
* the same batch with ``JIT_COMPILE: False`` (on JAX: op by op), and one row per call both ways;
* ``predict()`` from many coroutines on one event loop, and ``predict_sync()`` from threads;
* end to end over daphne: WebSocket clients sending each image as one binary frame
  (``bench/bench_serving.py``'s client and daphne start-up), against the same path with
  the model replaced by a constant (the ceiling at that frame size).

It is meant for a GPU host that has JAX but no TensorFlow and no network:
``bench/gpu/run_on_device.sh`` installs the other packages from wheels and runs it (see
``bench/gpu/README.md``). ``--quick`` (a 32x32 ResNet input, fewer batch sizes, callers
and seconds) proves it works on a CPU in a few minutes. The table is printed and, with
``--out``, rewritten after every row, so a run stopped by a time limit keeps its rows.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORK = ROOT / "var" / "bench" / "gpu"


@dataclass(frozen=True)
class Plan:
    """One model and how hard to push it."""

    name: str
    label: str
    shape: tuple[int, int, int]
    offline_sizes: tuple[int, ...]  # the offline limit is the best of these
    allowed: tuple[int, ...]  # ALLOWED_BATCH_SIZES when served; the last is MAX_BATCH_SIZE
    callers: int  # coroutines awaiting predict()
    threads: int  # threads calling predict_sync()
    clients: int  # WebSocket clients over daphne


FULL = (
    Plan("resnet50", "ResNet-50 224²", (224, 224, 3), (64, 128, 256), (1, 16, 64, 128, 256), 1024, 256, 128),
    Plan("cnn", "small CNN 32²", (32, 32, 3), (256, 1024, 4096), (1, 16, 64, 256, 1024), 4096, 256, 128),
    Plan("host", "host path 224²", (224, 224, 3), (64, 256), (1, 16, 64, 256), 1024, 256, 128),
)
QUICK = (
    Plan("resnet50", "ResNet-50 32² (quick)", (32, 32, 3), (4, 16), (1, 4, 16), 64, 16, 16),
    Plan("cnn", "small CNN 32² (quick)", (32, 32, 3), (64, 256), (1, 16, 64, 256), 512, 16, 16),
    Plan("host", "host path 224² (quick)", (224, 224, 3), (16, 64), (1, 16, 64), 256, 16, 16),
)


@dataclass
class Row:
    model: str
    path: str
    rate: float
    unit: str = "rows/s"
    offline: float | None = None  # this model's offline limit, for the ratio
    ceiling: float | None = None  # the no-model ceiling of the same path, for the ratio
    latencies: tuple[float, ...] = ()
    mean_batch: float | None = None
    loop_us: float | None = None  # over daphne: its event loop's CPU per request

    def cells(self) -> list[str]:
        def pct(q: float) -> str:
            return f"{np.percentile(self.latencies, q) * 1e3:.1f}" if self.latencies else ""

        return [
            self.model,
            self.path,
            f"{self.rate:,.0f} {self.unit}",
            f"{self.rate / self.offline:.0%}" if self.offline else "",
            f"{self.rate / self.ceiling:.0%}" if self.ceiling else "",
            pct(50),
            pct(99),
            f"{self.mean_batch:.1f}" if self.mean_batch else "",
            f"{self.loop_us:.0f}" if self.loop_us else "",
        ]


class Report:
    """The table so far, printed (and written to ``out``) after every row.

    It also times the run's phases (start-up, building, each model's load and compile, its
    rows, daphne's start, the rows over daphne) and writes them under the header: the run
    is budgeted in seconds of a lent GPU machine, and what each phase costs there is only
    known once a run says so (a run cut short by its limit still tells how far it got).
    """

    def __init__(self, header: list[str], out: Path | None) -> None:
        self.header, self.out, self.rows = header, out, list[Row]()
        self.notes: list[str] = []  # printed under the table
        self.started = time.perf_counter()
        self.phases: list[tuple[str, float]] = []  # (name, when it began), the last one still running

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def phase(self, name: str) -> None:
        """End the phase running (if any) and begin ``name``."""
        self.phases.append((name, self.elapsed()))
        print(f"[{self.elapsed():5.0f} s] {name}...", file=sys.stderr, flush=True)
        if self.out:
            self.out.write_text(self.markdown())

    def timings(self, done: bool = False) -> str:
        ends = [began for _, began in self.phases[1:]] + [self.elapsed()]
        parts = [f"{name} {end - began:.0f}" for (name, began), end in zip(self.phases, ends, strict=True)]
        if parts and not done:
            parts[-1] += " (running)"
        return "seconds per phase: " + "; ".join(parts)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        cells = " | ".join(c for c in row.cells() if c)
        print(f"[{self.elapsed():5.0f} s]   {cells}", file=sys.stderr, flush=True)
        if self.out:
            self.out.write_text(self.markdown())
        return row

    def markdown(self, done: bool = False) -> str:
        lines = [*self.header, *([self.timings(done)] if self.phases else []), ""]
        lines.append(
            "| model | path | rate | vs offline limit | vs no-model ceiling | p50 ms | p99 ms | mean batch "
            "| daphne loop CPU µs per request |"
        )
        lines.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        lines += ["| " + " | ".join(row.cells()) + " |" for row in self.rows]
        if self.notes:
            lines += ["", *(f"- {note}" for note in self.notes)]
        return "\n".join(lines) + "\n"


def build(plan: Plan) -> Path:
    """Save ``plan``'s model as a ``.keras`` file (once per architecture and input size)."""
    import keras

    path = WORK / f"{plan.name}-{'x'.join(map(str, plan.shape))}-{keras.backend.backend()}.keras"
    if path.is_file():
        return path
    keras.utils.set_random_seed(0)
    if plan.name == "resnet50":
        model = keras.applications.ResNet50(weights=None, input_shape=plan.shape)
    elif plan.name == "host":  # next to no compute: the rows measure the path, not the model
        inputs = keras.Input(plan.shape)
        model = keras.Model(inputs, keras.layers.Dense(1000)(keras.layers.GlobalAveragePooling2D()(inputs)))
    else:
        from bench.model import build_cnn

        model = build_cnn()
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path.with_suffix(".tmp.keras"))
    path.with_suffix(".tmp.keras").rename(path)
    return path


def timed(call: Callable[[], Any], seconds: float, least: int = 2) -> list[float]:
    """Durations of ``call`` run back to back for ``seconds`` (at least ``least`` times)."""
    durations: list[float] = []
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop or len(durations) < least:
        t = time.perf_counter()
        call()
        durations.append(time.perf_counter() - t)
    return durations


def offline(runner: Any, image: np.ndarray, size: int, seconds: float) -> float:
    """Rows/s of ``runner.run`` on full batches of ``size`` (outputs fetched to the host)."""
    batch = {next(iter(runner.input_specs)): np.repeat(image, size, axis=0)}
    runner.run(batch)  # trace / compile this shape outside the timing
    durations = timed(lambda: runner.run(batch), seconds)
    return size * len(durations) / sum(durations)


def one_at_a_time(runner: Any, image: np.ndarray, seconds: float) -> list[float]:
    """Durations of batch-1 calls of ``runner.run``, back to back."""
    one = {next(iter(runner.input_specs)): image}
    runner.run(one)
    return timed(lambda: runner.run(one), seconds)


async def async_callers(
    model: str, image: np.ndarray, callers: int, seconds: float
) -> tuple[float, list[float], float]:
    """``callers`` coroutines awaiting ``predict_detailed`` in a loop: rows/s, latencies, mean batch."""
    from tfbatch_django import predict_detailed

    latencies: list[float] = []
    sizes: list[int] = []
    stop = time.perf_counter() + seconds

    async def caller() -> None:
        while time.perf_counter() < stop:
            t = time.perf_counter()
            result = await predict_detailed(model, image)
            latencies.append(time.perf_counter() - t)
            sizes.append(result.batch.size)

    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return len(latencies) / (time.perf_counter() - t0), latencies, statistics.fmean(sizes)


def thread_callers(model: str, image: np.ndarray, threads: int, seconds: float) -> tuple[float, list[float], float]:
    """``threads`` threads calling ``predict_detailed_sync`` in a loop: rows/s, latencies, mean batch."""
    from tfbatch_django import predict_detailed_sync

    latencies: list[list[float]] = [[] for _ in range(threads)]
    sizes: list[list[int]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)

    def caller(i: int) -> None:
        start.wait()
        while time.perf_counter() < stop:
            t = time.perf_counter()
            result = predict_detailed_sync(model, image)
            latencies[i].append(time.perf_counter() - t)
            sizes[i].append(result.batch.size)

    workers = [threading.Thread(target=caller, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    stop = time.perf_counter() + seconds
    t0 = time.perf_counter()
    start.wait()
    for worker in workers:
        worker.join()
    flat = [v for part in latencies for v in part]
    return len(flat) / (time.perf_counter() - t0), flat, statistics.fmean(v for part in sizes for v in part)


def settings_for(plans: tuple[Plan, ...], paths: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Each model as a project would configure it: default settings but for the batch sizes."""
    return {
        plan.name: {
            "PATH": str(paths[plan.name]),
            "MAX_BATCH_SIZE": plan.allowed[-1],
            "ALLOWED_BATCH_SIZES": plan.allowed,
        }
        for plan in plans
    }


def in_process(plans: tuple[Plan, ...], paths: dict[str, Path], report: Report, seconds: float) -> dict[str, float]:
    """The in-process rows of every model; returns each model's offline limit."""
    from django.conf import settings

    models = settings_for(plans, paths)
    for plan in plans:  # the same file, op by op: only called directly, never warmed up
        models[plan.name + "_eager"] = {"PATH": str(paths[plan.name]), "JIT_COMPILE": False, "WARMUP": False}
    for model in models.values():
        model.update({"MAX_LATENCY_MS": 5, "MAX_QUEUE_SIZE": 65_536})
    settings.configure(INSTALLED_APPS=["tfbatch_django"], TFBATCH={"MODELS": models})
    import django

    django.setup()
    from tfbatch_django import model_info
    from tfbatch_django.batching import Batcher
    from tfbatch_django.registry import registry

    def local_runner(name: str) -> Any:
        batcher = registry.get(name).load()
        assert isinstance(batcher, Batcher), f"{name} is served in process here"
        return batcher.runner

    limits = {}
    for plan in plans:
        report.phase(f"{plan.name}: loading, compiling batch sizes {'/'.join(map(str, plan.allowed))}")
        runner = local_runner(plan.name)
        eager = local_runner(plan.name + "_eager")
        report.phase(f"{plan.name}: rows")
        info = model_info(plan.name)["runner"]
        compiled = "compiled" if info["jit_compile"] else "NOT compiled"
        image = np.random.default_rng(1).random((1, *plan.shape), dtype=np.float32)
        rates = {size: offline(runner, image, size, seconds) for size in plan.offline_sizes}
        best = max(rates, key=rates.__getitem__)
        limit = limits[plan.name] = rates[best]
        tried = ", ".join(f"{size}: {rate:,.0f}" for size, rate in rates.items())
        report.add(
            Row(
                plan.label,
                f"offline limit, default settings ({compiled}), batch {best} (of {tried})",
                limit,
                offline=limit,
            )
        )
        report.add(
            Row(
                plan.label,
                f"offline, `JIT_COMPILE: False` (op by op), batch {best}",
                offline(eager, image, best, seconds / 2),
                offline=limit,
            )
        )
        for name, which in (("default settings", runner), ("`JIT_COMPILE: False`", eager)):
            durations = one_at_a_time(which, image, seconds / 2)
            path = f"one at a time (batch 1), {name}"
            report.add(
                Row(plan.label, path, len(durations) / sum(durations), offline=limit, latencies=tuple(durations))
            )
        rate, latencies, mean = asyncio.run(async_callers(plan.name, image, plan.callers, seconds))
        path = f"`predict()`, {plan.callers} async callers, default settings"
        report.add(Row(plan.label, path, rate, offline=limit, latencies=tuple(latencies), mean_batch=mean))
        rate, latencies, mean = thread_callers(plan.name, image, plan.threads, seconds)
        path = f"`predict_sync()`, {plan.threads} threads, default settings"
        report.add(Row(plan.label, path, rate, offline=limit, latencies=tuple(latencies), mean_batch=mean))
    registry.reset()
    return limits


def over_daphne(
    plans: tuple[Plan, ...], paths: dict[str, Path], limits: dict[str, float], report: Report, seconds: float
) -> None:
    """Binary WebSocket frames through daphne: each model against the no-model reply at its frame size."""
    from bench import bench_serving

    port = bench_serving.free_port()
    (WORK / "daphne.log").unlink(missing_ok=True)
    env = {"TFBATCH_GPU_BENCH": json.dumps(settings_for(plans, paths))}
    report.phase("daphne: starting, loading and compiling the models")
    daphne = bench_serving.start_daphne(
        port, env, "bench.gpu_settings", tuple(p.name for p in plans), timeout=300, log=WORK / "daphne.log"
    )
    bench_serving.SERVER_PID = daphne.pid
    report.phase("daphne: rows")
    try:
        for plan in plans:
            image = np.random.default_rng(1).random((1, *plan.shape), dtype=np.float32)
            kb = image.nbytes // 1024
            args = (image, True, plan.clients, max(2.0, seconds), max(3.0, seconds))
            ceiling = asyncio.run(bench_serving.run_ws(port, "ws/const/", plan.name, *args))
            path = f"over daphne, {plan.clients} WebSocket clients, binary frames of {kb:,} KB"
            report.add(no_model_row(plan.label, f"{path}: no model (ceiling)", ceiling))
            served = asyncio.run(bench_serving.run_ws(port, "ws/tfbatch/", plan.name, *args))
            errors = f", {served.errors} errors" if served.errors else ""
            report.add(
                Row(
                    plan.label,
                    f"{path}: batched, default settings{errors}",
                    served.rate,
                    "req/s",
                    offline=limits.get(plan.name),
                    ceiling=ceiling.rate,
                    latencies=tuple(served.latencies),
                    mean_batch=statistics.fmean(served.sizes) if served.sizes else None,
                    loop_us=loop_us(served),
                )
            )
            # The loop's cost per request falls as the rate rises (more events per loop
            # iteration): compared at the ceiling's rate the no-model path looks cheaper than
            # it is at the batched rate. So the no-model path once more, paced at that rate.
            paced = asyncio.run(bench_serving.run_ws(port, "ws/const/", plan.name, *args, rate=served.rate))
            report.add(no_model_row(plan.label, f"{path}: no model, paced at the batched rate", paced))
            bare, same_rate, batched = loop_us(ceiling), loop_us(paced), loop_us(served)
            if bare and same_rate and batched:
                report.notes.append(
                    f"{plan.label}, over daphne: the event loop's CPU per request, no model / batched: "
                    f"{bare:.0f} / {batched:.0f} µs ({bare / batched:.0%}) at each one's own rate, "
                    f"{same_rate:.0f} / {batched:.0f} µs ({same_rate / batched:.0%}) at the same rate. With cores "
                    "to spare for the model and the batcher's threads, one daphne process is bound by its loop "
                    "thread, near the second share of the ceiling"
                )
    finally:
        daphne.terminate()
        daphne.wait(30)


def no_model_row(label: str, path: str, result: Any) -> Row:
    """A row of the no-model WebSocket path (``bench_serving.Result``)."""
    return Row(label, path, result.rate, "req/s", latencies=tuple(result.latencies), loop_us=loop_us(result))


def loop_us(result: Any) -> float | None:
    """daphne's event-loop thread: CPU µs per request answered (the process has one such thread)."""
    return result.loop_cpu / result.done * 1e6 if result.done else None


def describe_device(backend: str) -> str:
    if backend == "jax":
        import jax

        devices = jax.devices()
        kinds = sorted({f"{d.platform}: {d.device_kind}" for d in devices})
        return f"{len(devices)} JAX device(s), {', '.join(kinds)}; JAX {jax.__version__}"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return f"TensorFlow {tf.__version__}, {len(gpus)} GPU(s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, few sizes and callers: a CPU smoke run")
    parser.add_argument("--seconds", type=float, default=None, help="per measurement (default 3, quick 1.5)")
    parser.add_argument("--backend", choices=("jax", "tensorflow"), default=os.environ.get("KERAS_BACKEND", "jax"))
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown table here (after every row)")
    parser.add_argument("--resnet-size", type=int, default=None, help="ResNet-50 input side (default 224, quick 32)")
    parser.add_argument("--host-size", type=int, default=None, help="the host-path model's input side (default 224)")
    parser.add_argument("--no-in-process", action="store_true", help="only the end-to-end rows")
    parser.add_argument("--no-daphne", action="store_true", help="skip the end-to-end rows")
    parser.add_argument(
        "--models", default=None, help="comma-separated subset of resnet50,cnn,host (default: all three)"
    )
    args = parser.parse_args()
    os.environ["KERAS_BACKEND"] = args.backend  # before Keras is imported, here and in daphne
    # Two processes (this one and daphne) share the device: JAX must not grab 75 % of it each.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    # daphne compiles the same shapes again: let it find them in JAX's persistent cache.
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(WORK / "jax-cache"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    plans: tuple[Plan, ...] = QUICK if args.quick else FULL
    if args.resnet_size:
        side = args.resnet_size
        plans = tuple(
            replace(p, label=f"ResNet-50 {side}²", shape=(side, side, 3)) if p.name == "resnet50" else p for p in plans
        )
    if args.host_size:
        side = args.host_size
        plans = tuple(
            replace(p, label=f"host path {side}²", shape=(side, side, 3)) if p.name == "host" else p for p in plans
        )
    if args.models:
        wanted = set(args.models.split(","))
        if unknown := wanted - {p.name for p in plans}:
            parser.error(f"unknown models: {', '.join(sorted(unknown))}")
        plans = tuple(p for p in plans if p.name in wanted)
    seconds = args.seconds or (1.5 if args.quick else 3.0)
    started, load = time.perf_counter(), os.getloadavg()[0]
    report = Report([], args.out)
    report.phase("start-up: Keras, JAX's devices")

    import keras

    device = describe_device(args.backend)
    report.header += [
        f"bench/bench_gpu.py{' --quick' * args.quick}, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"{device}; Keras {keras.__version__} on {args.backend}; {os.cpu_count()} CPU cores, "
        f"Python {platform.python_version()}; {seconds:g} s per measurement; random weights",
    ]
    print("\n".join(report.header), file=sys.stderr, flush=True)
    try:
        report.phase("building and saving the models")
        paths = {plan.name: build(plan) for plan in plans}
        limits = {} if args.no_in_process else in_process(plans, paths, report, seconds)
        if not args.no_daphne:
            over_daphne(plans, paths, limits, report, seconds)
    except KeyboardInterrupt:  # run_on_device.sh's time limit: say where it stopped
        report.header.append(f"stopped by SIGINT after {report.elapsed():.0f} s, in the phase marked (running)")
        if args.out:
            args.out.write_text(report.markdown())
        raise
    took = time.perf_counter() - started
    report.header.append(f"whole run: {took:.0f} s; load average before/after: {load:.2f} / {os.getloadavg()[0]:.2f}")
    print("\n" + report.markdown(done=True))
    if args.out:
        args.out.write_text(report.markdown(done=True))


if __name__ == "__main__":
    main()
