"""End-to-end serving benchmark: daphne on loopback, 64 concurrent clients per run.

    .venv/bin/python bench/bench_serving.py [--seconds 5] [--clients 64]

Exports the benchmark CNN (``bench/model.py``) if missing, measures its offline limit
(direct signature calls: the best rows/s over batch sizes and both ways of spending the
cores, ``bench.model.LAYOUTS``), starts daphne with ``bench.settings``, then for each path —
WebSocket, HTTP through Django's async view, HTTP through the Channels fast door — runs
closed-loop clients against: a no-model reply (the path's ceiling), the model with
``MAX_BATCH_SIZE = 1`` (one call per request) and the model batched (``MAX_BATCH_SIZE
= 64``). Prints a Markdown table and the ratios the project targets.

Each client owns one connection (a WebSocket, or a keep-alive HTTP/1.1 connection
spoken by the minimal client below: a shared pooled client collapses under 64
concurrent tasks here) and sends its next request when the previous one is answered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import websockets
from websockets.typing import Origin

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.model import INPUT_SHAPE, LAYOUTS, MODEL_DIR, export, layouts  # noqa: E402

HOST = "127.0.0.1"


@dataclass
class Result:
    path: str
    mode: str
    done: int = 0
    seconds: float = 0.0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    server_cpu: float = 0.0  # CPU seconds daphne used during the measured window
    loop_cpu: float = 0.0  # ... of which its main thread (the event loop's)
    client_cpu: float = 0.0  # ... and this load generator

    def cpu_ms(self, seconds: float) -> str:
        return f"{seconds / self.done * 1000:.2f}" if self.done else "-"

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000 if self.latencies else float("nan")

    @property
    def mean_batch(self) -> str:
        return f"{statistics.fmean(self.sizes):.1f}" if self.sizes else "-"


class Http:
    """One keep-alive HTTP/1.1 connection: just enough protocol for this benchmark."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)

    async def post(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        if "content-length" in headers:
            return status, headers, await self.reader.readexactly(int(headers["content-length"]))
        chunks: list[bytes] = []
        while True:  # chunked
            size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await self.reader.readexactly(size + 2)
            if size == 0:
                return status, headers, b"".join(chunks)
            chunks.append(chunk[:-2])

    def close(self) -> None:
        self.writer.close()


async def run_ws(
    port: int,
    route: str,
    model: str,
    image: np.ndarray,
    binary: bool,
    clients: int,
    warm: float,
    seconds: float,
    rate: float | None = None,
) -> Result:
    """``clients`` WebSocket clients, each sending its next frame when the last is answered;
    with ``rate``, no sooner than its share of ``rate`` requests per second allows (paced:
    to compare two paths at the same load)."""
    result = Result("WebSocket, binary" if binary else "WebSocket, JSON", "")
    measuring = asyncio.Event()
    stop = asyncio.Event()
    # Frames are prepared once; only the id changes (the client must not be the bottleneck).
    json_prefix = '{"model": "' + model + '", "inputs": ' + json.dumps(image.tolist()) + ', "id": '
    raw = image.astype("<f4").tobytes()
    spec = {"dtype": "float32", "shape": list(image.shape)}

    def frame(i: int) -> str | bytes:
        if not binary:
            return f"{json_prefix}{i}}}"
        header = json.dumps({"id": i, "model": model, "inputs": spec}).encode()
        return struct.pack(">I", len(header)) + header + raw

    def batch_size(answer: str | bytes) -> tuple[bool, int]:
        if isinstance(answer, bytes):
            (length,) = struct.unpack_from(">I", answer)
            doc = json.loads(answer[4 : 4 + length])
        else:
            doc = json.loads(answer)
        return "error" not in doc, doc.get("batch", {}).get("size", 0)

    async def client() -> None:
        async with websockets.connect(
            f"ws://{HOST}:{port}/{route}", origin=Origin(f"http://{HOST}:{port}"), compression=None, max_size=None
        ) as ws:
            i = 0
            interval = clients / rate if rate else 0.0
            due = time.perf_counter() + random.random() * interval  # spread the clients out
            while not stop.is_set():
                i += 1
                if interval:
                    if (ahead := due - time.perf_counter()) > 0:
                        await asyncio.sleep(ahead)
                    due = max(due + interval, time.perf_counter() - interval)  # no catching up after a stall
                t0 = time.perf_counter()
                await ws.send(frame(i))
                ok, size = batch_size(await ws.recv())
                if measuring.is_set() and not stop.is_set():
                    result.latencies.append(time.perf_counter() - t0)
                    if not ok:
                        result.errors += 1
                    else:
                        result.done += 1
                        if size:
                            result.sizes.append(size)

    return await _drive(result, [client() for _ in range(clients)], measuring, stop, warm, seconds)


async def run_http(port: int, url: str, body: bytes, clients: int, warm: float, seconds: float, name: str) -> Result:
    result = Result(name, "")
    measuring = asyncio.Event()
    stop = asyncio.Event()

    async def client() -> None:
        conn = Http(port)
        await conn.open()
        try:
            while not stop.is_set():
                t0 = time.perf_counter()
                status, headers, _ = await conn.post(url, body)
                if measuring.is_set() and not stop.is_set():
                    result.latencies.append(time.perf_counter() - t0)
                    if status != 200:
                        result.errors += 1
                    else:
                        result.done += 1
                        if "x-tfbatch-batch-size" in headers:
                            result.sizes.append(int(headers["x-tfbatch-batch-size"]))
        finally:
            conn.close()

    return await _drive(result, [client() for _ in range(clients)], measuring, stop, warm, seconds)


SERVER_PID = 0


def server_cpu(thread: bool = False) -> float:
    """CPU seconds (user + system) daphne has used so far, from /proc: the whole process,
    or (``thread``) its main thread, which runs the event loop."""
    stat = f"/proc/{SERVER_PID}/task/{SERVER_PID}/stat" if thread else f"/proc/{SERVER_PID}/stat"
    fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _drive(
    result: Result,
    clients: list[Coroutine[Any, Any, None]],
    measuring: asyncio.Event,
    stop: asyncio.Event,
    warm: float,
    seconds: float,
) -> Result:
    tasks = [asyncio.create_task(c) for c in clients]
    await asyncio.sleep(warm)
    measuring.set()
    t0, server0, loop0, client0 = time.perf_counter(), server_cpu(), server_cpu(thread=True), time.process_time()
    await asyncio.sleep(seconds)
    stop.set()
    result.seconds = time.perf_counter() - t0
    result.server_cpu, result.client_cpu = server_cpu() - server0, time.process_time() - client0
    result.loop_cpu = server_cpu(thread=True) - loop0
    await asyncio.gather(*tasks)
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def start_daphne(
    port: int,
    env: dict[str, str],
    settings: str = "bench.settings",
    models: tuple[str, ...] = ("cnn_b1", "cnn"),
    timeout: float = 120,
    log: Path | None = None,
) -> subprocess.Popen[bytes]:
    """daphne serving ``bench.asgi`` with ``settings``, once every one of ``models`` is AVAILABLE.

    Its output goes to ``log`` (appended), or nowhere.
    """
    with open(log or os.devnull, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", HOST, "-p", str(port), "bench.asgi:application"],
            cwd=ROOT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": settings, **env},
            stdout=out,
            stderr=out,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if all(_available(port, model) for model in models):
            return process
        time.sleep(0.3)
    process.kill()
    raise SystemExit(f"daphne did not become ready (exit status {process.poll()})")


def _available(port: int, model: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/fast/v1/models/{model}", timeout=2) as r:
            return bool(json.loads(r.read())["model_version_status"][0]["state"] == "AVAILABLE")
    except OSError:
        return False


@dataclass(frozen=True)
class Server:
    """One daphne: the environment ``bench/settings.py`` reads, and the paths measured on it."""

    suffix: str  # appended to the path names of its rows
    env: dict[str, str]
    paths: tuple[str, ...]


SERVERS = (
    Server("", {}, ("ws-json", "ws-binary", "django", "fast")),
    Server(", no middleware", {"TFBATCH_BENCH_MIDDLEWARE": "none"}, ("django",)),
    Server(", one call per core", {"TFBATCH_BENCH_LAYOUT": "per-core"}, ("ws-binary",)),
)


async def run_path(
    name: str, args: argparse.Namespace, port: int, model: str | None, image: np.ndarray, body: bytes
) -> Result:
    """One row: path ``name`` against ``model`` (None: the no-model reply)."""
    w, s, n = args.warmup, args.seconds, args.clients
    if name.startswith("ws-"):
        route = "ws/const/" if model is None else "ws/tfbatch/"
        return await run_ws(port, route, model or "cnn", image, name == "ws-binary", n, w, s)
    if name == "django":
        url = "/const/django/" if model is None else f"/tfbatch/v1/models/{model}:predict"
        return await run_http(port, url, body, n, w, s, "HTTP, Django view")
    url = "/const/fast/" if model is None else f"/fast/v1/models/{model}:predict"
    return await run_http(port, url, body, n, w, s, "HTTP, fast door")


async def main_async(args: argparse.Namespace, port: int, server: Server) -> list[Result]:
    """``server``'s paths, each against a no-model reply, one row per call, and batched."""
    image = np.random.default_rng(1).random((1, *INPUT_SHAPE), dtype=np.float32).round(3)
    body = json.dumps({"instances": image.tolist()}).encode()
    results = []
    for mode, model in (("no model (ceiling)", None), ("MAX_BATCH_SIZE=1", "cnn_b1"), ("batched (64)", "cnn")):
        for name in server.paths:
            result = await run_path(name, args, port, model, image, body)
            result.path += server.suffix
            result.mode = mode
            print(f"  {result.path:18} {mode:20} {result.rate:8.0f}/s", file=sys.stderr, flush=True)
            results.append(result)
            await asyncio.sleep(0.5)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--clients", type=int, default=64)
    args = parser.parse_args()

    load0 = os.getloadavg()[0]
    export(MODEL_DIR)
    print("offline limit of the model (direct signature calls)...", file=sys.stderr, flush=True)
    offline = layouts(MODEL_DIR)
    offline_rows, best = max((rate, (name, size)) for name, rates in offline.items() for size, rate in rates.items())
    results = []
    for server in SERVERS:
        port = free_port()
        daphne = start_daphne(port, server.env)
        global SERVER_PID
        SERVER_PID = daphne.pid
        try:
            results += asyncio.run(main_async(args, port, server))
        finally:
            daphne.terminate()
            daphne.wait(20)

    sizes = sorted(next(iter(offline.values())))
    print("\nModel offline, rows/s of direct signature calls (threads calling it at once, back to back):\n")
    print("| layout | " + " | ".join(f"batch {size}" for size in sizes) + " |")
    print("| --- |" + " ---: |" * len(sizes))
    for name, rates in offline.items():
        callers = LAYOUTS[name]["callers"]
        cells = " | ".join(f"{rates[size]:,.0f}" for size in sizes)
        print(f"| {name} ({callers} caller{'s' if callers > 1 else ''}) | {cells} |")
    print(f"\nOffline limit: {offline_rows:,.0f} rows/s ({best[0]}, batch {best[1]}).")
    print("Served with TensorFlow's default threads; the 'one call per core' rows with INTRA_OP_THREADS = 1")
    print("and MAX_CONCURRENT_BATCHES = cores (bench/settings.py).")
    print(f"{args.clients} concurrent clients, closed loop, {args.seconds:g} s per run, ", end="")
    print(f"daphne on loopback, {os.cpu_count()} cores; load average before/after: ", end="")
    print(f"{load0:.2f} / {os.getloadavg()[0]:.2f}\n")
    print("| path | model | requests/s | p50 ms | p99 ms | mean batch | server CPU ms/req | client CPU ms/req |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r.path} | {r.mode} | {r.rate:,.0f} | {r.pct(50):.1f} | {r.pct(99):.1f} | {r.mean_batch} "
            f"| {r.cpu_ms(r.server_cpu)} | {r.cpu_ms(r.client_cpu)} |"
        )
    print(f"\n{sum(r.errors for r in results)} error answers in all runs.")
    by = {(r.path, r.mode): r.rate for r in results}
    print("\n| target | measured | met |")
    print("| --- | ---: | --- |")
    for path in ("WebSocket, JSON", "WebSocket, binary", "WebSocket, binary, one call per core"):
        cap = min(by[(path, "no model (ceiling)")], offline_rows)
        ratio = by[(path, "batched (64)")] / cap
        target = f"{path} batched >= 85 % of min(its ceiling, offline limit) = {cap:,.0f}/s"
        print(f"| {target} | {ratio:.0%} | {'yes' if ratio >= 0.85 else 'no'} |")
    for path in ("HTTP, Django view", "HTTP, Django view, no middleware"):
        one = by[(path, "MAX_BATCH_SIZE=1")]
        ratio = by[(path, "batched (64)")] / one
        bound = by[(path, "no model (ceiling)")] / one  # no batching can beat the path without a model
        target = f"{path}: batched >= 1.5x one-at-a-time (its ceiling allows at most {bound:.2f}x)"
        print(f"| {target} | {ratio:.2f}x | {'yes' if ratio >= 1.5 else 'no'} |")
    for path in ("HTTP, Django view", "HTTP, Django view, no middleware"):
        ratio = by[("HTTP, fast door", "no model (ceiling)")] / by[(path, "no model (ceiling)")]
        print(f"| fast-door ceiling >= 3x {path}'s | {ratio:.2f}x | {'yes' if ratio >= 3 else 'no'} |")


if __name__ == "__main__":
    main()
