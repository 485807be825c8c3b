"""Real servers (daphne, uvicorn, runserver) as subprocesses on free loopback ports, for
the serving and end-to-end tests: started, waited for (bounded), and always stopped."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    log: Path

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://{self.host}:{self.port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def daphne_argv(application: str) -> list[str]:
    """daphne's command line serving ``application`` (``{port}`` filled in by ``serve``)."""
    return [sys.executable, "-m", "daphne", "-b", HOST, "-p", "{port}", application]


def answers(response: httpx.Response) -> bool:
    return response.status_code == 200


@contextlib.contextmanager
def running(
    argv: list[str],
    env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    ready_path: str,
    ready: Callable[[httpx.Response], bool] = answers,
) -> Iterator[Server]:
    """The server ``argv`` starts (``{port}`` in it replaced by a free port), once ``ready``
    says ``GET ready_path`` shows it serving; stopped on leaving the block."""
    port = free_port()
    server = Server(HOST, port, tmp_path_factory.mktemp("server") / "server.log")
    process = start([arg.format(port=port) for arg in argv], env, server.log, f"{server.http}/{ready_path}", ready)
    try:
        yield server
    finally:
        stop(process)


def start(
    argv: list[str], env: dict[str, str], log: Path, ready_url: str, ready: Callable[[httpx.Response], bool]
) -> subprocess.Popen[bytes]:
    """Start a server process and wait (bounded) until ``ready(response)`` says it serves."""
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if ready(httpx.get(ready_url, timeout=2)):
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop(process)
    raise RuntimeError(f"server not ready in 120 s:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
