"""Soak: minutes at twice the server's capacity, mixed clients, every request accounted for.

    .venv/bin/python bench/bench_soak.py [--minutes 3] [--overload 2] [--sockets 24] [--http 4]

Starts daphne with ``bench.settings`` (the benchmark CNN, ``bench/model.py``, with a
2 s ``TIMEOUT_MS`` so overload is shed), measures its capacity (64 closed-loop clients
sending binary WebSocket frames), then for ``--minutes``:

* WebSocket sockets send at ``--overload`` times that capacity in all, on a fixed schedule
  whatever the answers (open loop): two thirds binary frames, one third JSON text;
  every few seconds one socket is dropped with requests in flight and a new one opens;
* ``--http`` keep-alive connections post to the fast door back to back (closed loop);
* the server's resident memory is sampled every 5 s.

Every WebSocket request carries a unique id. At the end each id must have been answered
exactly once — no answer twice, none unknown, none missing on a socket that stayed open;
a dropped socket's unanswered ids are "abandoned". The server's own counters
(``bench/urls.py``) must balance: accepted = completed + errors + timeouts + cancelled.
Prints the figures and exits non-zero if an invariant fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import struct
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import websockets
from websockets.typing import Origin

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import bench_serving  # noqa: E402
from bench.bench_serving import HOST, Http, free_port, run_ws, start_daphne  # noqa: E402
from bench.model import INPUT_SHAPE, MODEL_DIR, export  # noqa: E402

TIMEOUT_MS = 2000  # the model's TIMEOUT_MS in the soak's daphne, and every frame's timeout_ms
CHURN_SECONDS = 3.0  # one socket dropped (and replaced) this often


@dataclass
class Ledger:
    """What was sent on the WebSocket sockets and what came back, by request id."""

    sent: dict[str, str] = field(default_factory=dict)  # id -> "binary" / "json"
    answered: Counter[str] = field(default_factory=Counter)  # id -> answers received
    outcomes: Counter[str] = field(default_factory=Counter)  # "ok" or the error code
    unknown: int = 0  # answers for ids never sent
    abandoned: set[str] = field(default_factory=set)  # sent on a dropped socket, never answered
    dropped_sockets: int = 0
    http: Counter[str] = field(default_factory=Counter)  # status code, or the exception's name


def answer_of(frame: str | bytes) -> tuple[str | None, str]:
    """(id, outcome) of an answer frame: text JSON, or a binary frame's JSON header."""
    if isinstance(frame, bytes):
        (length,) = struct.unpack_from(">I", frame)
        doc = json.loads(frame[4 : 4 + length])
    else:
        doc = json.loads(frame)
    message_id = doc.get("id")
    return (None if message_id is None else str(message_id)), ("ok" if "error" not in doc else doc["error"]["code"])


class Socket:
    """One WebSocket client sending on a fixed schedule and reading whatever comes back."""

    def __init__(self, number: int, kind: str, rate: float, port: int, image: np.ndarray, ledger: Ledger) -> None:
        self.number, self.kind, self.rate, self.port, self.ledger = number, kind, rate, port, ledger
        self.outstanding: set[str] = set()
        self.sequence = 0
        raw = image.astype("<f4").tobytes()
        self.inputs_json = json.dumps(image.tolist())
        self.binary_tail = raw
        self.spec = {"dtype": "float32", "shape": list(image.shape)}

    def frame(self, message_id: str) -> str | bytes:
        if self.kind == "json":
            return f'{{"id": "{message_id}", "model": "cnn", "timeout_ms": {TIMEOUT_MS}, "inputs": {self.inputs_json}}}'
        header = {"id": message_id, "model": "cnn", "timeout_ms": TIMEOUT_MS, "inputs": self.spec}
        encoded = json.dumps(header).encode()
        return struct.pack(">I", len(encoded)) + encoded + self.binary_tail

    async def run(self, stop: asyncio.Event, drop: asyncio.Event) -> None:
        """Send until ``stop`` (then wait for the answers) or ``drop`` (then vanish at once)."""
        url = f"ws://{HOST}:{self.port}/ws/tfbatch/"
        async with websockets.connect(
            url, origin=Origin(f"http://{HOST}:{self.port}"), compression=None, max_size=None
        ) as ws:
            reader = asyncio.create_task(self._read(ws))
            interval, next_at = 1.0 / self.rate, time.perf_counter()
            while not stop.is_set() and not drop.is_set():
                self.sequence += 1
                message_id = f"{self.number}-{self.sequence}"
                self.ledger.sent[message_id] = self.kind
                self.outstanding.add(message_id)
                await ws.send(self.frame(message_id))
                next_at = max(next_at + interval, time.perf_counter() - 0.5)  # no burst after a stall
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            if drop.is_set():
                ws.transport.abort()  # gone, with requests in flight
                self.ledger.abandoned |= self.outstanding
                self.ledger.dropped_sockets += 1
                reader.cancel()
                return
            deadline = time.monotonic() + TIMEOUT_MS / 1000 + 15  # every answer is due by then
            while self.outstanding and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            reader.cancel()

    async def _read(self, ws: Any) -> None:
        async for frame in ws:
            message_id, outcome = answer_of(frame)
            if message_id is None or message_id not in self.ledger.sent:
                self.ledger.unknown += 1
                continue
            self.ledger.answered[message_id] += 1
            self.ledger.outcomes[outcome] += 1
            self.outstanding.discard(message_id)


async def http_client(port: int, body: bytes, stop: asyncio.Event, ledger: Ledger) -> None:
    for _ in range(1_000_000):  # bounded; ends at stop
        if stop.is_set():
            return
        connection = Http(port)
        try:
            await connection.open()
            while not stop.is_set():
                status, _, _ = await asyncio.wait_for(connection.post("/fast/v1/models/cnn:predict", body), 30)
                ledger.http[str(status)] += 1
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            ledger.http[type(exc).__name__] += 1
        finally:
            connection.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def sample_rss(pid: int, stop: asyncio.Event, samples: list[tuple[float, float]]) -> None:
    t0 = time.monotonic()
    while not stop.is_set():
        samples.append((time.monotonic() - t0, rss_mb(pid)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 5)


def server_stats(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{HOST}:{port}/bench/stats/", timeout=30) as reply:
        stats: dict[str, Any] = json.loads(reply.read())["cnn"]
        return stats


async def soak(
    args: argparse.Namespace, port: int, pid: int, capacity: float
) -> tuple[Ledger, list[Any], float, list[tuple[float, float]]]:
    image = np.random.default_rng(1).random((1, *INPUT_SHAPE), dtype=np.float32).round(3)
    body = json.dumps({"instances": image.tolist()}).encode()
    ledger = Ledger()
    stop = asyncio.Event()
    per_socket = args.overload * capacity / args.sockets
    kinds = ["binary", "binary", "json"]
    numbers = iter(range(1, 1_000_000))
    running: dict[asyncio.Task[None], asyncio.Event] = {}

    def open_socket(kind: str) -> None:
        drop = asyncio.Event()
        sock = Socket(next(numbers), kind, per_socket, port, image, ledger)
        running[asyncio.create_task(sock.run(stop, drop))] = drop

    for i in range(args.sockets):
        open_socket(kinds[i % 3])
    http = [asyncio.create_task(http_client(port, body, stop, ledger)) for _ in range(args.http)]
    samples: list[tuple[float, float]] = []
    sampler = asyncio.create_task(sample_rss(pid, stop, samples))
    t0 = time.monotonic()
    rng = random.Random(7)
    while time.monotonic() - t0 < args.minutes * 60:
        await asyncio.sleep(CHURN_SECONDS)
        live = [task for task, drop in running.items() if not drop.is_set() and not task.done()]
        victim = rng.choice(live)
        running[victim].set()
        open_socket(kinds[rng.randrange(3)])
    seconds = time.monotonic() - t0
    stop.set()
    results = await asyncio.gather(*running, *http, sampler, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    return ledger, errors, seconds, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--overload", type=float, default=2.0, help="offered WebSocket load / measured capacity")
    parser.add_argument("--sockets", type=int, default=24)
    parser.add_argument("--http", type=int, default=4, help="closed-loop HTTP connections on top")
    args = parser.parse_args()

    export(MODEL_DIR)
    port = free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"tfbatch-soak-{port}.log"
    daphne = start_daphne(port, {"TFBATCH_BENCH_TIMEOUT_MS": str(TIMEOUT_MS)}, log=log)
    bench_serving.SERVER_PID = daphne.pid
    try:
        image = np.random.default_rng(1).random((1, *INPUT_SHAPE), dtype=np.float32).round(3)
        print("capacity: 64 closed-loop clients, binary frames, 8 s...", file=sys.stderr, flush=True)
        calibration = asyncio.run(run_ws(port, "ws/tfbatch/", "cnn", image, True, 64, 1.5, 8.0))
        capacity = calibration.rate
        before = server_stats(port)
        rss_before = rss_mb(daphne.pid)
        print(f"capacity {capacity:,.0f} req/s; soaking {args.minutes:g} min...", file=sys.stderr, flush=True)
        ledger, errors, seconds, samples = asyncio.run(soak(args, port, daphne.pid, capacity))
        time.sleep(1)
        after = server_stats(port)
        samples.append((seconds, rss_mb(daphne.pid)))
    finally:
        daphne.terminate()
        daphne.wait(30)
    ok = report(args, capacity, ledger, errors, seconds, before, after, [(0.0, rss_before), *samples], log)
    sys.exit(0 if ok else 1)


def report(
    args: argparse.Namespace,
    capacity: float,
    ledger: Ledger,
    errors: list[BaseException],
    seconds: float,
    before: dict[str, Any],
    after: dict[str, Any],
    rss: list[tuple[float, float]],
    log: Path,
) -> bool:
    sent = len(ledger.sent)
    twice = sum(1 for n in ledger.answered.values() if n > 1)
    missing = [i for i in ledger.sent if not ledger.answered[i] and i not in ledger.abandoned]
    delta = {k: after[k] - before[k] for k in ("requests", "completed", "errors", "timeouts", "cancelled", "rejected")}
    balance = delta["requests"] - delta["completed"] - delta["errors"] - delta["timeouts"] - delta["cancelled"]
    tracebacks = log.read_text(errors="replace").count("Traceback") if log.exists() else 0
    http_total = sum(ledger.http.values())
    print(f"\nSoak: {seconds / 60:.1f} min, {os.cpu_count()} cores, daphne on loopback, the benchmark CNN.")
    print(f"Capacity (64 closed-loop binary WebSocket clients): {capacity:,.0f} req/s.")
    print(
        f"Offered on {args.sockets} WebSocket sockets (2/3 binary, 1/3 JSON; one dropped and replaced every "
        f"{CHURN_SECONDS:g} s): {args.overload:g}x = {args.overload * capacity:,.0f} req/s; "
        f"plus {args.http} closed-loop HTTP connections on the fast door.\n"
    )
    print("| WebSocket requests | count | share |")
    print("| --- | ---: | ---: |")
    print(f"| sent | {sent:,} | 100 % |")
    for outcome, n in ledger.outcomes.most_common():
        print(f"| answered `{outcome}` | {n:,} | {n / sent:.1%} |")
    print(f"| abandoned (sent on one of the {ledger.dropped_sockets} dropped sockets) | {len(ledger.abandoned):,} | |")
    print(f"| answered twice | {twice} | |")
    print(f"| answers with an unknown id | {ledger.unknown} | |")
    print(f"| never answered on a socket that stayed open | {len(missing)} | |")
    ok = ledger.outcomes["ok"]
    print(f"\nAnswered ok: {ok / seconds:,.0f} req/s on the sockets, {ok / seconds / capacity:.0%} of capacity.")
    print(f"HTTP (fast door): {http_total:,} requests: " + ", ".join(f"{k}: {v:,}" for k, v in ledger.http.items()))
    print(
        "\nServer counters over the soak: "
        + ", ".join(f"{k} {v:,}" for k, v in delta.items())
        + f"; accepted - (completed + errors + timeouts + cancelled) = {balance}"
    )
    values = [mb for _, mb in rss]
    half = [mb for t, mb in rss if t >= seconds / 2]
    print(
        f"Server RSS ({len(rss)} samples, every 5 s): {values[0]:,.0f} MB before the soak, peak {max(values):,.0f} MB, "
        f"{values[-1]:,.0f} MB at the end; second half {min(half):,.0f}-{max(half):,.0f} MB."
    )
    print("  MB at each minute: " + ", ".join(f"{mb:,.0f}" for t, mb in rss if t % 60 < 5))
    print(f"Tracebacks in the server's log: {tracebacks}; client task errors: {len(errors)}")
    for error in errors[:5]:
        print(f"  {type(error).__name__}: {error}")
    checks = {
        "every id answered at most once": twice == 0,
        "no unknown ids": ledger.unknown == 0,
        "every id on an open socket answered": not missing,
        "server counters balance": balance == 0,
        "no client task failed": not errors,
    }
    for name, passed in checks.items():
        print(f"{'ok  ' if passed else 'FAIL'} {name}")
    return all(checks.values())


if __name__ == "__main__":
    main()
