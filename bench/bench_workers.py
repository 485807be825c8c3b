"""Worker processes behind the channel layer vs a batcher per web process: one run, side by side.

    .venv/bin/python bench/bench_workers.py [--seconds 5] [--clients 64] [--hop]

The CNN and the load of ``bench_serving.py`` (its helpers drive the clients): 32x32x3
images, closed-loop clients each on its own connection. Starts Debian's ``redis-server``
on a free loopback port, then, one after the other:

- gunicorn with 4 sync workers and the sync views: each process with its own batcher (one
  request at a time per process, so batches of 1), then the same with the model served by
  one ``tfbatch_worker`` over Redis;
- 4 daphne processes (clients spread evenly, as behind a balancer), binary WebSocket frames:
  a batcher per process, then one shared worker (with and without coalescing the requests of
  a web process into one message);
- one client alone, daphne with its own batcher vs daphne + worker: what the hop costs.
  The three setups run side by side (each with its own worker) and the client visits
  them in turn, ``--rounds`` slices each: on this shared machine a row measured a
  minute after another can move by a millisecond or two, more than the hop itself.

Prints a Markdown table and the targets' ratios. ``--hop``: only the three lone-client
rows and the hop's figures (under a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import bench_serving  # noqa: E402
from bench.bench_serving import HOST, Result, _drive, free_port, run_ws  # noqa: E402
from bench.model import INPUT_SHAPE, MODEL_DIR, export  # noqa: E402
from tests.remote.redis import redis_server  # noqa: E402

SETTINGS = "bench.worker_settings"
MEMORY: dict[str, float] = {}  # process -> resident MB, read at the end of its run


def _env(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def _available(port: int, prefix: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/{prefix}/v1/models/cnn", timeout=5) as r:
            return bool(json.loads(r.read())["model_version_status"][0]["state"] == "AVAILABLE")
    except OSError:
        return False


@contextmanager
def _process(argv: list[str], env: dict[str, str], ready: list[tuple[int, str]] | None = None) -> Iterator[int]:
    process = subprocess.Popen(argv, cwd=ROOT, env=_env(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        for port, prefix in ready or []:
            while not _available(port, prefix):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{argv[2]} did not become ready")
                time.sleep(0.3)
        yield process.pid
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(env: dict[str, str]) -> ExitStack:
    stack = ExitStack()
    if env:
        MEMORY["worker_pid"] = stack.enter_context(
            _process([sys.executable, "-m", "django", "tfbatch_worker", "bench-gpu", "--no-publish"], env)
        )
    return stack


async def run_http_close(ports: list[int], url: str, body: bytes, clients: int, warm: float, seconds: float) -> Result:
    """Closed-loop HTTP clients, a new connection per request (gunicorn's sync workers close each)."""
    result = Result("", "")
    measuring, stop = asyncio.Event(), asyncio.Event()

    async def client(port: int) -> None:
        head = f"POST {url} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        request = (head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
        while not stop.is_set():
            t0 = time.perf_counter()
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(request)
            raw = await reader.read()
            writer.close()
            lines = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            if measuring.is_set() and not stop.is_set():
                result.latencies.append(time.perf_counter() - t0)
                if lines[0].split()[1] != "200":
                    result.errors += 1
                else:
                    result.done += 1
                    result.sizes.append(int(headers["x-tfbatch-batch-size"]))

    return await _drive(result, [client(ports[i % len(ports)]) for i in range(clients)], measuring, stop, warm, seconds)


async def run_ws_spread(ports: list[int], image: np.ndarray, clients: int, warm: float, seconds: float) -> Result:
    """``bench_serving.run_ws`` against several daphnes at once, clients spread evenly; one result."""
    share = [clients // len(ports) + (i < clients % len(ports)) for i in range(len(ports))]
    parts = await asyncio.gather(
        *(
            run_ws(port, "ws/tfbatch/", "cnn", image, True, n, warm, seconds)
            for port, n in zip(ports, share, strict=True)
        )
    )
    merged = Result("", "", seconds=statistics.fmean(p.seconds for p in parts))
    for part in parts:
        merged.done += part.done
        merged.errors += part.errors
        merged.latencies += part.latencies
        merged.sizes += part.sizes
    return merged


def gunicorn(env: dict[str, str], args: argparse.Namespace, body: bytes) -> Result:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-w",
        "4",
        "-b",
        f"{HOST}:{port}",
        "--backlog",
        "2048",
        "bench.wsgi:application",
    ]
    with worker(env), _process(argv, env, [(port, "sync")]) as pid:
        bench_serving.SERVER_PID = pid
        return asyncio.run(
            run_http_close([port], "/sync/v1/models/cnn:predict", body, args.clients, args.warmup, args.seconds)
        )


def daphnes(env: dict[str, str], count: int, clients: int, args: argparse.Namespace, image: np.ndarray) -> Result:
    ports = [free_port() for _ in range(count)]
    with worker(env), ExitStack() as stack:
        for port in ports:
            argv = [sys.executable, "-m", "daphne", "-b", HOST, "-p", str(port), "bench.asgi:application"]
            bench_serving.SERVER_PID = stack.enter_context(_process(argv, env, [(port, "fast")]))
        result = asyncio.run(run_ws_spread(ports, image, clients, args.warmup, args.seconds))
        kind = "daphne, model served by a worker" if env else "daphne, model in process"
        MEMORY[kind] = rss_mb(bench_serving.SERVER_PID)
        if env:
            MEMORY["tfbatch_worker"] = rss_mb(int(MEMORY["worker_pid"]))
        return result


def lone_interleaved(
    setups: dict[str, dict[str, str]], args: argparse.Namespace, image: np.ndarray
) -> tuple[dict[str, Result], list[tuple[float, ...]]]:
    """One client visiting each setup in turn, ``args.rounds`` times: merged results, and each round's p50s."""
    merged = {name: Result("", "") for name in setups}
    slices: list[tuple[float, ...]] = []
    with ExitStack() as stack:
        ports, pids = {}, {}
        for name, env in setups.items():
            # A worker per transport: their keys differ (Redis itself vs channels_redis's).
            stack.enter_context(worker(env))
            port = ports[name] = free_port()
            argv = [sys.executable, "-m", "daphne", "-b", HOST, "-p", str(port), "bench.asgi:application"]
            pids[name] = stack.enter_context(_process(argv, env, [(port, "fast")]))
        for i in range(args.rounds):
            p50s = []
            for name, port in ports.items():
                warm = args.warmup if i == 0 else 0.3
                bench_serving.SERVER_PID = pids[name]
                part = asyncio.run(run_ws(port, "ws/tfbatch/", "cnn", image, True, 1, warm, args.seconds / args.rounds))
                p50s.append(part.pct(50))
                into = merged[name]
                into.done += part.done
                into.errors += part.errors
                into.seconds += part.seconds
                into.latencies += part.latencies
                into.sizes += part.sizes
            slices.append(tuple(p50s))
    return merged, slices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--hop", action="store_true", help="only the lone-client rows: what the hop costs")
    parser.add_argument("--rounds", type=int, default=5, help="lone-client rows: slices per setup, interleaved")
    args = parser.parse_args()
    export(MODEL_DIR)
    image = np.random.default_rng(1).random((1, *INPUT_SHAPE), dtype=np.float32).round(3)
    body = json.dumps({"instances": image.tolist()}).encode()
    load0 = os.getloadavg()[0]
    rows: list[tuple[str, Result]] = []

    def row(name: str, result: Result) -> None:
        rows.append((name, result))
        print(f"  {name:55} {result.rate:8.0f}/s  batch {result.mean_batch}", file=sys.stderr, flush=True)

    with redis_server(Path(os.environ.get("TMPDIR", "/tmp"))) as url:
        remote = {"TFBATCH_BENCH_REDIS": url}
        single = {**remote, "TFBATCH_BENCH_COALESCE": "0"}
        layer = {**remote, "TFBATCH_BENCH_TRANSPORT": "layer"}
        n = args.clients
        if not args.hop:
            row("gunicorn, 4 sync workers, a batcher each", gunicorn({}, args, body))
            row("gunicorn, 4 sync workers + 1 worker", gunicorn(remote, args, body))
            row("4 daphne, a batcher each (WebSocket, binary)", daphnes({}, 4, n, args, image))
            row("4 daphne + 1 worker (WebSocket, binary)", daphnes(remote, 4, n, args, image))
            row("4 daphne + 1 worker, no coalescing", daphnes(single, 4, n, args, image))
            row("4 daphne + 1 worker, channels_redis API", daphnes(layer, 4, n, args, image))
        lone_setups = {
            "1 client, daphne with its batcher": {},
            "1 client, daphne + 1 worker": remote,
            "1 client, daphne + 1 worker, channels_redis API": layer,
        }
        merged, slices = lone_interleaved(lone_setups, args, image)
        for name, result in merged.items():
            row(name, result)

    clients = "1 client" if args.hop else f"{args.clients} concurrent clients (1 in the last three rows)"
    print(f"\n{clients}, closed loop, {args.seconds:g} s per row, ", end="")
    load1 = os.getloadavg()[0]
    print(f"{os.cpu_count()} cores shared by everything; load average before/after: {load0:.2f} / {load1:.2f}\n")
    print("| setup | requests/s | p50 ms | p99 ms | mean batch | errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r in rows:
        print(f"| {name} | {r.rate:,.0f} | {r.pct(50):.2f} | {r.pct(99):.1f} | {r.mean_batch} | {r.errors} |")
    by = dict(rows)
    lone = by["1 client, daphne with its batcher"].pct(50)
    hop = by["1 client, daphne + 1 worker"].pct(50) - lone
    hop_layer = by["1 client, daphne + 1 worker, channels_redis API"].pct(50) - lone
    spread = sorted(w - local for local, w, _ in slices)
    spread_layer = sorted(y - local for local, _, y in slices)
    print("\nper round (p50 of each slice, worker minus local, sorted): ", end="")
    print(f"{', '.join(f'{h:+.2f}' for h in spread)} ms; ", end="")
    print(f"channels_redis API: {', '.join(f'{h:+.2f}' for h in spread_layer)} ms")
    if args.hop:
        print(f"\nthe hop adds <= 1 ms to a lone request's p50: {hop:+.2f} ms ({'yes' if hop <= 1.0 else 'no'})")
        print(f"the hop through channels_redis's API instead: {hop_layer:+.2f} ms")
        return

    def batch(name: str) -> float:
        return statistics.fmean(by[name].sizes) if by[name].sizes else 0.0

    g_local, g_remote = by["gunicorn, 4 sync workers, a batcher each"], by["gunicorn, 4 sync workers + 1 worker"]
    a_local, a_remote = "4 daphne, a batcher each (WebSocket, binary)", "4 daphne + 1 worker (WebSocket, binary)"
    coalesce = by[a_remote].rate / max(by["4 daphne + 1 worker, no coalescing"].rate, 1e-9)
    lean = by[a_remote].rate / max(by["4 daphne + 1 worker, channels_redis API"].rate, 1e-9)
    print("\n| target | measured | met |")
    print("| --- | ---: | --- |")
    checks = [
        (
            "gunicorn: worker's mean batch >= 4x the per-process batchers'",
            batch("gunicorn, 4 sync workers + 1 worker") / max(batch("gunicorn, 4 sync workers, a batcher each"), 1e-9),
            4.0,
        ),
        ("gunicorn: throughput with the worker >= 1.5x", g_remote.rate / max(g_local.rate, 1e-9), 1.5),
        (
            "4 daphne: worker's mean batch >= 4x the per-process batchers'",
            batch(a_remote) / max(batch(a_local), 1e-9),
            4.0,
        ),
        ("4 daphne: throughput with the worker >= 1.5x", by[a_remote].rate / max(by[a_local].rate, 1e-9), 1.5),
    ]
    for name, ratio, target in checks:
        print(f"| {name} | {ratio:.2f}x | {'yes' if ratio >= target else 'no'} |")
    print(f"| the hop adds <= 1 ms to a lone request's p50 | {hop:+.2f} ms | {'yes' if hop <= 1.0 else 'no'} |")
    print(f"| (coalescing: throughput with / without) | {coalesce:.2f}x | |")
    print(f"| (the hop through channels_redis's API instead) | {hop_layer:+.2f} ms | |")
    print(f"| (4 daphne: throughput on Redis itself / through channels_redis's API) | {lean:.2f}x | |")
    MEMORY.pop("worker_pid", None)
    print("\nResident memory after the runs: " + ", ".join(f"{k} {v:,.0f} MB" for k, v in MEMORY.items()))


if __name__ == "__main__":
    main()
