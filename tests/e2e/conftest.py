"""A real daphne serving the demo project, and the demo model it serves.

The model is trained once per test session (in this process, which has TensorFlow
loaded anyway) into a temporary folder; daphne is a subprocess on a free loopback
port, pointed at that model. Together with this process that makes two TensorFlow
processes for the whole end-to-end suite.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]


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
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "digits"
    from demo_project.demo.management.commands.tfbatch_demo_model import Command

    with open(os.devnull, "w") as quiet:
        call_command(Command(), path=path, stdout=quiet)
    return path


@pytest.fixture(scope="session")
def direct_model(demo_model: Path) -> Any:
    """The exported signature, called directly: the answers the server must reproduce."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(demo_model)).signatures["serving_default"]
    return lambda x: signature(pixels=tf.constant(x, tf.float32))["probabilities"].numpy()


@pytest.fixture(scope="session")
def digit_images() -> np.ndarray:
    from demo_project.demo.training import load_digits_split

    return load_digits_split()[2]


def start(argv: list[str], env: dict[str, str], log: Path, ready_url: str, ready: Any) -> subprocess.Popen[bytes]:
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
    process.terminate()
    raise RuntimeError(f"server not ready in 120 s:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@pytest.fixture(scope="session")
def daphne(demo_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port = free_port()
    server = Server("127.0.0.1", port, tmp_path_factory.mktemp("daphne") / "daphne.log")
    process = start(
        [sys.executable, "-m", "daphne", "-b", server.host, "-p", str(port), "demo_project.asgi:application"],
        {"DJANGO_SETTINGS_MODULE": "demo_project.settings", "TFBATCH_DEMO_MODEL_DIR": str(demo_model)},
        server.log,
        f"{server.http}/tfbatch/v1/models/digits",
        lambda r: r.status_code == 200 and r.json()["model_version_status"][0]["state"] == "AVAILABLE",
    )
    yield server
    stop(process)
